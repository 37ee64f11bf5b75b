"""/api/v1/stats: levels, the caller's scope, small-cell suppression above the organization, CSV."""

import datetime as dt
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.db import connection

from medai.accounts.models import Role
from medai.stats.models import DailyCount
from tenants.services import region_ensure

DAY = dt.date(2026, 3, 10)
WINDOW = "date_from=2026-03-01&date_to=2026-03-31"


@pytest.fixture
def counted(tenant_factory):
    """Moscow: a clinic with 7 studies and 6 results, one with 6 and 6, one with 2 studies; Saint Petersburg:
    one with 3."""
    big, _ = tenant_factory(region_code="RU-MOW")
    mid, _ = tenant_factory(region_code="RU-MOW")
    small, _ = tenant_factory(region_code="RU-MOW")
    other, _ = tenant_factory(region_code="RU-SPE")

    def count(organization, stat: str, value: int) -> None:
        DailyCount.objects.create(organization=organization, region_id=organization.region_id, day=DAY,
                                  modality="DX", stat=stat, value=value)

    count(big, "studies_received", 7)
    count(big, "analysed", 6)
    count(big, "processing_time:08", 5)  # up to 16 s
    count(big, "processing_time:12", 1)  # up to 64 s
    count(big, "billed_kopecks", 600_000)
    count(mid, "studies_received", 6)
    count(mid, "analysed", 6)
    count(mid, "billed_kopecks", 500_000)
    count(small, "studies_received", 2)
    count(small, "analysed", 2)
    count(small, "billed_kopecks", 200_000)
    count(other, "studies_received", 3)
    return big, small, other, mid


def get(client, query: str):
    return client.get(f"/api/v1/stats?{WINDOW}&{query}")


def test_the_ministry_sees_the_nation_with_small_cells_suppressed(counted, api_client_for):
    big, small, _, mid = counted
    ministry = api_client_for(Role.MINISTRY_ANALYST)
    [nation] = get(ministry, "level=national&stats=studies_received&stats=analysed").json()["rows"]
    assert nation == {"studies_received": 18, "analysed": 14}
    rows = get(ministry, "level=national&group_by=region").json()["rows"]
    # Moscow's 15 is hidden too: with the national 18 it would give Saint Petersburg's 3 away.
    assert [(r["region"], r["studies_received"]) for r in rows] == [("RU-MOW", "*"), ("RU-SPE", "<5")]
    rows = get(ministry, "level=region&region=RU-MOW&group_by=organization").json()["rows"]
    by_code = {r["organization"]: r for r in rows}
    assert by_code[big.oms_code]["billed_amount"] == "6000.00"
    assert by_code[big.oms_code]["processing_p50_s"] == 16.0
    assert by_code[big.oms_code]["processing_p95_s"] == 64.0
    assert by_code[small.oms_code]["studies_received"] == "<5"
    assert by_code[mid.oms_code]["studies_received"] == "*" and by_code[mid.oms_code]["billed_amount"] == "*"
    assert by_code[small.oms_code]["billed_amount"] == "<5"  # derived from fewer than 5 results
    assert by_code[small.oms_code]["processing_p50_s"] is None


def test_an_organization_sees_itself_unsuppressed(counted, api_client_for):
    _, small, _, _ = counted
    admin = api_client_for(Role.ORG_ADMIN, organization=small)
    body = get(admin, "group_by=day&group_by=month").json()
    assert body["level"] == "organization" and body["small_cell"] is None
    [row] = body["rows"]
    assert (row["day"], row["month"], row["studies_received"], row["billed_amount"]) == (
        "2026-03-10", "2026-03", 2, "2000.00")


def test_scopes(counted, api_client_for):
    big, small, other, _ = counted
    moscow = api_client_for(Role.REGIONAL_ADMIN, region=big.region)
    assert get(moscow, "level=region").json()["rows"][0]["studies_received"] == 15
    assert get(moscow, "level=region&region=RU-SPE").status_code == 404
    assert get(moscow, f"level=organization&organization={other.oms_code}").status_code == 404
    assert get(moscow, f"level=organization&organization={big.oms_code}").status_code == 200
    assert get(moscow, "level=national").status_code == 403
    clinic = api_client_for(Role.FINANCE, organization=small)
    assert get(clinic, f"level=organization&organization={big.oms_code}").status_code == 404
    assert get(clinic, "level=region").status_code == 403
    assert get(api_client_for(Role.RADIOLOGIST, organization=small), "").status_code == 403
    assert get(api_client_for(Role.MINISTRY_ANALYST), "level=organization").status_code == 404


def test_csv(counted, api_client_for):
    response = get(api_client_for(Role.PLATFORM_ADMIN), "format=csv&level=national&group_by=region&stats=analysed")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines() == ["region,analysed", "RU-MOW,14", "RU-SPE,0"]


def test_the_default_window_is_the_last_30_days_up_to_today_in_the_easternmost_region(counted, api_client_for):
    _, small, _, _ = counted
    region_ensure(code="RU-KAM", name="Камчатский край", time_zone="Asia/Kamchatka")  # UTC+12
    body = api_client_for(Role.ORG_ADMIN, organization=small).get("/api/v1/stats").json()
    kamchatka_today = dt.datetime.now(ZoneInfo("Asia/Kamchatka")).date()  # from noon UTC, UTC's tomorrow
    assert body["date_to"] == kamchatka_today.isoformat() and body["rows"] == []
    assert body["date_from"] == (kamchatka_today - dt.timedelta(days=30)).isoformat()


def test_the_counts_are_under_row_level_security(counted):
    """Raw SQL as the application's role sees only the scoped tenant's counts, and none without a scope."""
    big, _, _, _ = counted
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=False) as conn:
        assert conn.execute("SELECT count(*) FROM stats_dailycount").fetchone() == (0,)
        conn.execute("SELECT set_config('medai.scope', 'organization', true), "
                     "set_config('medai.organization_id', %s, true)", [str(big.id)])
        assert conn.execute("SELECT DISTINCT organization_id FROM stats_dailycount").fetchall() == [(big.id,)]
