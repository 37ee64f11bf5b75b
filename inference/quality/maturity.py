"""The maturity matrix: per clinical direction (kind of study) and service, the stage it is at (testing,
calibration, clinical use, autonomous), the criteria that admit each stage measured on its recent
results, and whether to promote or demote it.

Measured over the last QUALITY_MATURITY_MONTHS months of national clinical monitoring
(`ServiceMonthMetrics`, region empty) and of technological monitoring (defects). Criteria, after the
Moscow Experiment (../shared/domain.md) and kept configurable in settings:
- calibration: at least QUALITY_MIN_REVIEWED reviewed studies, each class at least QUALITY_MIN_CLASS_SHARE
  of them (a test sample of >= 400 with >= 10 % per class), AUROC >= QUALITY_ADMISSION_AUROC (0.81);
- clinical use: the above, a defect rate at most QUALITY_MAX_DEFECT_RATE, no drift last month, active;
- autonomous: the above, an autonomous threshold, and sensitivity at it >= QUALITY_AUTONOMOUS_SENSITIVITY.
"""

import csv
import datetime as dt
import io
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Q

from inference.quality.metrics import ScoreHistogram
from inference.quality.records import ServiceMonthMetrics, Severity
from inference.records import AIService, Analysis

STAGES = [AIService.Stage.TESTING, AIService.Stage.CALIBRATION, AIService.Stage.CLINICAL,
          AIService.Stage.AUTONOMOUS]


@dataclass(frozen=True)
class Criterion:
    stage: str  # the stage it admits
    name: str  # Russian, for the page
    required: str
    actual: str
    passed: bool


@dataclass(frozen=True)
class MaturityRow:
    service: AIService
    reviewed: int
    auroc: float | None
    sensitivity: float | None
    specificity: float | None
    defect_rate: float | None
    drift: bool
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def eligible_stage(self) -> str:
        """The highest stage whose criteria, and those of every stage below it, all hold."""
        eligible = AIService.Stage.TESTING
        for stage in STAGES[1:]:
            if not all(c.passed for c in self.criteria if c.stage == stage):
                break
            eligible = stage
        return eligible

    @property
    def recommendation(self) -> str:
        current, eligible = STAGES.index(self.service.stage), STAGES.index(self.eligible_stage)
        if eligible > current:
            return f"повысить до «{self.eligible_stage}»"
        if eligible < current:
            return f"понизить до «{self.eligible_stage}»"
        return "оставить"


def _window(today: dt.date) -> list[dt.date]:
    first = today.replace(day=1)
    months = [first]
    for _ in range(settings.QUALITY_MATURITY_MONTHS - 1):
        months.append((months[-1] - dt.timedelta(days=1)).replace(day=1))
    return months


def _grid(histogram: ScoreHistogram, threshold: float) -> float:
    """The grid threshold at or below `threshold`: never more lenient than the service's own."""
    return int(threshold * histogram.bins) / histogram.bins


def maturity_row(service: AIService, *, today: dt.date) -> MaturityRow:
    """Measure one service over the window. Needs the national scope."""
    months = _window(today)
    rows = list(ServiceMonthMetrics.objects.filter(service=service, region__isnull=True, month__in=months))
    histograms = [ScoreHistogram.from_dict(r.histogram) for r in rows if r.histogram]
    merged = sum(histograms) if histograms else None
    positives = merged.positive_count if merged else 0
    reviewed = positives + (merged.negative_count if merged else 0)
    both = bool(positives) and positives < reviewed
    auroc = merged.auc() if both else None
    point = merged.operating_point(_grid(merged, service.pathology_threshold)) if both else None
    autonomous = (merged.operating_point(_grid(merged, service.autonomous_threshold))
                  if both and service.autonomous_threshold is not None else None)
    defect_rate = _defect_rate(service, since=min(months))
    latest = next((r for r in rows if r.month == months[0]), None)
    drift = bool(latest and (latest.positive_rate_drift or latest.score_drift))
    row = MaturityRow(service, reviewed, auroc, point.sensitivity if point else None,
                      point.specificity if point else None, defect_rate, drift)
    row.criteria.extend(_criteria(service, reviewed, positives, auroc, defect_rate, drift,
                                  autonomous.sensitivity if autonomous else None))
    return row


def _defect_rate(service: AIService, *, since: dt.date) -> float | None:
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    counts = Analysis.objects.filter(
        service=service, shadow=False, finished_at__gte=start,
        status__in=(Analysis.Status.SUCCEEDED, Analysis.Status.FAILED),
    ).aggregate(results=Count("id", distinct=True), defective=Count(
        "id", distinct=True, filter=Q(defects__severity__in=[Severity.CRITICAL, Severity.MAJOR])))
    return counts["defective"] / counts["results"] if counts["results"] else None


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _criteria(service: AIService, reviewed: int, positives: int, auroc: float | None, defect_rate: float | None,
              drift: bool, autonomous_sensitivity: float | None) -> list[Criterion]:
    s = settings
    smaller_class = min(positives, reviewed - positives) / reviewed if reviewed else 0.0
    calibration, clinical, autonomous = STAGES[1:]
    return [
        Criterion(calibration, "Проверено врачами", f">= {s.QUALITY_MIN_REVIEWED}", str(reviewed),
                  reviewed >= s.QUALITY_MIN_REVIEWED),
        Criterion(calibration, "Доля меньшего класса", f">= {s.QUALITY_MIN_CLASS_SHARE:.0%}", f"{smaller_class:.0%}",
                  smaller_class >= s.QUALITY_MIN_CLASS_SHARE),
        Criterion(calibration, "AUROC", f">= {s.QUALITY_ADMISSION_AUROC}", _number(auroc),
                  auroc is not None and auroc >= s.QUALITY_ADMISSION_AUROC),
        Criterion(clinical, "Доля результатов с дефектами", f"<= {s.QUALITY_MAX_DEFECT_RATE:.0%}",
                  "—" if defect_rate is None else f"{defect_rate:.1%}",
                  defect_rate is not None and defect_rate <= s.QUALITY_MAX_DEFECT_RATE),
        Criterion(clinical, "Дрейф в последнем месяце", "нет", "есть" if drift else "нет", not drift),
        Criterion(clinical, "Сервис активен", "да", "да" if service.status == AIService.Status.ACTIVE else "нет",
                  service.status == AIService.Status.ACTIVE),
        Criterion(autonomous, "Чувствительность на автономном пороге", f">= {s.QUALITY_AUTONOMOUS_SENSITIVITY}",
                  _number(autonomous_sensitivity, 3),
                  autonomous_sensitivity is not None and autonomous_sensitivity >= s.QUALITY_AUTONOMOUS_SENSITIVITY),
    ]


def maturity_matrix(*, today: dt.date) -> list[MaturityRow]:
    """Every delivered service (not those in shadow), by clinical direction. Needs the national scope."""
    services = AIService.objects.filter(shadow_of__isnull=True).order_by("study_kind", "code")
    return [maturity_row(service, today=today) for service in services]


CSV_HEADER = ["Направление", "Сервис", "Разработчик", "Версия", "Стадия", "Статус", "Проверено", "AUROC",
              "Чувствительность", "Специфичность", "Доля дефектов", "Дрейф", "Допустимая стадия", "Рекомендация",
              "Невыполненные критерии"]


def maturity_csv(rows: list[MaturityRow]) -> str:
    """The matrix for the ministry: UTF-8 with BOM, `;`-separated, as Russian Excel opens it."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        service = row.service
        failing = [f"{c.name} ({c.actual}; нужно {c.required})" for c in row.criteria if not c.passed]
        writer.writerow([service.get_study_kind_display(), service.code, service.vendor, service.version,
                         service.stage, service.status, row.reviewed, _number(row.auroc), _number(row.sensitivity),
                         _number(row.specificity), _number(row.defect_rate, 3), "да" if row.drift else "нет",
                         row.eligible_stage, row.recommendation, "; ".join(failing)])
    return out.getvalue()
