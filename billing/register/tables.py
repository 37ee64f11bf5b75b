"""The register as CSV and XLSX for finance departments: one row per service and a totals row."""

import csv
import io
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import BinaryIO

import xlsxwriter
from xlsxwriter.utility import xl_range

from billing.register.model import RegisterHeader, RegisterLine, money

COLUMNS = (
    "№", "ID услуги", "Дата услуги", "ЕНП", "СМО", "Фамилия", "Имя", "Отчество", "Пол", "Дата рождения",
    "Вид исследования", "Код услуги", "Диагноз (МКБ-10)", "Профиль", "Тариф, ₽", "Сумма, ₽", "Исправление",
)
TOTAL_LABEL = "Итого"
_SEX_LABEL = {"M": "М", "F": "Ж"}
_FORMULA_START = ("=", "+", "-", "@")  # a CSV cell starting so is a formula to a spreadsheet
_AMOUNT_COLUMN = COLUMNS.index("Сумма, ₽")
_XLSX_MAX_LINES = 1_048_576 - 2  # an Excel sheet's rows less the header and the totals


# --- CSV and XLSX ----------------------------------------------------------------------------------------------


def _row(number: int, line: RegisterLine) -> tuple[int | str | date | Decimal | None, ...]:
    """One line as the spreadsheet columns (COLUMNS)."""
    return (
        number, line.service_id, line.service_date, line.policy_number, line.insurer_code, line.family_name,
        line.given_name, line.middle_name, _SEX_LABEL.get(line.sex, ""), line.birth_date, line.study_kind,
        line.service_code, line.diagnosis_code, line.care_profile, money(line.tariff), money(line.amount),
        "да" if line.correction else "",
    )


def _totals_label(header: RegisterHeader) -> str:
    return f"{TOTAL_LABEL} за {header.month:02d}.{header.year}"


def _csv_cell(value: int | str | date | Decimal | None) -> str:
    """Russian Excel's forms: decimal comma, DD.MM.YYYY; text that would start a formula is quoted with '."""
    if isinstance(value, Decimal):
        return str(value).replace(".", ",")
    if isinstance(value, date):
        return f"{value:%d.%m.%Y}"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return f"'{value}"
    return "" if value is None else str(value)


def _csv_totals(header: RegisterHeader, total: Decimal) -> list[str]:
    row = [""] * len(COLUMNS)
    row[0], row[_AMOUNT_COLUMN] = _totals_label(header), _csv_cell(total)
    return row


def write_csv(out: BinaryIO, header: RegisterHeader, lines: Iterable[RegisterLine]) -> None:
    """Write the register to out (a binary file) as CSV for Excel, consuming lines once.

    UTF-8 with a BOM (Excel then reads Cyrillic right), ";" between fields, a header row of COLUMNS, one
    row per line and a last row with the sum of the amounts.
    """
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
    try:
        writer = csv.writer(text, delimiter=";")
        writer.writerow(COLUMNS)
        total = Decimal("0.00")
        for number, line in enumerate(lines, 1):
            row = _row(number, line)
            writer.writerow(map(_csv_cell, row))
            total += row[_AMOUNT_COLUMN]
        writer.writerow(_csv_totals(header, total))
    finally:
        text.detach()  # flushes, and leaves out open for the caller


class _Sheet:
    """The XLSX worksheet written row by row (xlsxwriter's constant_memory mode)."""

    def __init__(self, workbook: xlsxwriter.Workbook, header: RegisterHeader) -> None:
        self.sheet = workbook.add_worksheet(f"Реестр {header.month:02d}.{header.year}")
        self.money = workbook.add_format({"num_format": "0.00"})
        self.date = workbook.add_format({"num_format": "dd.mm.yyyy"})
        self.bold = workbook.add_format({"bold": True})
        self.sheet.set_column(0, len(COLUMNS) - 1, 14)
        self.sheet.freeze_panes(1, 0)
        self.sheet.write_row(0, 0, COLUMNS, self.bold)

    def write(self, row: int, values: tuple[int | str | date | Decimal | None, ...]) -> None:
        for column, value in enumerate(values):
            if isinstance(value, Decimal):  # a cell holds a double: the only float, at the boundary
                self.sheet.write_number(row, column, float(value), self.money)
            elif isinstance(value, date):
                self.sheet.write_datetime(row, column, value, self.date)
            elif isinstance(value, int):
                self.sheet.write_number(row, column, value)
            elif value:
                self.sheet.write_string(row, column, value)  # never a formula, whatever it starts with

    def totals(self, row: int, label: str, total: Decimal) -> None:
        """The label and the sum of the amounts: a formula with its value stored, for readers that do not
        recalculate; a plain number when there are no rows to add up."""
        self.sheet.write_string(row, 0, label, self.bold)
        if row == 1:
            self.sheet.write_number(row, _AMOUNT_COLUMN, float(total), self.money)
            return
        cells = xl_range(1, _AMOUNT_COLUMN, row - 1, _AMOUNT_COLUMN)
        self.sheet.write_formula(row, _AMOUNT_COLUMN, f"=SUM({cells})", self.money, float(total))


def write_xlsx(path: str, header: RegisterHeader, lines: Iterable[RegisterLine]) -> None:
    """Write the register to an XLSX file at path, one sheet, consuming lines once in constant memory.

    A header row of COLUMNS, one row per line (dates as Excel dates, money as "0.00") and a totals row.
    Raises ValueError for more lines than a sheet has rows.
    """
    with xlsxwriter.Workbook(path, {"constant_memory": True}) as workbook:
        workbook.set_properties({"title": f"Реестр за {header.month:02d}.{header.year}",
                                 "company": header.organization_name})
        sheet, total, number = _Sheet(workbook, header), Decimal("0.00"), 0
        for number, line in enumerate(lines, 1):
            if number > _XLSX_MAX_LINES:
                raise ValueError(f"more than {_XLSX_MAX_LINES} lines do not fit an XLSX sheet; take the CSV")
            row = _row(number, line)
            sheet.write(number, row)
            total += row[_AMOUNT_COLUMN]
        sheet.totals(number + 1, _totals_label(header), total)
