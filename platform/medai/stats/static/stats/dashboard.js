// Draws each dashboard chart from the table beneath it (data-chart, data-canvas, data-series), so a chart
// never shows a number its table does not. Suppressed cells ("<5", "*") are left out of the chart.
(function () {
  "use strict";
  const palette = ["#1f6fb2", "#3aa17e", "#e3a21a", "#c8553d", "#7a5cb8", "#5b6776", "#2bb3c0", "#a5a58d"];

  function number(cell) {
    const text = cell.textContent.trim().replace(/\s/g, "").replace(",", ".");
    return text === "" || /^[<*]/.test(text) ? null : Number(text);
  }

  function draw(table) {
    const canvas = document.getElementById(table.dataset.canvas);
    const series = table.dataset.series.split(" ");
    const header = Array.from(table.tHead.rows[0].cells);
    const rows = Array.from(table.tBodies[0].rows).filter((row) => row.dataset.key !== undefined);
    if (!canvas || rows.length === 0) return;
    const labels = rows.map((row) => row.cells[0].textContent.trim());
    const datasets = series.map((stat, i) => {
      const column = header.findIndex((th) => th.dataset.stat === stat);
      return {
        label: header[column].textContent.trim(),
        data: rows.map((row) => number(row.cells[column])),
        backgroundColor: table.dataset.chart === "doughnut" ? palette : palette[i % palette.length],
        borderColor: table.dataset.chart === "doughnut" ? "#fff" : palette[i % palette.length],
        tension: 0.2,
      };
    });
    new window.Chart(canvas, {
      type: table.dataset.chart,
      data: { labels, datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: "bottom" } },
        scales: table.dataset.chart === "doughnut" ? {} : { y: { beginAtZero: true } },
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.Chart) return;
    document.querySelectorAll("table[data-chart]").forEach(draw);
  });
})();
