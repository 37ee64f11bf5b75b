"""Finance works through /api/v1/billing: tariffs (also from CSV), the ledger and its totals, closing a month,
and registers built by a worker that download byte-identical, validated against the XSD."""

import csv
import datetime as dt
import hashlib
import io
import zipfile
from decimal import Decimal

import openpyxl
import pytest
from lxml import etree

from billing.models import BillableService, BillingPeriod, Tariff
from billing.register import SCHEMAS
from medai.accounts.models import Role
from tests.billing.conftest import POLICY, last_month_noon, radiograph
from tests.inference.conftest import wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def finance(api_client_for, clinic):
    return api_client_for(Role.FINANCE, region=clinic.region)


def test_finance_adds_a_tariff_and_overlaps_are_refused(finance, clinic, api_client_for):
    body = {"region": "RU-MOW", "study_kind": "head_ct", "service_code": "A06.23.004.AI", "name": "КТ ГМ с ИИ",
            "price": "451.25", "valid_from": "2022-01-01", "valid_to": "2022-12-31"}
    response = finance.post("/api/v1/billing/tariffs", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["price"] == "451.25"
    overlapping = {**body, "valid_from": "2022-12-01", "valid_to": "2023-02-01"}
    assert finance.post("/api/v1/billing/tariffs", overlapping, format="json").status_code == 400
    assert finance.post("/api/v1/billing/tariffs", {**body, "region": "RU-SPE"}, format="json").status_code == 404
    assert finance.post("/api/v1/billing/tariffs", {**body, "price": "-1"}, format="json").status_code == 400
    clinic_admin = api_client_for(Role.ORG_ADMIN, organization=clinic)
    assert clinic_admin.post("/api/v1/billing/tariffs", body, format="json").status_code == 403
    listed = clinic_admin.get("/api/v1/billing/tariffs", {"study_kind": "head_ct"}).json()["results"]
    assert [t["price"] for t in listed] == ["451.25", "450.00"]


def test_tariffs_load_from_csv_all_rows_or_none(finance):
    good = ("region;study_kind;service_code;name;price;valid_from;valid_to\n"
            "RU-MOW;mammography;A06.20.004.AI;ММГ с ИИ;239,00;2021-01-01;2022-12-31\n"
            "RU-MOW;chest_ct;A06.09.005.AI;КТ ОГК с ИИ;480,50;2022-01-01;2022-12-31\n")
    response = finance.generic("POST", "/api/v1/billing/tariffs/import", good.encode("utf-8-sig"),
                               content_type="text/csv")
    assert response.status_code == 201, response.json()
    assert [t["price"] for t in response.json()] == ["239.00", "480.50"]
    bad = good.replace("2021-01-01", "2020-01-01").replace("2022-01-01;2022-12-31", "2022-06-01;2023-06-01")
    response = finance.generic("POST", "/api/v1/billing/tariffs/import", bad.encode(), content_type="text/csv")
    assert response.status_code == 400
    assert response.json()["row"] == 2  # the first row overlaps the one loaded above
    assert Tariff.objects.filter(valid_from=dt.date(2020, 1, 1)).count() == 0


def test_the_clinic_supplies_a_missing_policy_number(clinic, analysed, api_client_for):
    analysed(clinic, radiograph(policy=None))
    admin = api_client_for(Role.ORG_ADMIN, organization=clinic)
    [held] = admin.get("/api/v1/billing/services", {"status": "needs_data"}).json()["results"]
    assert held["hold"] == "no_policy"
    pacs = api_client_for(Role.UPLOADER, organization=clinic)
    url = f"/api/v1/billing/services/{held['id']}/policy"
    assert pacs.post(url, {"policy_number": "12"}, format="json").status_code == 400
    response = pacs.post(url, {"policy_number": POLICY}, format="json")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["amount"]) == ("billable", "150.00")
    assert pacs.post(url, {"policy_number": POLICY}, format="json").status_code == 409


def test_totals_equal_the_ledger_and_the_ministry_sees_only_totals(clinic, analysed, finance, tenant_factory,
                                                                 api_client_for):
    second, _ = tenant_factory(region_code="RU-MOW")
    for organization in (clinic, clinic, second):
        analysed(organization)
    [charge] = BillableService.objects.filter(organization=second)
    finance.post(f"/api/v1/billing/services/{charge.id}/reverse", {"reason": "дубль"}, format="json")
    rows = finance.get("/api/v1/billing/totals", {"group_by": ["organization", "study_kind"]}).json()["rows"]
    by_org = {row["organization"]: Decimal(row["amount"]) for row in rows}
    assert by_org == {clinic.oms_code: Decimal("300.00"), second.oms_code: Decimal("0.00")}
    ledger = finance.get("/api/v1/billing/services", {"limit": 1000}).json()["results"]
    assert sum(Decimal(s["amount"]) for s in ledger) == sum(by_org.values())
    ministry = api_client_for(Role.MINISTRY_ANALYST)
    national = ministry.get("/api/v1/billing/totals").json()["rows"]
    assert national == [{"amount": "300.00", "charges": 3, "reversals": 1}]
    assert ministry.get("/api/v1/billing/services").status_code == 403


def test_only_finance_of_the_region_closes_a_month(clinic, analysed, finance, api_client_for):
    last_month = analysed(clinic, finished_at=last_month_noon())
    period = BillableService.objects.get(study_id=last_month.study_id).period
    url = f"/api/v1/billing/periods/{period.id}/close"
    assert api_client_for(Role.REGIONAL_ADMIN, region=clinic.region).post(url).status_code == 403
    assert api_client_for(Role.FINANCE, organization=clinic).post(url).status_code == 403
    response = finance.post(url)
    assert response.status_code == 200
    assert response.json()["status"] == "closed"
    assert finance.post(url).status_code == 409
    current = BillableService.objects.get(study_id=analysed(clinic).study_id).period
    assert finance.post(f"/api/v1/billing/periods/{current.id}/close").status_code == 409  # the month goes on


def export(client, period_id: int, organization: str, fmt: str) -> dict:
    response = client.post(f"/api/v1/billing/periods/{period_id}/exports", {"organization": organization,
                                                                             "format": fmt}, format="json")
    assert response.status_code == 202, response.json()
    export_id = response.json()["id"]

    def ready():
        body = client.get(f"/api/v1/billing/exports/{export_id}").json()
        return body if body["status"] != "pending" else None

    body = wait_for(ready, timeout=60)
    assert body["status"] == "ready", body
    return body


def download(client, export: dict) -> bytes:
    response = client.get(export["download"])
    assert response.status_code == 200
    content = b"".join(response.streaming_content)
    assert response["X-Checksum-SHA256"] == export["sha256"] == hashlib.sha256(content).hexdigest()
    return content


def test_a_closed_month_exports_registers_that_validate_and_download_byte_identical(
    clinic, analysed, finance, worker
):
    for _ in range(3):
        analysed(clinic, finished_at=last_month_noon())
    period = BillableService.objects.filter(organization=clinic).first().period
    refused = finance.post(f"/api/v1/billing/periods/{period.id}/exports", {"organization": clinic.oms_code})
    assert refused.status_code == 409  # the month is still open
    assert finance.post(f"/api/v1/billing/periods/{period.id}/close").status_code == 200

    register = export(finance, period.id, clinic.oms_code, "xml")
    content = download(finance, register)
    assert download(finance, register) == content
    archive = zipfile.ZipFile(io.BytesIO(content))
    names = sorted(archive.namelist())
    yymm = period.month.strftime("%y%m")
    assert names == [f"HM{clinic.oms_code}T45_{yymm}1.XML", f"LM{clinic.oms_code}T45_{yymm}1.XML"]
    hm = etree.fromstring(archive.read(names[0]))
    etree.XMLSchema(etree.parse(str(SCHEMAS / "register.xsd"))).assertValid(hm)
    etree.XMLSchema(etree.parse(str(SCHEMAS / "persons.xsd"))).assertValid(etree.fromstring(archive.read(names[1])))
    amounts = [Decimal(v) for v in hm.xpath("//USL/SUMV_USL/text()")]
    assert Decimal(hm.findtext("SCHET/SUMMAV")) == sum(amounts) == Decimal("450.00") == Decimal(register["total"])
    assert set(hm.xpath("//NPOLIS/text()")) == {POLICY}
    assert "Иванова" in archive.read(names[1]).decode("cp1251")
    assert finance.get(f"/api/v1/billing/periods/{period.id}").json()["status"] == "exported"

    table = download(finance, export(finance, period.id, clinic.oms_code, "csv")).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(table), delimiter=";"))
    assert len(rows) == 1 + 3 + 1  # header, services, totals
    sheet = openpyxl.load_workbook(io.BytesIO(download(finance, export(finance, period.id, clinic.oms_code,
                                                                         "xlsx")))).active
    assert sheet.max_row == 5
    exports = finance.get(f"/api/v1/billing/periods/{period.id}/exports").json()
    assert [(e["format"], e["number"], e["requested_by"] != "") for e in exports] == [
        ("xlsx", 3, True), ("csv", 2, True), ("xml", 1, True)]


def test_a_reversal_after_the_close_is_a_correction_in_the_next_register(clinic, analysed, finance, worker):
    analysed(clinic, finished_at=last_month_noon())
    [charge] = BillableService.objects.filter(organization=clinic)
    assert finance.post(f"/api/v1/billing/periods/{charge.period_id}/close").status_code == 200
    response = finance.post(f"/api/v1/billing/services/{charge.id}/reverse", {"reason": "повтор"}, format="json")
    assert response.status_code == 201
    assert response.json()["amount"] == "-150.00"
    assert finance.post(f"/api/v1/billing/services/{charge.id}/reverse", {"reason": "x"}).status_code == 409
    reversal = BillableService.objects.get(reverses=charge)
    assert reversal.period_id != charge.period_id
    closed = BillingPeriod.objects.get(id=charge.period_id)
    assert download(finance, export(finance, closed.id, clinic.oms_code, "xml"))  # the charge, as it was billed
