"""A new version runs in shadow on live studies (kept, never delivered), is compared with the current one and
promoted; a bad model version is recalled from every tenant: results superseded, clinics told, billing
reversed, studies AI had closed back on the worklist."""

import json

import pytest

from billing.demo import demo_tariffs_load
from billing.models import BillableService
from inference.phantoms import chest_radiograph
from inference.records import AIService, Analysis, WorklistEntry
from inference.services import study_route
from inference.webhooks import webhook_endpoint_set
from medai.accounts.models import Role
from medai.archive.models import Instance
from tenants.scope import organization_scope
from tests.billing.conftest import analysis_end, radiograph
from tests.inference.conftest import wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def versions(reference_services, tenant_factory):
    """The reference chest radiograph service, and version 2 of it in shadow with a stricter threshold."""
    organization, _ = tenant_factory()
    current = reference_services()["ref-chest-xray"]
    shadow = AIService.objects.create(
        code="ref-chest-xray-v2", vendor=current.vendor, name=current.name, version="2", study_kind=current.study_kind,
        profile=current.profile, triton_model=current.triton_model, modalities=current.modalities,
        body_parts=current.body_parts, views=current.views, pathology_threshold=0.9, shadow_of=current,
    )
    demo_tariffs_load()
    return organization, current, shadow


def analyses_done(study) -> list[Analysis]:
    def done():
        analyses = list(Analysis.objects.filter(study=study).order_by("id"))
        return analyses if analyses and all(a.status in Analysis.FINAL for a in analyses) else None

    return wait_for(done, timeout=120)


def test_a_shadow_version_sees_live_studies_but_delivers_nothing(versions, archived_study, analysis_worker,
                                                                  api_client_for):
    organization, current, shadow = versions
    study = archived_study(organization, [chest_radiograph(lesions=1, size=256, seed=11)[0]])
    study_route(study_id=study.id)
    delivered, kept = analyses_done(study)
    assert (delivered.service, delivered.shadow, kept.service, kept.shadow) == (current, False, shadow, True)
    assert kept.status == Analysis.Status.SUCCEEDED and kept.probability == pytest.approx(delivered.probability)
    assert kept.pathology == (kept.probability >= 0.9)  # its own threshold
    stored = set(Instance.objects.filter(study=study).values_list("sop_instance_uid", flat=True))
    assert delivered.sr_sop_instance_uid in stored and kept.sr_sop_instance_uid not in stored
    assert BillableService.objects.filter(study=study).get().analysis_id == delivered.id
    radiologist = api_client_for(Role.RADIOLOGIST, organization=organization)
    results = radiologist.get(f"/api/v1/studies/{study.study_instance_uid}/results").json()
    assert [a["service"]["code"] for a in results["analyses"]] == [current.code]

    admin = api_client_for(Role.PLATFORM_ADMIN)
    comparison = admin.get(f"/api/v1/ai-services/{shadow.code}/shadow-comparison").json()
    assert comparison["studies"] == 1
    assert comparison["mean_probability_difference"] == pytest.approx(0.0, abs=1e-6)
    assert radiologist.get(f"/api/v1/ai-services/{shadow.code}/shadow-comparison").status_code in (403, 404)

    promoted = admin.post(f"/api/v1/ai-services/{shadow.code}/promote", {"reason": "сравнение пройдено"},
                          format="json")
    assert promoted.status_code == 200, promoted.json()
    assert promoted.json()["shadow_of"] is None
    current.refresh_from_db()
    assert current.status == AIService.Status.SUSPENDED and shadow.code in current.status_reason
    next_study = archived_study(organization, [chest_radiograph(size=256, seed=12)[0]])
    [analysis] = study_route(study_id=next_study.id)
    assert (analysis.service.code, analysis.shadow) == (shadow.code, False)
    analyses_done(next_study)  # the worker's run must not outlive the test: its teardown empties the tables


def test_a_recall_withdraws_results_everywhere_reverses_billing_and_tells_the_clinic(
    versions, tenant_factory, reference_services, archived_study, worker, receiver, api_client_for
):
    first, current, _ = versions
    second, _ = tenant_factory(region_code="RU-SPE")
    reference_services()
    demo_tariffs_load()
    with organization_scope(organization_id=first.id):
        webhook_endpoint_set(organization=first, url=receiver.url, secret="s" * 32)
    ended = []
    for organization in (first, second):
        study = archived_study(organization, [radiograph()])
        analysis = next(a for a in study_route(study_id=study.id) if not a.shadow)
        ended.append(analysis_end(analysis, model_version="1", autonomous=True))
    closed = WorklistEntry.objects.get(study_id=ended[0].study_id)
    assert closed.status == WorklistEntry.Status.CLOSED_BY_AI

    admin = api_client_for(Role.PLATFORM_ADMIN)
    assert api_client_for(Role.ORG_ADMIN, organization=first).post(
        f"/api/v1/ai-services/{current.code}/recall", {"reason": "x"}).status_code == 403
    response = admin.post(f"/api/v1/ai-services/{current.code}/recall",
                          {"model_version": "1", "reason": "Ошибка калибровки версии 1"}, format="json")
    assert response.status_code == 202
    assert response.json() == {"analyses": 2, "organizations": 2}

    wait_for(lambda: not Analysis.objects.filter(id__in=[a.id for a in ended], superseded_at__isnull=True).exists())
    for analysis in ended:
        charge = BillableService.objects.get(analysis=analysis, kind="charge")
        assert charge.reversed_by.amount == -charge.amount
    closed.refresh_from_db()
    assert closed.status == WorklistEntry.Status.READY  # back to a radiologist
    bodies = lambda: [json.loads(r["body"]) for r in receiver.requests]  # noqa: E731
    [told] = wait_for(lambda: [b for b in bodies() if b["status"] == "superseded"])
    assert (told["analysis_id"], told["reason"]) == (ended[0].id, "Ошибка калибровки версии 1")

    again = admin.post(f"/api/v1/ai-services/{current.code}/recall", {"model_version": "1", "reason": "again"},
                       format="json")
    assert again.json() == {"analyses": 0, "organizations": 0}
    assert BillableService.objects.filter(kind="reversal").count() == 2
