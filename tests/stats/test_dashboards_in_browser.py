"""The dashboards in a real browser (Debian's Chromium, driven by Playwright) behind the real sign-in
(Keycloak's authorization-code flow, served by gunicorn): a ministry analyst signs in, reads the national
page, drills down to a region and an organization, and switches to English. Every figure read off the
pages equals /api/v1/stats's; screenshots go to test-artifacts/.

The browser runs first and the API is asked after it closes: Playwright's event loop and Django's ORM do
not share a thread."""

import uuid

import pytest
from playwright.sync_api import Page, sync_playwright

from medai.accounts.models import Role
from tenants.identity import KeycloakDirectory
from tests.stats.conftest import WINDOW

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FIGURES = ("studies_received", "analysed", "flagged", "autonomous", "defects", "billed_amount")


def figures(page: Page) -> dict:
    """The key figures and the table of parts as the page shows them."""
    return page.evaluate("""() => ({
        totals: Object.fromEntries([...document.querySelectorAll('#kpis [data-stat]')]
            .map(e => [e.dataset.stat, e.textContent.trim()])),
        parts: Object.fromEntries([...document.querySelectorAll('#parts-table tbody tr[data-key]')]
            .map(tr => [tr.dataset.key, Object.fromEntries([...tr.querySelectorAll('td[data-stat]')]
                .map(td => [td.dataset.stat, td.textContent.trim()]))])),
        charts: [...document.querySelectorAll('canvas')].filter(c => window.Chart && Chart.getChart(c)).length,
    })""")


def as_shown(value) -> str:
    """An API value as a Russian page prints it (decimal comma for a float)."""
    if value is None:
        return ""
    return str(value).replace(".", ",") if isinstance(value, float) else str(value)


@pytest.fixture
def ministry_analyst(keycloak, settings) -> tuple[str, str]:
    settings.KEYCLOAK_URL = keycloak.url
    settings.KEYCLOAK_ADMIN_CLIENT_SECRET = "medai-admin-dev-secret"
    directory = KeycloakDirectory.from_settings()
    username = f"analyst-{uuid.uuid4().hex[:8]}"
    directory.create_user(username=username, email=f"{username}@minzdrav.example", first_name="Анна",
                          last_name="Петрова", role=Role.MINISTRY_ANALYST, group_path=directory.group_path(),
                          password="kc-pass-123")
    return username, "kc-pass-123"


def test_a_ministry_analyst_drills_down_from_the_nation(nation, ministry_analyst, keycloak, web_server_factory,
                                                       api_client_for, artifacts_dir):
    base_url = web_server_factory(KEYCLOAK_URL=keycloak.url, KEYCLOAK_CLIENT_SECRET="medai-platform-dev-secret")
    moscow_clinic = nation[0]
    username, password = ministry_analyst
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(locale="ru-RU", viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(f"{base_url}/dashboard/national?{WINDOW}")
        assert page.url.startswith(keycloak.url)  # not signed in: off to Keycloak
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#kc-login")
        page.wait_for_url(f"{base_url}/dashboard/national?{WINDOW}")
        page.wait_for_load_state("networkidle")
        assert page.inner_text("h1") == "Российская Федерация"
        seen["national"] = figures(page)
        page.screenshot(path=artifacts_dir / "dashboard-national.png", full_page=True)

        page.click('#parts-table tr[data-key="RU-MOW"] a')
        page.wait_for_url(f"{base_url}/dashboard/region/RU-MOW?{WINDOW}")
        page.wait_for_load_state("networkidle")
        seen["region"] = figures(page)
        page.screenshot(path=artifacts_dir / "dashboard-region.png", full_page=True)

        page.click(f'#parts-table tr[data-key="{moscow_clinic.oms_code}"] a')
        page.wait_for_url(f"{base_url}/dashboard/organization/{moscow_clinic.oms_code}?{WINDOW}")
        page.wait_for_load_state("networkidle")
        seen["organization"] = figures(page)
        page.screenshot(path=artifacts_dir / "dashboard-organization.png", full_page=True)

        page.click('#language button[value="en"]')
        page.wait_for_load_state("networkidle")
        seen["english"] = (page.inner_text("h1"), page.inner_text("#kpis"))
        page.screenshot(path=artifacts_dir / "dashboard-organization-en.png", full_page=True)
        browser.close()

    ministry = api_client_for(Role.MINISTRY_ANALYST)
    levels = {"national": ("level=national", "region"), "region": ("level=region&region=RU-MOW", "organization"),
              "organization": (f"level=organization&organization={moscow_clinic.oms_code}", "service")}
    for level, (query, parts_by) in levels.items():
        [totals] = ministry.get(f"/api/v1/stats?{WINDOW}&{query}").json()["rows"]
        assert {stat: seen[level]["totals"][stat] for stat in FIGURES} == {
            stat: as_shown(totals[stat]) for stat in FIGURES}, level
        rows = ministry.get(f"/api/v1/stats?{WINDOW}&{query}&group_by={parts_by}").json()["rows"]
        assert seen[level]["parts"] == {
            as_shown(row[parts_by]): {stat: as_shown(row[stat]) for stat in seen[level]["parts"][
                as_shown(row[parts_by])]} for row in rows}, level
        assert seen[level]["charts"] == 3, level  # parts, trend and modality mix drawn
    assert seen["national"]["parts"]["RU-TA"]["studies_received"] == "<5"  # Kazan's two studies
    title, kpis = seen["english"]
    assert title == moscow_clinic.name and "Studies received" in kpis
