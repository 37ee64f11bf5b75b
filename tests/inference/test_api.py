"""The registry, the results and the worklist through the API, by role and by scope."""

from inference.phantoms import chest_radiograph
from inference.records import Analysis, WorklistEntry
from inference.services import study_route, worklist_refresh
from medai.accounts.models import Role
from medai.archive.models import StudyAccess

NEW_SERVICE = {
    "code": "vendor-cxr", "vendor": "Vendor", "name": "CXR triage", "version": "2.1", "study_kind": "chest_xray",
    "profile": "chest_xray", "triton_model": "cxr_opacity", "modalities": ["DX"], "pathology_threshold": 0.4,
    "enabled_regions": ["RU-MOW"],
}


def test_only_the_operator_registers_services(api_client_for, tenant_factory):
    organization, _ = tenant_factory()
    admin = api_client_for(Role.PLATFORM_ADMIN)
    clinic = api_client_for(Role.ORG_ADMIN, organization=organization)
    assert clinic.post("/api/v1/ai-services", NEW_SERVICE, format="json").status_code == 403
    created = admin.post("/api/v1/ai-services", NEW_SERVICE, format="json")
    assert created.status_code == 201, created.json()
    assert [s["code"] for s in clinic.get("/api/v1/ai-services").json()["results"]] == ["vendor-cxr"]
    assert admin.patch("/api/v1/ai-services/vendor-cxr", {"stage": "clinical"}, format="json").json()["stage"] == \
        "clinical"
    assert clinic.patch("/api/v1/ai-services/vendor-cxr", {"stage": "autonomous"}, format="json").status_code == 403


def test_a_service_is_refused_with_an_unknown_profile_or_thresholds_upside_down(api_client_for, tenant_factory):
    tenant_factory()  # region RU-MOW
    admin = api_client_for(Role.PLATFORM_ADMIN)
    unknown = admin.post("/api/v1/ai-services", {**NEW_SERVICE, "profile": "knee_mri"}, format="json")
    assert unknown.status_code == 400 and "profile" in unknown.json()
    upside_down = admin.post("/api/v1/ai-services", {**NEW_SERVICE, "autonomous_threshold": 0.9}, format="json")
    assert upside_down.status_code == 400 and "autonomous_threshold" in upside_down.json()


def test_a_clinic_sees_neither_services_enabled_elsewhere_nor_who_else_uses_them(api_client_for, tenant_factory):
    moscow, _ = tenant_factory()
    neighbour, _ = tenant_factory()
    petersburg, _ = tenant_factory(region_code="RU-SPE")
    admin = api_client_for(Role.PLATFORM_ADMIN)
    admin.post("/api/v1/ai-services", {**NEW_SERVICE, "enabled_regions": [],
                                       "enabled_organizations": [moscow.oms_code, neighbour.oms_code]}, format="json")
    [seen] = api_client_for(Role.ORG_ADMIN, organization=moscow).get("/api/v1/ai-services").json()["results"]
    assert seen["enabled_organizations"] == [moscow.oms_code]
    assert api_client_for(Role.ORG_ADMIN, organization=petersburg).get("/api/v1/ai-services").json()["results"] == []


def test_claim_and_complete_a_study(tenant_factory, api_client_for, reference_services, archived_study):
    organization, _ = tenant_factory()
    reference_services()
    study = archived_study(organization, [chest_radiograph(size=64)[0]])
    study_route(study_id=study.id)
    uid = study.study_instance_uid
    first = api_client_for(Role.RADIOLOGIST, organization=organization)
    second = api_client_for(Role.RADIOLOGIST, organization=organization)
    claimed = first.post(f"/api/v1/worklist/{uid}/claim")
    assert claimed.status_code == 200 and claimed.json()["status"] == "claimed"
    assert second.post(f"/api/v1/worklist/{uid}/claim").status_code == 409
    assert second.post(f"/api/v1/worklist/{uid}/complete").status_code == 409
    assert first.post(f"/api/v1/worklist/{uid}/complete").json()["status"] == "reported"
    assert first.get("/api/v1/worklist").json()["results"] == []
    reported = first.get("/api/v1/worklist", {"status": "reported"}).json()["results"]
    assert [e["study_instance_uid"] for e in reported] == [uid]
    assert WorklistEntry.objects.get(study=study).status == WorklistEntry.Status.REPORTED


def test_the_worklist_puts_urgent_then_flagged_studies_first(
    tenant_factory, api_client_for, reference_services, archived_study
):
    organization, _ = tenant_factory()
    reference_services()
    probabilities = {"low": 0.1, "high": 0.9, "middle": 0.6, "urgent-low": 0.2}
    uids = {}
    for seed, (name, probability) in enumerate(probabilities.items()):
        dataset = chest_radiograph(size=64, seed=seed)[0]
        if name.startswith("urgent"):
            dataset.RequestedProcedurePriority = "STAT"
        study = archived_study(organization, [dataset])
        [analysis] = study_route(study_id=study.id)
        Analysis.objects.filter(id=analysis.id).update(status=Analysis.Status.SUCCEEDED, probability=probability,
                                                       pathology=probability >= 0.5)
        worklist_refresh(study_id=study.id)
        uids[study.study_instance_uid] = name
    radiologist = api_client_for(Role.RADIOLOGIST, organization=organization)
    listed = [uids[e["study_instance_uid"]] for e in radiologist.get("/api/v1/worklist").json()["results"]]
    assert listed == ["urgent-low", "high", "middle", "low"]
    assert StudyAccess.objects.filter(organization=organization, endpoint="worklist").count() == 4
    flagged = radiologist.get("/api/v1/worklist", {"ai_flagged": "true"}).json()["results"]
    assert [uids[e["study_instance_uid"]] for e in flagged] == ["high", "middle"]
