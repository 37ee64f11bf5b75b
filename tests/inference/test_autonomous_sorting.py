"""Autonomous sorting closes a study without a radiologist only when every service that read it may do so:
at the autonomous stage, enabled by the organization, and scoring below the threshold fixed for
sensitivity 1.0. Every other finished study stays on the worklist."""

import pytest

from inference.calibration import threshold_for_full_sensitivity
from inference.phantoms import chest_radiograph
from inference.records import AIService, Analysis, WorklistEntry
from inference.services import analysis_finish, autonomous_normal, study_route
from tenants.models import Region
from tenants.scope import organization_scope


def finish_as_the_pipeline_does(analysis: Analysis, probability: float) -> None:
    service = analysis.service
    with organization_scope(organization_id=analysis.organization_id):
        analysis_finish(
            analysis=Analysis.objects.select_for_update().get(id=analysis.id), status=Analysis.Status.SUCCEEDED,
            probability=probability, pathology=probability >= service.pathology_threshold,
            autonomous=autonomous_normal(service=service, organization_id=analysis.organization_id,
                                         probability=probability),
        )


def worklist_status_after(analyses: list[Analysis], probability: float) -> str:
    for analysis in analyses:
        finish_as_the_pipeline_does(analysis, probability)
    return WorklistEntry.objects.get(study_id=analyses[0].study_id).status


@pytest.fixture
def normal_radiograph(tenant_factory, reference_services, archived_study):
    """A routed normal chest radiograph and its service, with autonomy enabled (or not) for its clinic."""

    def route(*, autonomy_enabled: bool = True, stage: str = AIService.Stage.AUTONOMOUS) -> list[Analysis]:
        organization, _ = tenant_factory()
        services = reference_services(autonomous_organizations=[organization] if autonomy_enabled else [])
        AIService.objects.filter(code="ref-chest-xray").update(stage=stage)
        services["ref-chest-xray"].refresh_from_db()
        study = archived_study(organization, [chest_radiograph(size=64, seed=7)[0]])
        return study_route(study_id=study.id)

    return route


def test_a_confident_normal_of_an_autonomous_service_is_closed_by_ai(normal_radiograph):
    analyses = normal_radiograph()
    below = analyses[0].service.autonomous_threshold / 2
    assert worklist_status_after(analyses, below) == WorklistEntry.Status.CLOSED_BY_AI


@pytest.mark.parametrize("case", ["autonomy not enabled here", "clinical stage", "between the thresholds"])
def test_every_other_normal_stays_for_a_radiologist(normal_radiograph, case):
    stage = AIService.Stage.CLINICAL if case == "clinical stage" else AIService.Stage.AUTONOMOUS
    analyses = normal_radiograph(autonomy_enabled=case != "autonomy not enabled here", stage=stage)
    service = analyses[0].service
    if case == "between the thresholds":
        probability = (service.autonomous_threshold + service.pathology_threshold) / 2
    else:
        probability = service.autonomous_threshold / 2
    assert worklist_status_after(analyses, probability) == WorklistEntry.Status.READY
    assert not Analysis.objects.get(id=analyses[0].id).pathology


def test_a_second_service_that_may_not_close_it_keeps_the_study_for_a_radiologist(
    tenant_factory, reference_services, archived_study
):
    organization, _ = tenant_factory()
    services = reference_services(autonomous_organizations=[organization])
    reference = services["ref-chest-xray"]
    second = AIService.objects.create(
        code="vendor-cxr", vendor="Another vendor", name="Chest radiograph", version="2.0",
        study_kind=reference.study_kind, profile=reference.profile, triton_model=reference.triton_model,
        modalities=reference.modalities, body_parts=reference.body_parts, views=reference.views,
        pathology_threshold=0.5, autonomous_threshold=None, stage=AIService.Stage.CLINICAL,
    )
    second.enabled_regions.add(*Region.objects.all())
    study = archived_study(organization, [chest_radiograph(size=64, seed=8)[0]])
    analyses = study_route(study_id=study.id)
    assert sorted(a.service.code for a in analyses) == ["ref-chest-xray", "vendor-cxr"]
    assert worklist_status_after(analyses, reference.autonomous_threshold / 2) == WorklistEntry.Status.READY
    assert [a.autonomous for a in Analysis.objects.filter(study=study).order_by("service__code")] == [True, False]


def test_the_autonomous_threshold_keeps_every_validation_positive_above_it():
    scores = [0.05, 0.2, 0.31, 0.4, 0.9, 0.62]
    labels = [False, False, True, False, True, True]
    threshold = threshold_for_full_sensitivity(scores, labels)
    assert threshold == pytest.approx(0.31 * 0.5)
    assert all(score >= threshold for score, positive in zip(scores, labels, strict=True) if positive)
    with pytest.raises(ValueError):
        threshold_for_full_sensitivity([0.1, 0.2], [False, False])
