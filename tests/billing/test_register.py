"""The register writers as the fund and finance see their files: no database, no Django."""

import codecs
import csv
import io
import tracemalloc
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal

import openpyxl
import pytest
from lxml import etree

from billing.register import (
    RegisterHeader,
    RegisterInvalid,
    RegisterLine,
    register_file_names,
    validate_xml_package,
    write_csv,
    write_validated_xml_package,
    write_xlsx,
    write_xml_package,
)
from billing.register.tables import COLUMNS

TARIFF = Decimal("239.00")
HM, LM, ARCHIVE = "HM770002T45_26111.XML", "LM770002T45_26111.XML", "HM770002T45_26111.zip"
AMOUNT = COLUMNS.index("Сумма, ₽")


def line(service_id: int, **changes) -> RegisterLine:
    base = RegisterLine(
        service_id=service_id, policy_number=f"{7700000000000000 + service_id:016d}", insurer_code="45001",
        service_date=date(2026, 11, 1 + service_id % 28), service_code="A06.20.004.001", study_kind="mammography",
        diagnosis_code="Z01.6", care_profile="78", tariff=TARIFF, amount=TARIFF, correction=False,
        family_name="Иванова", given_name="Мария", middle_name="Петровна", sex="F", birth_date=date(1970, 3, 15),
    )
    return base._replace(**changes)


def header_for(lines: list[RegisterLine], **changes) -> RegisterHeader:
    base = RegisterHeader(
        organization_oms_code="770002", organization_name="ГБУЗ «Городская поликлиника № 2»", tfoms_code="45",
        year=2026, month=11, number=1, created=date(2026, 12, 1), count=len(lines),
        total=sum((item.amount for item in lines), Decimal("0.00")),
    )
    return replace(base, **changes)


SAMPLE = [
    line(1),
    line(2, family_name="Сидоров", given_name="Пётр", middle_name="", sex="M", insurer_code="", birth_date=None),
    line(3, amount=-TARIFF, correction=True),  # a reversal of a service billed in an earlier period
    line(4, sex="", diagnosis_code="", care_profile=""),
]


@pytest.fixture
def package(tmp_path):
    path = tmp_path / ARCHIVE
    with open(path, "wb") as out:
        write_xml_package(out, header_for(SAMPLE), iter(SAMPLE))
    return path


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(path, name: str, old: bytes, new: bytes) -> None:
    """The package with one member tampered with."""
    files = members(path)
    assert old in files[name]
    files[name] = files[name].replace(old, new, 1)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)


def test_file_names_follow_the_ffoms_pattern():
    header = header_for(SAMPLE)
    assert register_file_names(header) == (HM, LM, ARCHIVE)
    assert register_file_names(replace(header, month=3, number=12))[0] == "HM770002T45_260312.XML"


def test_package_with_cyrillic_names_and_a_reversal_validates(package):
    validate_xml_package(package)

    files = members(package)
    assert list(files) == [HM, LM]
    with zipfile.ZipFile(package) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    for data in files.values():
        assert data.startswith(b'<?xml version="1.0" encoding="windows-1251"?>\n')
    assert "Иванова".encode("cp1251") in files[LM] and "Пётр".encode("cp1251") in files[LM]

    register = etree.fromstring(files[HM])
    assert [int(n) for n in register.xpath("//N_ZAP/text()")] == [1, 2, 3, 4]
    assert register.findtext("ZGLV/SD_Z") == "4" and register.findtext("ZGLV/FILENAME") == HM[:-4]
    amounts = [Decimal(value) for value in register.xpath("//Z_SL/SUMV/text()")]
    assert amounts == [TARIFF, TARIFF, -TARIFF, TARIFF]
    assert Decimal(register.findtext("SCHET/SUMMAV")) == sum(amounts) == Decimal("478.00")
    assert register.xpath("//ZAP[N_ZAP=3]/PR_NOV/text()") == ["1"]
    assert register.xpath("//ZAP[N_ZAP=3]//SUMV_USL/text()") == ["-239.00"]
    assert register.xpath("//ZAP[N_ZAP=2]/PACIENT/SMO") == []  # unknown insurer: omitted
    assert register.xpath("//ZAP[N_ZAP=4]//SL/DS1 | //ZAP[N_ZAP=4]//SL/PROFIL") == []

    persons = etree.fromstring(files[LM])
    assert persons.findtext("ZGLV/FILENAME1") == HM[:-4]
    assert persons.xpath("//PERS[ID_PAC=1]/FAM/text()") == ["Иванова"]
    assert persons.xpath("//PERS[ID_PAC=2]/W/text()") == ["1"] and persons.xpath("//PERS[ID_PAC=2]/OT") == []
    assert persons.xpath("//PERS[ID_PAC=4]/W") == [] and persons.xpath("//PERS[ID_PAC=2]/DR") == []


def test_text_outside_windows_1251_and_control_characters_still_give_a_valid_file(tmp_path):
    lines = [line(1, family_name="Łukasz\x07", given_name="Zoë 😀", middle_name="\x00O'Brien & <Sons>")]
    path = tmp_path / ARCHIVE
    with open(path, "wb") as out:
        write_xml_package(out, header_for(lines), lines)

    validate_xml_package(path)
    person = etree.fromstring(members(path)[LM]).find("PERS")
    assert [person.findtext(tag) for tag in ("FAM", "IM", "OT")] == ["?ukasz", "Zo? ?", "O'Brien & <Sons>"]


@pytest.mark.parametrize(("member", "old", "new", "says"), [
    (HM, b"<NPOLIS>7700000000000002<", b"<NPOLIS>770000000000002<", f"{HM}, line 6: Element 'NPOLIS'"),
    (HM, b"<SUMMAV>478.00<", b"<SUMMAV>717.00<", f"{HM}, line 4: SUMMAV is 717.00, the SUMV add up to 478.00"),
    (HM, b"<SD_Z>4<", b"<SD_Z>5<", f"{HM}, line 3: SD_Z is 5, the file holds 4 ZAP"),
    (HM, b"<DATE_Z_1>2026-11-03<", b"<DATE_Z_1>03.11.2026<", f"{HM}, line 6: Element 'DATE_Z_1'"),
    (LM, b"<W>2</W>", b"<W>3</W>", f"{LM}, line 4: Element 'W'"),
    (LM, b"<ID_PAC>4</ID_PAC>", b"<ID_PAC>4</ID_PAC", f"{LM}, line 7: expected '>'"),  # not well-formed
    (LM, b"</PERS_LIST>", b"", f"{LM}, line 9: Premature end of data"),  # truncated
])
def test_a_tampered_package_is_refused_naming_member_and_line(package, member, old, new, says):
    rezip(package, member, old, new)
    with pytest.raises(RegisterInvalid) as refused:
        validate_xml_package(package)
    assert str(refused.value).startswith(says)


def test_a_package_without_its_personal_data_is_refused(package):
    files = members(package)
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr(HM, files[HM])
    with pytest.raises(RegisterInvalid, match="one HM and one LM"):
        validate_xml_package(package)


def test_a_damaged_archive_is_refused(package):
    data = package.read_bytes()
    package.write_bytes(data[: len(data) // 2])
    with pytest.raises(RegisterInvalid, match="not a ZIP"):
        validate_xml_package(package)


def test_lines_that_do_not_add_up_to_the_header_are_not_written():
    with pytest.raises(ValueError, match="says 5 services"):
        write_xml_package(io.BytesIO(), header_for(SAMPLE, count=5), SAMPLE)


def test_csv_opens_in_russian_excel_and_totals_the_amounts():
    out = io.BytesIO()
    write_csv(out, header_for(SAMPLE), iter([*SAMPLE, line(5, family_name="=HYPERLINK(1)")]))

    data = out.getvalue()
    assert data.startswith(codecs.BOM_UTF8)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert rows[0] == list(COLUMNS) and len(rows) == 1 + 5 + 1
    assert rows[1][:6] == ["1", "1", "02.11.2026", "7700000000000001", "45001", "Иванова"]
    assert rows[3][AMOUNT] == "-239,00" and rows[5][COLUMNS.index("Фамилия")] == "'=HYPERLINK(1)"
    amounts = [Decimal(row[AMOUNT].replace(",", ".")) for row in rows[1:-1]]
    assert rows[-1][0] == "Итого за 11.2026"
    assert Decimal(rows[-1][AMOUNT].replace(",", ".")) == sum(amounts) == Decimal("717.00")


def test_xlsx_has_a_row_per_line_and_the_totals(tmp_path):
    path = str(tmp_path / "register.xlsx")
    write_xlsx(path, header_for(SAMPLE), iter(SAMPLE))

    sheet = openpyxl.load_workbook(path, data_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == COLUMNS and len(rows) == 1 + 4 + 1
    assert rows[1][2].date() == date(2026, 11, 2) and rows[1][5] == "Иванова"
    assert [row[AMOUNT] for row in rows[1:-1]] == [239, 239, -239, 239]
    assert sheet.cell(2, AMOUNT + 1).number_format == "0.00"
    assert rows[-1][0] == "Итого за 11.2026" and rows[-1][AMOUNT] == 478  # the stored value, no recalculation
    formula = openpyxl.load_workbook(path).active.cell(len(rows), AMOUNT + 1).value
    assert formula == "=SUM(P2:P5)"


def many(count: int) -> Iterator[RegisterLine]:
    for service_id in range(1, count + 1):
        yield line(service_id, family_name=f"Иванова{service_id % 97}")


def test_twenty_thousand_lines_stream_in_constant_memory(tmp_path):
    count, path = 20_000, tmp_path / ARCHIVE
    header = header_for([], count=count, total=TARIFF * count)
    tracemalloc.start()
    try:
        with open(path, "wb") as out:
            write_xml_package(out, header, many(count))
        validate_xml_package(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # streamed: about 4 MB; with the 20,000 lines held in a list: 12 MB


def test_validating_while_writing_gives_the_same_package_and_passes_it(tmp_path, package):
    streamed = tmp_path / "streamed.zip"
    write_validated_xml_package(str(streamed), header_for(SAMPLE), iter(SAMPLE))
    assert streamed.read_bytes() == package.read_bytes()


def test_validating_while_writing_refuses_a_bad_line_and_names_it(tmp_path):
    bad = [*SAMPLE[:2], line(3, policy_number="770000000000001")]  # an ENP of 15 digits
    with pytest.raises(RegisterInvalid, match=r"HM770002T45_26111\.XML, line 7: .*NPOLIS"):
        write_validated_xml_package(str(tmp_path / ARCHIVE), header_for(bad), iter(bad))


def test_validating_while_writing_streams_in_constant_memory(tmp_path):
    count = 20_000
    tracemalloc.start()
    try:
        write_validated_xml_package(str(tmp_path / ARCHIVE), header_for([], count=count, total=TARIFF * count),
                                    many(count))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
