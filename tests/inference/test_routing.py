"""A completed study goes to every enabled service whose rules match it, once; otherwise it is *not routed*,
with a reason the clinic can read."""

from inference.phantoms import chest_radiograph, mammography_study
from inference.records import AIService, Analysis, WorklistEntry
from inference.services import study_route
from medai.archive.models import Instance
from medai.archive.synthetic import make_series
from tests.inference.conftest import finished, wait_for


def test_a_chest_radiograph_goes_to_the_chest_radiograph_service_only(
    tenant_factory, reference_services, archived_study
):
    organization, _ = tenant_factory()
    reference_services()
    study = archived_study(organization, [chest_radiograph(size=128)[0]])
    analyses = study_route(study_id=study.id)
    assert [a.service.code for a in analyses] == ["ref-chest-xray"]
    assert analyses[0].status == Analysis.Status.QUEUED
    assert analyses[0].deadline_at is not None
    assert WorklistEntry.objects.get(study=study).status == WorklistEntry.Status.AWAITING_AI


def test_routing_twice_creates_nothing_new(tenant_factory, reference_services, archived_study):
    organization, _ = tenant_factory()
    reference_services()
    study = archived_study(organization, mammography_study(size=96)[0])
    assert len(study_route(study_id=study.id)) == 1
    assert study_route(study_id=study.id) == []
    assert Analysis.objects.filter(study=study).count() == 1


def test_a_study_no_service_accepts_is_not_routed_with_its_reason_and_gets_its_answer(
    tenant_factory, reference_services, archived_study, worker
):
    organization, _ = tenant_factory()
    reference_services()
    head = make_series(modality="CT", count=2)
    for dataset in head:
        dataset.BodyPartExamined = "HEAD"
    study = archived_study(organization, head)
    [analysis] = study_route(study_id=study.id)
    assert analysis.service is None
    assert analysis.status == Analysis.Status.NOT_ROUTED
    assert "CT HEAD" in analysis.reason
    assert WorklistEntry.objects.get(study=study).status == WorklistEntry.Status.READY
    analysis = wait_for(lambda: finished(analysis), timeout=30)  # the *not analysable* SR
    report = Instance.objects.get(study=study, sop_instance_uid=analysis.sr_sop_instance_uid)
    assert report.series.modality == "SR"


def test_a_service_not_enabled_for_the_region_is_not_used(tenant_factory, reference_services, archived_study):
    reference_services()  # enabled in the regions that exist now, not in one onboarded later
    organization, _ = tenant_factory(region_code="RU-KDA")
    study = archived_study(organization, [chest_radiograph(size=128)[0]])
    [analysis] = study_route(study_id=study.id)
    assert analysis.status == Analysis.Status.NOT_ROUTED


def test_a_stat_study_is_urgent(tenant_factory, reference_services, archived_study):
    organization, _ = tenant_factory()
    reference_services()
    dataset = chest_radiograph(size=128)[0]
    dataset.RequestedProcedurePriority = "STAT"
    study = archived_study(organization, [dataset])
    [analysis] = study_route(study_id=study.id)
    assert analysis.urgent
    assert WorklistEntry.objects.get(study=study).urgent


def test_the_views_a_service_accepts_narrow_its_audit(tenant_factory, reference_services, archived_study, worker):
    organization, _ = tenant_factory()
    reference_services()
    AIService.objects.filter(code="ref-chest-xray").update(views=["PA"])  # the operator accepts PA only
    study = archived_study(organization, [chest_radiograph(size=64, view="AP")[0]])
    [analysis] = study_route(study_id=study.id)
    analysis = wait_for(lambda: finished(analysis), timeout=30)
    assert (analysis.status, analysis.reason_code) == (Analysis.Status.NOT_ANALYSABLE, "not_frontal")
    assert "только для PA." in analysis.reason
