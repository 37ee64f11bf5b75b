"""Row-level security holds even when the code forgets to scope a query (raw SQL as the app's role)."""

import psycopg
import pytest
from django.db import connection

from medai.archive.models import Instance, Series, Study, StudyAccess
from medai.archive.services import ReceiveBatch
from medai.archive.synthetic import make_series
from tests.archive.test_receive_batch import store_all

TENANT_TABLES = [m._meta.db_table for m in (Study, Series, Instance, StudyAccess)]


@pytest.fixture
def two_clinics(tenant_factory, use_storage):
    clinics = []
    for region_code in ("RU-MOW", "RU-SPE"):
        organization, _ = tenant_factory(region_code=region_code)
        with ReceiveBatch(organization=organization, storage=use_storage) as batch:
            store_all(batch, make_series(count=2))
        clinics.append(organization)
    return clinics


@pytest.fixture
def app_connection(transactional_db):
    """A fresh connection as the application's role, with no session defaults: what a forgetful view gets."""
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=False) as conn:
        yield conn


def scope(conn, scope_name: str, region_id="", organization_id="") -> None:
    conn.execute(
        "SELECT set_config('medai.scope', %s, true), set_config('medai.region_id', %s, true),"
        " set_config('medai.organization_id', %s, true)",
        [scope_name, str(region_id), str(organization_id)],
    )


def counts(conn) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TENANT_TABLES}


def test_the_role_is_bound_by_rls(app_connection):
    row = app_connection.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
    assert row == (False, False)
    forced = app_connection.execute(
        "SELECT relname FROM pg_class WHERE relforcerowsecurity AND relrowsecurity AND relname = ANY(%s)",
        [TENANT_TABLES]).fetchall()
    assert sorted(r[0] for r in forced) == sorted(TENANT_TABLES)


def test_a_query_without_scope_sees_no_rows(two_clinics, app_connection):
    assert Instance.objects.count() == 4  # they exist (the test process sees every tenant)
    assert counts(app_connection) == dict.fromkeys(TENANT_TABLES, 0)


def test_scope_limits_rows_to_the_tenant(two_clinics, app_connection):
    moscow, petersburg = two_clinics
    scope(app_connection, "organization", organization_id=moscow.id)
    assert app_connection.execute("SELECT DISTINCT organization_id FROM archive_instance").fetchall() == [
        (moscow.id,)]
    app_connection.rollback()
    scope(app_connection, "region", region_id=petersburg.region_id)
    assert app_connection.execute("SELECT DISTINCT organization_id FROM archive_study").fetchall() == [
        (petersburg.id,)]
    app_connection.rollback()
    scope(app_connection, "national")
    assert counts(app_connection)["archive_instance"] == 4


def test_writing_into_another_tenant_is_refused(two_clinics, app_connection):
    moscow, petersburg = two_clinics
    scope(app_connection, "organization", organization_id=moscow.id)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_connection.execute(
            "UPDATE archive_study SET organization_id = %s, region_id = %s WHERE organization_id = %s",
            [petersburg.id, petersburg.region_id, moscow.id])
    app_connection.rollback()
    scope(app_connection, "organization", organization_id=moscow.id)
    deleted = app_connection.execute("DELETE FROM archive_studyaccess WHERE organization_id = %s", [petersburg.id])
    assert deleted.rowcount == 0
