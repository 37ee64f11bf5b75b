"""The FFOMS XML package: the HM register and LM personal-data files, windows-1251, zipped, streamed."""

import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from decimal import Decimal
from functools import lru_cache
from itertools import islice
from typing import IO, BinaryIO
from xml.sax.saxutils import escape

from billing.register.model import (
    ENCODING,
    VERSION,
    RegisterHeader,
    RegisterLine,
    money,
    period_number,
    register_file_names,
    stems,
)
from billing.register.validation import StreamValidation, validate_written_package

_BATCH = 2000  # lines formatted, encoded and written together
_COMPRESS_LEVEL = 3  # against zlib's default 6: 2.5 times faster, the archive 30 % larger
_MAX_ZAP_BYTES = 2048  # above the longest ZAP the XSD admits: decides whether the HM member needs ZIP64
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])  # str.translate table that drops control characters
_SEX_CODE = {"M": "1", "F": "2"}


# --- XML package ---------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """Element text: control characters dropped, markup escaped (characters outside 1251 go at encoding)."""
    if value.isalnum():  # most names and numbers: nothing to drop or escape, and 10 times faster
        return value
    return escape(value.translate(_CONTROL))


@lru_cache(maxsize=4096)
def _optional(tag: str, value: str) -> str:
    """The element, or nothing for an empty value; cached, for the few codes that repeat on every line."""
    return f"<{tag}>{_text(value)}</{tag}>" if value else ""




@lru_cache(maxsize=1024)
def _money_text(value: Decimal) -> str:
    """_money as text, cached for the few amounts that repeat on every line."""
    return str(money(value))


def _encode(text: str) -> bytes:
    """windows-1251 bytes, "?" for what it lacks; ASCII text (the HM file, mostly) takes the fast path."""
    return text.encode("ascii") if text.isascii() else text.encode(ENCODING, "replace")


def _declaration() -> str:
    return f'<?xml version="1.0" encoding="{ENCODING}"?>\n'


def _register_head(header: RegisterHeader) -> str:
    hm, _ = stems(header)
    return (
        f"{_declaration()}<ZL_LIST>\n"
        f"<ZGLV><VERSION>{VERSION}</VERSION><DATA>{header.created.isoformat()}</DATA>"
        f"<FILENAME>{_text(hm)}</FILENAME><SD_Z>{header.count}</SD_Z></ZGLV>\n"
        f"<SCHET><CODE>{header.number}</CODE><CODE_MO>{_text(header.organization_oms_code)}</CODE_MO>"
        f"<YEAR>{header.year}</YEAR><MONTH>{header.month}</MONTH><NSCHET>{period_number(header)}</NSCHET>"
        f"<DSCHET>{header.created.isoformat()}</DSCHET><PLAT>{_text(header.tfoms_code)}</PLAT>"
        f"<SUMMAV>{money(header.total)}</SUMMAV></SCHET>\n"
    )


def _persons_head(header: RegisterHeader) -> str:
    hm, lm = stems(header)
    return (
        f"{_declaration()}<PERS_LIST>\n"
        f"<ZGLV><VERSION>{VERSION}</VERSION><DATA>{header.created.isoformat()}</DATA>"
        f"<FILENAME>{_text(lm)}</FILENAME><FILENAME1>{_text(hm)}</FILENAME1></ZGLV>\n"
    )


@lru_cache(maxsize=4096)
def _tariff_part(care_profile: str, diagnosis_code: str, service_code: str, tariff: Decimal) -> tuple[str, str]:
    """What a ZAP takes from the tariff, the same on most lines: PROFIL and DS1; CODE_USL to TARIF."""
    return (
        f"{_optional('PROFIL', care_profile)}{_optional('DS1', diagnosis_code)}",
        f"<CODE_USL>{_text(service_code)}</CODE_USL><KOL_USL>1</KOL_USL><TARIF>{money(tariff)}</TARIF>",
    )


def _zap(number: int, line: RegisterLine, lpu: str) -> str:
    day, amount, case = line.service_date.isoformat(), _money_text(line.amount), str(line.service_id)
    codes, service = _tariff_part(line.care_profile, line.diagnosis_code, line.service_code, line.tariff)
    return (
        f"<ZAP><N_ZAP>{number}</N_ZAP><PR_NOV>{'1' if line.correction else '0'}</PR_NOV>"
        f"<PACIENT><ID_PAC>{case}</ID_PAC><VPOLIS>3</VPOLIS><NPOLIS>{_text(line.policy_number)}</NPOLIS>"
        f"{_optional('SMO', line.insurer_code)}</PACIENT>"
        f"<Z_SL><IDCASE>{case}</IDCASE><USL_OK>3</USL_OK><LPU>{lpu}</LPU><DATE_Z_1>{day}</DATE_Z_1>"
        f"<DATE_Z_2>{day}</DATE_Z_2><SL><SL_ID>{case}</SL_ID>{codes}"
        f"<USL><IDSERV>{case}</IDSERV><LPU>{lpu}</LPU><DATE_IN>{day}</DATE_IN><DATE_OUT>{day}</DATE_OUT>"
        f"{service}<SUMV_USL>{amount}</SUMV_USL></USL></SL><SUMV>{amount}</SUMV></Z_SL></ZAP>\n"
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
    lpu = _text(header.organization_oms_code)
    count, total = 0, Decimal("0.00")
    for batch in _batches(lines):
        register.write(_encode("".join(_zap(count + i, line, lpu) for i, line in enumerate(batch, 1))))
        persons.write(_encode("".join(map(_pers, batch))))
        count += len(batch)
        total += sum(money(line.amount) for line in batch)
    return count, total


def _check_header(header: RegisterHeader, count: int, total: Decimal) -> None:
    if (count, total) != (header.count, money(header.total)):
        raise ValueError(f"the register's header says {header.count} services for {header.total}, "
                         f"the lines were {count} for {total}")


def _member(name: str, header: RegisterHeader) -> zipfile.ZipInfo:
    """A deflated member dated the register's day (not 1980, zipfile's default), the same for every run."""
    created = header.created
    info = zipfile.ZipInfo(name, date_time=(created.year, created.month, created.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = _COMPRESS_LEVEL  # the only way to give a ZipInfo its level before Python 3.13
    return info


class _Tee:
    """A member's bytes to the archive (or the temporary file) and to its validation as well."""

    def __init__(self, stream: IO[bytes], validation: StreamValidation | None) -> None:
        self.stream, self.validation = stream, validation

    def write(self, data: bytes) -> None:
        self.stream.write(data)
        if self.validation is not None:
            self.validation.write(data)


def write_xml_package(out: BinaryIO, header: RegisterHeader, lines: Iterable[RegisterLine],
                      validations: tuple[StreamValidation, StreamValidation] | None = None) -> None:
    """Write the ZIP of the HM and LM files to out (a seekable binary file), consuming lines once.

    The HM member streams into the archive while the LM file goes to a temporary file, appended after;
    with `validations`, each file's bytes also go to its validation as they are written.
    Raises ValueError when the lines do not add up to the header's count and total.
    """
    hm_name, lm_name, _ = register_file_names(header)
    large = header.count * _MAX_ZAP_BYTES > zipfile.ZIP64_LIMIT
    hm_check, lm_check = validations or (None, None)
    with zipfile.ZipFile(out, "w") as archive, tempfile.TemporaryFile() as persons_file:
        persons = _Tee(persons_file, lm_check)
        persons.write(_encode(_persons_head(header)))
        with archive.open(_member(hm_name, header), "w", force_zip64=large) as member:
            register = _Tee(member, hm_check)
            register.write(_encode(_register_head(header)))
            count, total = _write_records(register, persons, header, lines)
            register.write(b"</ZL_LIST>\n")
        _check_header(header, count, total)
        persons.write(b"</PERS_LIST>\n")
        persons = persons_file
        size = persons.tell()
        persons.seek(0)
        with archive.open(_member(lm_name, header), "w", force_zip64=size > zipfile.ZIP64_LIMIT) as member:
            shutil.copyfileobj(persons, member, 1 << 20)


def write_validated_xml_package(path: str, header: RegisterHeader, lines: Iterable[RegisterLine]) -> None:
    """Write the package to `path` and validate it as it is written: each file is parsed against its XSD
    in a thread of its own while the next lines are formatted (libxml2 parses without the GIL), instead
    of in a second pass. Raises RegisterInvalid, naming the member and the line, for a package that must
    not be offered; ValueError when the lines do not add up to the header."""
    checks = StreamValidation("register.xsd", "ZAP"), StreamValidation("persons.xsd", "PERS")
    try:
        with open(path, "wb") as out:
            write_xml_package(out, header, lines, validations=checks)
    finally:
        register, persons = (check.result() for check in checks)
    validate_written_package(path, register, persons)
