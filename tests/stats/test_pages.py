"""The dashboards, as a signed-in person sees them: the numbers equal /api/v1/stats's, each level shows its
parts, scopes hold, and the page speaks Russian or English."""

from decimal import Decimal

from django.utils.formats import localize
from django.utils.translation import override
from lxml import html

from medai.accounts.models import Role
from medai.accounts.services import user_ensure
from tests.stats.conftest import WINDOW

STATS = ("studies_received", "analysed", "flagged", "autonomous", "defects", "reviews", "disagreements")


def shown(page: html.HtmlElement, selector: str) -> dict[str, str]:
    """The figures a page shows in an element, by stat."""
    [element] = page.cssselect(selector)
    return {cell.get("data-stat"): cell.text_content().strip() for cell in element.cssselect("[data-stat]")
            if cell.tag != "th"}


def api(client, query: str) -> list[dict]:
    response = client.get(f"/api/v1/stats?{WINDOW}&{query}")
    assert response.status_code == 200
    return response.json()["rows"]


def as_text(value) -> str:
    return "" if value is None else str(value)


def signed_in(client, role: Role, **scope):
    user_ensure(username=f"{role}-{len(scope)}", role=role, password="dash-pass-123", **scope)
    assert client.login(username=f"{role}-{len(scope)}", password="dash-pass-123")
    return client


def test_the_national_page_shows_the_apis_numbers(nation, client, api_client_for):
    ministry = api_client_for(Role.MINISTRY_ANALYST)
    page = html.fromstring(signed_in(client, Role.MINISTRY_ANALYST).get(f"/dashboard/national?{WINDOW}").content)
    [totals] = api(ministry, "level=national")
    assert {stat: shown(page, "#kpis")[stat] for stat in STATS} == {stat: as_text(totals[stat]) for stat in STATS}
    assert shown(page, "#kpis")["billed_amount"] == totals["billed_amount"]
    for row in api(ministry, "level=national&group_by=region"):
        [tr] = page.cssselect(f'#parts-table tr[data-key="{row["region"]}"]')
        assert {cell.get("data-stat"): cell.text_content() for cell in tr.cssselect("td")}["analysed"] == as_text(
            row["analysed"])
    assert [tr.get("data-key") for tr in page.cssselect("#trend-table tbody tr")] == [
        row["day"] for row in api(ministry, "level=national&group_by=day")]
    tatarstan = page.cssselect('#parts-table tr[data-key="RU-TA"] td[data-stat="studies_received"]')[0]
    assert tatarstan.text_content() == "<5"


def test_each_reader_lands_on_their_own_level_and_sees_no_other(nation, client):
    moscow_clinic, _, _, petersburg_clinic, _ = nation
    clinic = signed_in(client, Role.ORG_ADMIN, organization=moscow_clinic)
    assert clinic.get("/dashboard/")["Location"] == f"/dashboard/organization/{moscow_clinic.oms_code}"
    page = clinic.get(f"/dashboard/organization/{moscow_clinic.oms_code}?{WINDOW}&modality=CT")
    assert page.status_code == 200 and "&lt;5" not in page.content.decode()  # no suppression at home
    assert clinic.get("/dashboard/national").status_code == 403
    assert clinic.get("/dashboard/region/RU-MOW").status_code == 403
    assert clinic.get(f"/dashboard/organization/{petersburg_clinic.oms_code}").status_code == 404
    client.logout()
    region = signed_in(client, Role.REGIONAL_ADMIN, region=moscow_clinic.region)
    assert region.get("/dashboard/")["Location"] == "/dashboard/region/RU-MOW"
    assert region.get("/dashboard/region/RU-SPE").status_code == 404
    assert region.get(f"/dashboard/organization/{petersburg_clinic.oms_code}").status_code == 404
    parts = html.fromstring(region.get(f"/dashboard/region/RU-MOW?{WINDOW}").content).cssselect("#parts-table tbody tr")
    assert {tr.get("data-key") for tr in parts} == {org.oms_code for org in nation[:3]}
    client.logout()
    assert signed_in(client, Role.RADIOLOGIST, organization=moscow_clinic).get("/dashboard/").status_code == 403


def test_the_modality_filter_narrows_every_figure(nation, client, api_client_for):
    ministry = api_client_for(Role.MINISTRY_ANALYST)
    page = html.fromstring(signed_in(client, Role.MINISTRY_ANALYST).get(
        f"/dashboard/national?{WINDOW}&modality=MG").content)
    [totals] = api(ministry, "level=national&modality=MG")
    assert shown(page, "#kpis")["studies_received"] == as_text(totals["studies_received"])
    assert [tr.get("data-key") for tr in page.cssselect("#mix-table tbody tr")] == ["MG"]


def test_russian_first_english_on_request(nation, client):
    ministry = signed_in(client, Role.MINISTRY_ANALYST)
    assert "Российская Федерация" in ministry.get("/dashboard/national").content.decode()
    assert "Russian Federation" in ministry.get("/dashboard/national", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    ministry.post("/i18n/setlang/", {"language": "en", "next": "/dashboard/national"})
    page = ministry.get("/dashboard/national").content.decode()
    assert "Studies received" in page and "Исследований" not in page


def test_autonomy_money_and_quality_follow_the_apis_counts(nation, client, api_client_for, settings):
    ministry = api_client_for(Role.MINISTRY_ANALYST)
    page = html.fromstring(signed_in(client, Role.MINISTRY_ANALYST).get(f"/dashboard/national?{WINDOW}").content)
    [totals] = api(ministry, "level=national")
    saved = Decimal(settings.STATS_READING_COST_RUB) * totals["autonomous"]
    share = round(100 * totals["autonomous"] / totals["analysed"], 1)
    with override("ru"):  # the page's language: decimal commas
        assert page.cssselect("#money-saved")[0].text_content().strip() == localize(saved.quantize(Decimal("0.01")))
        assert page.cssselect("#autonomous-share")[0].text_content().split(" %")[0].strip() == localize(share)
    by_service = {row["service"]: row for row in api(ministry, "level=national&group_by=service") if row["service"]}
    rows = page.cssselect("#quality-table tbody tr[data-key]")
    assert {tr.get("data-key") for tr in rows} == set(by_service)
    for tr in rows:
        cells = {cell.get("data-stat"): cell.text_content() for cell in tr.cssselect("td[data-stat]")}
        assert cells["analysed"] == as_text(by_service[tr.get("data-key")]["analysed"])


def test_over_a_quarter_the_trend_is_by_month(nation, client, api_client_for):
    year = "date_from=2025-12-01&date_to=2026-05-31"
    page = html.fromstring(signed_in(client, Role.MINISTRY_ANALYST).get(f"/dashboard/national?{year}").content)
    months = api_client_for(Role.MINISTRY_ANALYST).get(f"/api/v1/stats?{year}&level=national&group_by=month")
    rows = months.json()["rows"]
    assert [row["month"] for row in rows] and all(len(row["month"]) == 7 for row in rows)  # "2026-03"
    assert [tr.get("data-key") for tr in page.cssselect("#trend-table tbody tr")] == [row["month"] for row in rows]
