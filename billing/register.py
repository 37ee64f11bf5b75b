"""Writers of an organization's OMS register for a closed period: the FFOMS XML package, CSV and XLSX.

One register per medical organization and closed billing period is what the territorial OMS fund pays
against, so a register is written once, from the services of that period, and numbered (N in the file
names, CODE and NSCHET of the invoice). A large organization bills up to a million services a month:
every writer consumes its lines once, from a database cursor, and keeps no more than a batch of them in
memory. The XML package is validated against our XSDs (schemas/) before it is offered, so a malformed
file never reaches the fund; validation streams as well.

Pure code: no database, no Django.

XML package: a ZIP (deflated) with the HM register file (ZL_LIST) and the LM personal-data file
(PERS_LIST), both windows-1251. One ZAP per service, one line per ZAP (so a validation error's line is
the record's line); ID_PAC, IDCASE, SL_ID and IDSERV are the service's id. NSCHET is f"{YYMM}{N}", the
file names' suffix. Text outside windows-1251 becomes "?" and control characters are dropped.

CSV: UTF-8 with a BOM, ";" separated, decimal comma and dates DD.MM.YYYY, as Russian Excel reads them.
"""

import csv
import io
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import cache, lru_cache
from itertools import islice
from pathlib import Path
from typing import IO, BinaryIO
from xml.sax.saxutils import escape

import xlsxwriter
from lxml import etree
from xlsxwriter.utility import xl_range

VERSION = "3.2"
ENCODING = "windows-1251"
SCHEMAS = Path(__file__).with_name("schemas")
COLUMNS = (
    "№", "ID услуги", "Дата услуги", "ЕНП", "СМО", "Фамилия", "Имя", "Отчество", "Пол", "Дата рождения",
    "Вид исследования", "Код услуги", "Диагноз (МКБ-10)", "Профиль", "Тариф, ₽", "Сумма, ₽", "Исправление",
)
TOTAL_LABEL = "Итого"

_CENT = Decimal("0.01")
_BATCH = 2000  # lines formatted, encoded and written together
_MAX_ZAP_BYTES = 2048  # above the longest ZAP the XSD admits: decides whether the HM member needs ZIP64
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])  # str.translate table that drops control characters
_SEX_CODE = {"M": "1", "F": "2"}
_SEX_LABEL = {"M": "М", "F": "Ж"}
_FORMULA_START = ("=", "+", "-", "@")  # a CSV cell starting so is a formula to a spreadsheet
_AMOUNT_COLUMN = COLUMNS.index("Сумма, ₽")
_XLSX_MAX_LINES = 1_048_576 - 2  # an Excel sheet's rows less the header and the totals


class RegisterInvalid(ValueError):
    """A register package that must not be offered: names the member and, where known, the line."""


@dataclass(frozen=True)
class RegisterHeader:
    organization_oms_code: str  # CODE_MO and LPU, e.g. "770002"
    organization_name: str
    tfoms_code: str  # 2-digit code of the territorial fund, e.g. "45"; also PLAT
    year: int
    month: int  # 1..12
    number: int  # sequence number of this export of the period (N in file names, part of NSCHET)
    created: date  # DATA, DSCHET
    count: int  # SD_Z: number of ZAP
    total: Decimal  # SUMMAV: sum of all line amounts (2 places)


@dataclass(frozen=True)
class RegisterLine:
    service_id: int  # IDSERV; also used as ID_PAC and IDCASE (unique per file, opaque)
    policy_number: str  # NPOLIS: 16-digit ENP; VPOLIS is 3
    insurer_code: str  # SMO, "" when unknown -> element omitted
    service_date: date  # DATE_Z_1, DATE_Z_2, DATE_IN, DATE_OUT
    service_code: str  # CODE_USL (tariff's code of the territorial programme)
    study_kind: str  # e.g. "chest_xray" (CSV/XLSX only)
    diagnosis_code: str  # DS1, "" -> omitted
    care_profile: str  # PROFIL, "" -> omitted
    tariff: Decimal  # TARIF
    amount: Decimal  # SUMV_USL and SUMV; negative for a reversal
    correction: bool  # a reversal of an earlier period's service: PR_NOV = 1, else 0
    family_name: str  # FAM  (PERS_LIST)
    given_name: str  # IM
    middle_name: str  # OT ("" -> omitted)
    sex: str  # "M", "F" or "" -> W is 1 for M, 2 for F, omitted if unknown
    birth_date: date | None  # DR, omitted if None


# --- file names ---------------------------------------------------------------------------------------------


def _stems(header: RegisterHeader) -> tuple[str, str]:
    suffix = f"{header.organization_oms_code}T{header.tfoms_code}_{_period_number(header)}"
    return f"HM{suffix}", f"LM{suffix}"


def _period_number(header: RegisterHeader) -> str:
    return f"{header.year % 100:02d}{header.month:02d}{header.number}"


def register_file_names(header: RegisterHeader) -> tuple[str, str, str]:
    """(HM member, LM member, ZIP archive), e.g. ("HM770002T45_26111.XML", "LM….XML", "HM770002T45_26111.zip")."""
    hm, lm = _stems(header)
    return f"{hm}.XML", f"{lm}.XML", f"{hm}.zip"


# --- XML package ---------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """Element text: control characters dropped, markup escaped (characters outside 1251 go at encoding)."""
    if value.isalnum():  # most names and numbers: nothing to drop or escape, and 10 times faster
        return value
    return escape(value.translate(_CONTROL))


@lru_cache(maxsize=4096)
def _code(value: str) -> str:
    """_text for the few distinct codes that repeat on every line."""
    return _text(value)


@lru_cache(maxsize=4096)
def _optional(tag: str, value: str) -> str:
    return f"<{tag}>{_text(value)}</{tag}>" if value else ""


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, ROUND_HALF_UP)


@lru_cache(maxsize=1024)
def _money_text(value: Decimal) -> str:
    """_money as text, for the few tariffs and amounts that repeat on every line."""
    return str(_money(value))


def _encode(text: str) -> bytes:
    """windows-1251 bytes, "?" for what it lacks; ASCII text (the HM file, mostly) takes the fast path."""
    return text.encode("ascii") if text.isascii() else text.encode(ENCODING, "replace")


def _declaration() -> str:
    return f'<?xml version="1.0" encoding="{ENCODING}"?>\n'


def _register_head(header: RegisterHeader) -> str:
    hm, _ = _stems(header)
    return (
        f"{_declaration()}<ZL_LIST>\n"
        f"<ZGLV><VERSION>{VERSION}</VERSION><DATA>{header.created.isoformat()}</DATA>"
        f"<FILENAME>{_code(hm)}</FILENAME><SD_Z>{header.count}</SD_Z></ZGLV>\n"
        f"<SCHET><CODE>{header.number}</CODE><CODE_MO>{_code(header.organization_oms_code)}</CODE_MO>"
        f"<YEAR>{header.year}</YEAR><MONTH>{header.month}</MONTH><NSCHET>{_period_number(header)}</NSCHET>"
        f"<DSCHET>{header.created.isoformat()}</DSCHET><PLAT>{_code(header.tfoms_code)}</PLAT>"
        f"<SUMMAV>{_money(header.total)}</SUMMAV></SCHET>\n"
    )


def _persons_head(header: RegisterHeader) -> str:
    hm, lm = _stems(header)
    return (
        f"{_declaration()}<PERS_LIST>\n"
        f"<ZGLV><VERSION>{VERSION}</VERSION><DATA>{header.created.isoformat()}</DATA>"
        f"<FILENAME>{_code(lm)}</FILENAME><FILENAME1>{_code(hm)}</FILENAME1></ZGLV>\n"
    )


def _zap(number: int, line: RegisterLine, lpu: str) -> str:
    day, amount, case = line.service_date.isoformat(), _money_text(line.amount), line.service_id
    return (
        f"<ZAP><N_ZAP>{number}</N_ZAP><PR_NOV>{int(line.correction)}</PR_NOV>"
        f"<PACIENT><ID_PAC>{case}</ID_PAC><VPOLIS>3</VPOLIS><NPOLIS>{_text(line.policy_number)}</NPOLIS>"
        f"{_optional('SMO', line.insurer_code)}</PACIENT>"
        f"<Z_SL><IDCASE>{case}</IDCASE><USL_OK>3</USL_OK><LPU>{lpu}</LPU><DATE_Z_1>{day}</DATE_Z_1>"
        f"<DATE_Z_2>{day}</DATE_Z_2><SUMV>{amount}</SUMV><SL><SL_ID>{case}</SL_ID>"
        f"{_optional('PROFIL', line.care_profile)}{_optional('DS1', line.diagnosis_code)}"
        f"<USL><IDSERV>{case}</IDSERV><LPU>{lpu}</LPU><DATE_IN>{day}</DATE_IN><DATE_OUT>{day}</DATE_OUT>"
        f"<CODE_USL>{_code(line.service_code)}</CODE_USL><KOL_USL>1</KOL_USL><TARIF>{_money_text(line.tariff)}</TARIF>"
        f"<SUMV_USL>{amount}</SUMV_USL></USL></SL></Z_SL></ZAP>\n"
    )


def _pers(line: RegisterLine) -> str:
    sex = _SEX_CODE.get(line.sex)
    return (
        f"<PERS><ID_PAC>{line.service_id}</ID_PAC><FAM>{_text(line.family_name)}</FAM>"
        f"<IM>{_text(line.given_name)}</IM>{f'<OT>{_text(line.middle_name)}</OT>' if line.middle_name else ''}"
        f"{f'<W>{sex}</W>' if sex else ''}"
        f"{f'<DR>{line.birth_date.isoformat()}</DR>' if line.birth_date else ''}</PERS>\n"
    )


def _batches(lines: Iterable[RegisterLine]) -> Iterator[list[RegisterLine]]:
    iterator = iter(lines)
    while batch := list(islice(iterator, _BATCH)):
        yield batch


def _write_records(register: IO[bytes], persons: IO[bytes], header: RegisterHeader,
                   lines: Iterable[RegisterLine]) -> tuple[int, Decimal]:
    """Both files' records in one pass over lines; returns their count and the sum of their amounts."""
    lpu = _code(header.organization_oms_code)
    count, total = 0, Decimal("0.00")
    for batch in _batches(lines):
        register.write(_encode("".join(_zap(count + i, line, lpu) for i, line in enumerate(batch, 1))))
        persons.write(_encode("".join(map(_pers, batch))))
        count += len(batch)
        total += sum(_money(line.amount) for line in batch)
    return count, total


def _check_header(header: RegisterHeader, count: int, total: Decimal) -> None:
    if (count, total) != (header.count, _money(header.total)):
        raise ValueError(f"the register's header says {header.count} services for {header.total}, "
                         f"the lines were {count} for {total}")


def _member(name: str, header: RegisterHeader) -> zipfile.ZipInfo:
    """A deflated member dated the register's day (not 1980, zipfile's default), the same for every run."""
    created = header.created
    info = zipfile.ZipInfo(name, date_time=(created.year, created.month, created.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_xml_package(out: BinaryIO, header: RegisterHeader, lines: Iterable[RegisterLine]) -> None:
    """Write the ZIP of the HM and LM files to out (a seekable binary file), consuming lines once.

    The HM member streams into the archive while the LM file goes to a temporary file, appended after.
    Raises ValueError when the lines do not add up to the header's count and total.
    """
    hm_name, lm_name, _ = register_file_names(header)
    large = header.count * _MAX_ZAP_BYTES > zipfile.ZIP64_LIMIT
    with zipfile.ZipFile(out, "w") as archive, tempfile.TemporaryFile() as persons:
        persons.write(_encode(_persons_head(header)))
        with archive.open(_member(hm_name, header), "w", force_zip64=large) as register:
            register.write(_encode(_register_head(header)))
            count, total = _write_records(register, persons, header, lines)
            register.write(b"</ZL_LIST>\n")
        _check_header(header, count, total)
        persons.write(b"</PERS_LIST>\n")
        size = persons.tell()
        persons.seek(0)
        with archive.open(_member(lm_name, header), "w", force_zip64=size > zipfile.ZIP64_LIMIT) as member:
            shutil.copyfileobj(persons, member, 1 << 20)


# --- validation ----------------------------------------------------------------------------------------------


_CHUNK = 1 << 16  # bytes read from a member at a time
_MAX_TOKEN = 1 << 20  # a tag or text longer than this is refused rather than held
_DECLARATION = re.compile(rb"""<\?xml[^?]*encoding=["']windows-1251["']""", re.IGNORECASE)
_AMOUNT = re.compile(rb"<SUMV>\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*(?:<|\Z)")
_HEADER_VALUE = re.compile(rb"<(SD_Z|SUMMAV|FILENAME1?)>\s*([^<\s]*)")


class _NoTree:
    """Parser target without handlers: libxml2 parses and validates, and builds no tree."""

    def close(self) -> None:
        return None


class _Tally:
    """A member's bytes for the parser, with what the XSD cannot check read off them on the way.

    Counts the records (ZAP or PERS), adds up SUMV and keeps the header's SD_Z, SUMMAV and FILENAMEs with
    their lines. Bytes are examined up to the last "<", so no tag or text is cut in two. Exact for a file
    without comments, CDATA, DOCTYPE or processing instructions: they are counted in markup, and refused.
    """

    def __init__(self, stream: IO[bytes], record: str) -> None:
        self._stream, self._pending = stream, b""
        self._record = re.compile(rb"<%s[\s>]" % record.encode())  # starts with a literal: a fast search
        self.records, self.amounts, self.markup, self.declared = 0, Decimal(0), 0, False
        self.header: dict[str, tuple[str, int]] = {}
        self.line = 1  # counted up to the first record, the end of the header

    def read(self, size: int) -> bytes:
        chunk = self._stream.read(max(size, _CHUNK))
        pending = self._pending + chunk
        cut = max(pending.rfind(b"<"), 0) if chunk else len(pending)
        self._count(pending[:cut])
        self._pending = pending[cut:]
        if len(self._pending) > _MAX_TOKEN:
            raise RegisterInvalid(f"a tag or text over {_MAX_TOKEN} bytes")
        return chunk

    def _count(self, block: bytes) -> None:
        if not self.records:  # a valid file has its header before the first record
            self._read_header(block)
        self.records += len(self._record.findall(block))
        self.amounts += sum(Decimal(value.decode()) for value in _AMOUNT.findall(block))
        for mark in (b"!", b"?"):  # memchr first: b"<!" is a slow search where "<" is everywhere
            if mark in block:
                self.markup += block.count(b"<" + mark)

    def _read_header(self, block: bytes) -> None:
        self.declared = self.declared or (self.line == 1 and bool(_DECLARATION.match(block)))
        for match in _HEADER_VALUE.finditer(block):
            line = self.line + block.count(b"\n", 0, match.start())
            self.header.setdefault(match[1].decode(), (match[2].decode(ENCODING, "replace"), line))
        self.line += block.count(b"\n")


def _members(archive: zipfile.ZipFile) -> tuple[str, str]:
    names = archive.namelist()
    hm = [name for name in names if re.fullmatch(r"HM.+\.XML", name, re.IGNORECASE)]
    lm = [name for name in names if re.fullmatch(r"LM.+\.XML", name, re.IGNORECASE)]
    if len(hm) != 1 or len(lm) != 1 or len(names) != 2:
        raise RegisterInvalid(f"the package must hold one HM and one LM file, it holds {names}")
    return hm[0], lm[0]


@cache
def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


def _parser(schema: etree.XMLSchema) -> etree.XMLParser:
    return etree.XMLParser(schema=schema, target=_NoTree(), resolve_entities=False, no_network=True)


def _scan(archive: zipfile.ZipFile, member: str, schema: etree.XMLSchema, record: str) -> _Tally:
    """Validate the member against the schema in one streamed pass, without a tree, tallying it."""
    parser = _parser(schema)
    try:
        with archive.open(member) as stream:
            tally = _Tally(stream, record)
            etree.parse(tally, parser)  # with a target, schema errors are logged, not raised
    except etree.XMLSyntaxError as error:  # not well-formed: libxml2 knows the line
        raise _refusal(member, error.lineno, error) from error
    except (RegisterInvalid, zipfile.BadZipFile, zlib.error) as error:
        raise RegisterInvalid(f"{member}: {error}") from error
    if error := _first_error(parser.error_log):
        raise _locate(archive, member, schema, error.message)
    return tally


def _first_error(log: etree._ListErrorLog) -> etree._LogEntry | None:
    errors = log.filter_from_errors()
    return errors[0] if errors else None


def _refusal(member: str, line: int, error: etree.XMLSyntaxError) -> RegisterInvalid:
    # lxml words the error of a validating target parser 'line 4: b"expected \'>\'"': keep what is quoted
    quoted = re.fullmatch(r"""line \d+: b(["'])(.*)\1""", error.msg)
    return RegisterInvalid(f"{member}, line {line}: {quoted[2] if quoted else error.msg}")


def _locate(archive: zipfile.ZipFile, member: str, schema: etree.XMLSchema, message: str) -> RegisterInvalid:
    """The schema's error with its line, which libxml2 does not give while streaming.

    Only for a failed file: parses it again a line at a time and stops at the first line that logs an error.
    """
    parser, line = _parser(schema), 1
    try:
        with archive.open(member) as stream:
            for piece in iter(lambda: stream.readline(_MAX_TOKEN), b""):
                parser.feed(piece)
                if error := _first_error(parser.feed_error_log):
                    return RegisterInvalid(f"{member}, line {line}: {error.message}")
                line += piece.count(b"\n")
    except etree.XMLSyntaxError as error:
        return _refusal(member, error.lineno or line, error)
    return RegisterInvalid(f"{member}: {message}")


def _value(member: str, tally: _Tally, tag: str) -> tuple[str, int]:
    if tag not in tally.header:
        raise RegisterInvalid(f"{member}: no {tag}")
    return tally.header[tag]


def _check_form(member: str, tally: _Tally) -> None:
    if not tally.declared:
        raise RegisterInvalid(f"{member}, line 1: not declared {ENCODING}")
    if tally.markup != 1:
        raise RegisterInvalid(f"{member}: comments, CDATA, a DOCTYPE or processing instructions, "
                              "which a register does not have")


def _check_name(member: str, tally: _Tally, tag: str, expected: str) -> None:
    name, line = _value(member, tally, tag)
    if name != Path(expected).stem:
        raise RegisterInvalid(f"{member}, line {line}: {tag} is {name}, not {Path(expected).stem}")


def _check_register(member: str, tally: _Tally) -> None:
    """SD_Z is the number of ZAP, SUMMAV the sum of SUMV, FILENAME the member's name."""
    count, line = _value(member, tally, "SD_Z")
    if int(count) != tally.records:
        raise RegisterInvalid(f"{member}, line {line}: SD_Z is {count}, the file holds {tally.records} ZAP")
    total, line = _value(member, tally, "SUMMAV")
    if Decimal(total) != tally.amounts:
        raise RegisterInvalid(f"{member}, line {line}: SUMMAV is {total}, the SUMV add up to {tally.amounts}")
    _check_name(member, tally, "FILENAME", member)


def _check_persons(member: str, tally: _Tally, register: str, records: int) -> None:
    """One PERS per ZAP, FILENAME the member's name and FILENAME1 the register's."""
    if tally.records != records:
        raise RegisterInvalid(f"{member}: {tally.records} PERS for {records} ZAP in {register}")
    _check_name(member, tally, "FILENAME", member)
    _check_name(member, tally, "FILENAME1", register)


def validate_xml_package(package: str | Path | IO[bytes]) -> None:
    """Refuse, with RegisterInvalid naming the member and the line, a package that must not go to the fund.

    Each member is validated against its XSD in one streamed pass, in constant memory, the two at once
    (lxml parses a file-like object without the GIL); then what a schema cannot check: SD_Z against the
    ZAP, SUMMAV against the SUMV, the file names, one PERS per ZAP.
    """
    try:
        archive = zipfile.ZipFile(package)
    except zipfile.BadZipFile as error:
        raise RegisterInvalid(f"not a ZIP package: {error}") from error
    with archive, ThreadPoolExecutor(2) as pool:
        hm, lm = _members(archive)
        scans = pool.submit(_scan, archive, hm, _schema("register.xsd"), "ZAP"), \
            pool.submit(_scan, archive, lm, _schema("persons.xsd"), "PERS")
        register, persons = (scan.result() for scan in scans)
    _check_form(hm, register)
    _check_form(lm, persons)
    _check_register(hm, register)
    _check_persons(lm, persons, hm, register.records)


# --- CSV and XLSX ----------------------------------------------------------------------------------------------


def _row(number: int, line: RegisterLine) -> tuple[int | str | date | Decimal | None, ...]:
    """One line as the spreadsheet columns (COLUMNS)."""
    return (
        number, line.service_id, line.service_date, line.policy_number, line.insurer_code, line.family_name,
        line.given_name, line.middle_name, _SEX_LABEL.get(line.sex, ""), line.birth_date, line.study_kind,
        line.service_code, line.diagnosis_code, line.care_profile, _money(line.tariff), _money(line.amount),
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
