"""Onboarding through the API: who may onboard what, the sender check, suspension, invitations."""

import pytest
from rest_framework.test import APIClient

from medai.accounts.models import Role
from medai.archive.models import Instance
from medai.archive.synthetic import Patient, make_series, to_bytes
from tenants.models import MedicalOrganization, StatusChange
from tenants.services import region_ensure
from tests.dicomweb.stow_client import multipart

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=medai-test-boundary'


@pytest.fixture
def regions(transactional_db):
    return region_ensure(code="RU-MOW", name="Москва"), region_ensure(code="RU-SPE", name="Санкт-Петербург")


def onboard(client: APIClient, region_code: str, oms_code: str):
    return client.post("/api/v1/organizations", {"region": region_code, "oms_code": oms_code,
                                                 "name": f"ГБУЗ Поликлиника {oms_code}", "ogrn": "1027700000000"},
                       format="json")


def test_platform_admin_onboards_anywhere_and_gets_pacs_credentials_once(regions, use_storage, api_client_for):
    admin = api_client_for(Role.PLATFORM_ADMIN)
    created = onboard(admin, "RU-SPE", "780001")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "onboarding"
    token = body["pacs_credentials"]["api_token"]
    again = admin.get(f"/api/v1/organizations/{body['id']}").json()
    assert "pacs_credentials" not in again and token not in str(again)
    pacs = APIClient()
    pacs.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    upload = pacs.generic("POST", "/dicomweb/studies", multipart([to_bytes(ds) for ds in make_series(count=1)]),
                          content_type=STOW_TYPE)
    assert upload.status_code == 200


def test_regional_admin_onboards_only_in_its_region(regions, api_client_for):
    moscow, _ = regions
    regional = api_client_for(Role.REGIONAL_ADMIN, region=moscow)
    assert onboard(regional, "RU-MOW", "770001").status_code == 201
    refused = onboard(regional, "RU-SPE", "780002")
    assert refused.status_code == 400 and "region" in refused.json()
    assert not MedicalOrganization.objects.filter(oms_code="780002").exists()
    assert [r["code"] for r in regional.get("/api/v1/regions").json()["results"]] == ["RU-MOW"]


@pytest.mark.parametrize("role", [Role.ORG_ADMIN, Role.RADIOLOGIST, Role.UPLOADER, Role.MINISTRY_ANALYST,
                                  Role.FINANCE])
def test_other_roles_cannot_onboard(regions, role, api_client_for):
    moscow, _ = regions
    clinic = MedicalOrganization.objects.create(region=moscow, oms_code="770099", name="Clinic")
    client = api_client_for(role, organization=None if role == Role.MINISTRY_ANALYST else clinic)
    assert onboard(client, "RU-MOW", f"77{role[:4]}").status_code == 403


def test_other_tenants_see_nothing_and_get_404(regions, api_client_for):
    moscow, petersburg = regions
    admin = api_client_for(Role.PLATFORM_ADMIN)
    mine = onboard(admin, "RU-MOW", "770010").json()
    theirs = onboard(admin, "RU-SPE", "780010").json()
    org_admin = api_client_for(Role.ORG_ADMIN, organization=MedicalOrganization.objects.get(id=mine["id"]))
    assert [o["oms_code"] for o in org_admin.get("/api/v1/organizations").json()["results"]] == ["770010"]
    for path in (f"/api/v1/organizations/{theirs['id']}", f"/api/v1/organizations/{theirs['id']}/users"):
        assert org_admin.get(path).status_code == 404
    assert org_admin.post(f"/api/v1/organizations/{theirs['id']}/sender-check",
                          {"study_instance_uid": "1.2.3"}, format="json").status_code == 404
    regional = api_client_for(Role.REGIONAL_ADMIN, region=moscow)
    assert regional.post(f"/api/v1/organizations/{theirs['id']}/suspend", {"reason": "x"},
                         format="json").status_code == 404
    assert regional.get(f"/api/v1/regions/{petersburg.id}").status_code == 404
    assert APIClient().get("/api/v1/organizations").status_code == 401


def test_sender_check_reports_each_requirement_and_activates(regions, use_storage, api_client_for):
    admin = api_client_for(Role.PLATFORM_ADMIN)
    body = onboard(admin, "RU-MOW", "770020").json()
    pacs = APIClient()
    pacs.credentials(HTTP_AUTHORIZATION=f"Bearer {body['pacs_credentials']['api_token']}")
    without_policy = make_series(modality="DX", count=1, view_position="LAT",
                                 patient=Patient(oms_policy=""))
    with_everything = make_series(modality="DX", count=1, view_position="PA")
    for series in (without_policy, with_everything):
        pacs.generic("POST", "/dicomweb/studies", multipart([to_bytes(ds) for ds in series]), content_type=STOW_TYPE)
    url = f"/api/v1/organizations/{body['id']}/sender-check"

    failed = admin.post(url, {"study_instance_uid": str(without_policy[0].StudyInstanceUID)}, format="json").json()
    assert failed["passed"] is False
    verdicts = {r["requirement"]: r["passed"] for r in failed["report"]}
    assert verdicts["OMS policy number (ENP)"] is False
    assert verdicts["DX view position"] is False
    assert verdicts["Patient ID"] and verdicts["Character set for Cyrillic names"]
    assert MedicalOrganization.objects.get(id=body["id"]).status == "onboarding"

    passed = admin.post(url, {"study_instance_uid": str(with_everything[0].StudyInstanceUID)}, format="json").json()
    assert passed["passed"] is True, passed["report"]
    organization = MedicalOrganization.objects.get(id=body["id"])
    assert organization.status == "active" and organization.activated_at is not None


def test_activation_override_needs_a_reason_which_is_recorded(regions, api_client_for):
    admin = api_client_for(Role.PLATFORM_ADMIN)
    body = onboard(admin, "RU-MOW", "770030").json()
    assert admin.post(f"/api/v1/organizations/{body['id']}/activate", {}, format="json").status_code == 400
    done = admin.post(f"/api/v1/organizations/{body['id']}/activate",
                      {"reason": "PACS vendor certified the configuration"}, format="json")
    assert done.json()["status"] == "active"
    change = StatusChange.objects.filter(organization_id=body["id"]).first()
    assert (change.status, change.reason) == ("active", "PACS vendor certified the configuration")


def test_suspended_organization_is_refused_with_reason_and_keeps_its_data(regions, use_storage, api_client_for):
    moscow, _ = regions
    admin = api_client_for(Role.PLATFORM_ADMIN)
    body = onboard(admin, "RU-MOW", "770040").json()
    pacs = APIClient()
    pacs.credentials(HTTP_AUTHORIZATION=f"Bearer {body['pacs_credentials']['api_token']}")
    pacs.generic("POST", "/dicomweb/studies", multipart([to_bytes(ds) for ds in make_series(count=2)]),
                 content_type=STOW_TYPE)
    regional = api_client_for(Role.REGIONAL_ADMIN, region=moscow)
    suspended = regional.post(f"/api/v1/organizations/{body['id']}/suspend", {"reason": "unpaid since March"},
                              format="json")
    assert suspended.json()["status"] == "suspended"
    refused = pacs.generic("POST", "/dicomweb/studies", multipart([to_bytes(ds) for ds in make_series(count=1)]),
                           content_type=STOW_TYPE)
    assert refused.status_code == 403 and "suspended" in refused.json()["detail"]
    assert Instance.objects.filter(organization_id=body["id"]).count() == 2
    assert regional.post(f"/api/v1/organizations/{body['id']}/reactivate", {"reason": "paid"},
                         format="json").json()["status"] == "active"


def test_org_admin_invites_users_of_its_organization(regions, api_client_for):
    admin = api_client_for(Role.PLATFORM_ADMIN)
    body = onboard(admin, "RU-MOW", "770050").json()
    org_admin = api_client_for(Role.ORG_ADMIN, organization=MedicalOrganization.objects.get(id=body["id"]))
    invited = org_admin.post(f"/api/v1/organizations/{body['id']}/users",
                             {"username": "dr.petrova", "email": "petrova@clinic.example", "first_name": "Анна",
                              "last_name": "Петрова", "role": "radiologist"}, format="json")
    assert invited.status_code == 201, invited.content
    members = org_admin.get(f"/api/v1/organizations/{body['id']}/users").json()
    assert {"username": "dr.petrova", "role": "radiologist"} in members
    assert org_admin.post(f"/api/v1/organizations/{body['id']}/users",
                          {"username": "boss", "email": "b@x.example", "first_name": "A", "last_name": "B",
                           "role": "platform_admin"}, format="json").status_code == 400
