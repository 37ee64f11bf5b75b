"""The study access log: scoped for reading, append-only in the database."""

import pytest
from django.db import DatabaseError, transaction
from django.test import RequestFactory
from rest_framework.test import APIClient

from medai.accounts.models import Role
from medai.accounts.principal import Principal
from medai.archive.models import Study, StudyAccess
from medai.archive.services import ReceiveBatch
from medai.archive.synthetic import make_series
from medai.dicomweb.base import record_study_access
from tests.archive.test_receive_batch import store_all


@pytest.fixture
def reads(tenant_factory, use_storage):
    """One read of one study in each of two organizations of two regions."""
    organizations = []
    for region_code in ("RU-MOW", "RU-SPE"):
        organization, _ = tenant_factory(region_code=region_code)
        with ReceiveBatch(organization=organization, storage=use_storage) as batch:
            store_all(batch, make_series(count=1))
        principal = Principal(subject=f"reader-{region_code}", roles=frozenset({Role.RADIOLOGIST}),
                              region_id=organization.region_id, organization_id=organization.id)
        request = RequestFactory().get("/dicomweb/studies", REMOTE_ADDR="10.1.2.3")
        record_study_access(request=request, principal=principal,
                            studies=list(Study.objects.filter(organization=organization)), endpoint="qido-studies")
        organizations.append(organization)
    return organizations


def test_each_admin_sees_its_own_scope(reads, api_client_for):
    moscow, petersburg = reads
    org_admin = api_client_for(Role.ORG_ADMIN, organization=moscow).get("/api/v1/audit/study-access").json()
    assert [(r["organization"], r["subject"], r["client_address"]) for r in org_admin["results"]] == [
        (moscow.oms_code, "reader-RU-MOW", "10.1.2.3")]
    regional = api_client_for(Role.REGIONAL_ADMIN, region=petersburg.region).get("/api/v1/audit/study-access").json()
    assert [r["organization"] for r in regional["results"]] == [petersburg.oms_code]
    ministry = api_client_for(Role.MINISTRY_ANALYST).get("/api/v1/audit/study-access").json()
    assert ministry["count"] == 2


def test_readers_without_an_admin_role_are_refused(reads, api_client_for):
    moscow, _ = reads
    assert api_client_for(Role.RADIOLOGIST, organization=moscow).get("/api/v1/audit/study-access").status_code == 403
    assert APIClient().get("/api/v1/audit/study-access").status_code == 401


def test_the_log_cannot_be_changed_or_deleted(reads):
    entry = StudyAccess.objects.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        StudyAccess.objects.filter(id=entry.id).update(subject="someone-else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        StudyAccess.objects.filter(id=entry.id).delete()
    assert StudyAccess.objects.get(id=entry.id).subject == entry.subject


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "logged"),
    [
        ([], "10.1.2.3", "203.0.113.9", "10.1.2.3"),  # a client's own header is not believed
        (["10.0.0.0/8"], "10.1.2.3", "198.51.100.7, 203.0.113.9", "203.0.113.9"),  # nearest hop past the proxy
        (["10.0.0.0/8"], "10.1.2.3", "198.51.100.7, 10.9.9.9", "198.51.100.7"),  # through two proxies
        (["10.0.0.0/8"], "10.1.2.3", "not-an-address", "10.1.2.3"),
        ([], "10.1.2.3", "", "10.1.2.3"),
    ],
)
def test_client_address_believes_forwarded_for_only_from_trusted_proxies(settings, trusted, remote, forwarded,
                                                                         logged):
    from medai.dicomweb.base import client_address

    settings.TRUSTED_PROXY_NETWORKS = trusted
    request = RequestFactory().get("/dicomweb/studies", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == logged


def test_a_malformed_forwarded_for_header_does_not_break_a_read(tenant_factory, use_storage, client):
    organization, token = tenant_factory()
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, make_series(count=1))
    response = client.get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {token}",
                          HTTP_X_FORWARDED_FOR="garbage, 999.1.1.1")
    assert response.status_code == 200 and len(response.json()) == 1
    assert StudyAccess.objects.get(organization=organization).client_address == "127.0.0.1"
