"""Dispatch is urgent first and fair between organizations: one clinic's backlog does not hold back
another's study, and a run whose worker died goes back to the queue, or fails with an answer after its
last attempt."""

import datetime as dt

from django.utils import timezone

from inference.phantoms import chest_radiograph
from inference.records import Analysis, WorklistEntry
from inference.scheduling import analyses_dispatch
from inference.services import study_route
from medai.archive.models import Instance
from tests.inference.conftest import finished, wait_for


def queue_studies(organization, count, archived_study, *, priority=""):
    analyses = []
    for seed in range(count):
        dataset = chest_radiograph(size=64, seed=seed)[0]
        if priority:
            dataset.RequestedProcedurePriority = priority
        analyses += study_route(study_id=archived_study(organization, [dataset]).id)
    return analyses


def dispatched_organizations() -> list[int]:
    return list(Analysis.objects.filter(status=Analysis.Status.DISPATCHED).values_list("organization_id", flat=True))


def test_a_clinic_with_one_study_is_served_before_anothers_backlog(
    tenant_factory, reference_services, archived_study, settings
):
    settings.INFERENCE_CAPACITY = 0  # hold everything in the queue while it fills
    busy, _ = tenant_factory()
    quiet, _ = tenant_factory(region_code="RU-SPE")
    reference_services()
    queue_studies(busy, 6, archived_study)
    queue_studies(quiet, 1, archived_study)
    settings.INFERENCE_CAPACITY = 2
    assert analyses_dispatch() == 2
    assert sorted(dispatched_organizations()) == sorted([busy.id, quiet.id])
    assert analyses_dispatch() == 0  # capacity is full until a run finishes


def test_urgent_studies_go_first(tenant_factory, reference_services, archived_study, settings):
    settings.INFERENCE_CAPACITY = 0
    busy, _ = tenant_factory()
    emergency, _ = tenant_factory()
    reference_services()
    queue_studies(busy, 4, archived_study)
    [urgent] = queue_studies(emergency, 1, archived_study, priority="STAT")
    settings.INFERENCE_CAPACITY = 1
    assert analyses_dispatch() == 1
    urgent.refresh_from_db()
    assert urgent.status == Analysis.Status.DISPATCHED


def test_an_analysis_whose_worker_died_is_queued_again(tenant_factory, reference_services, archived_study, settings):
    settings.INFERENCE_CAPACITY = 0
    organization, _ = tenant_factory()
    reference_services()
    [analysis] = queue_studies(organization, 1, archived_study)
    Analysis.objects.filter(id=analysis.id).update(
        status=Analysis.Status.RUNNING, attempt=1, lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    analyses_dispatch()
    analysis.refresh_from_db()
    assert analysis.status == Analysis.Status.QUEUED
    assert analysis.attempt == 1


def test_an_analysis_whose_worker_died_on_its_last_attempt_fails_and_the_clinic_gets_an_answer(
    tenant_factory, reference_services, archived_study, settings, worker
):
    settings.INFERENCE_CAPACITY = 0
    organization, _ = tenant_factory()
    reference_services()
    [lost, waiting] = queue_studies(organization, 2, archived_study)
    Analysis.objects.filter(id=lost.id).update(
        status=Analysis.Status.RUNNING, attempt=settings.INFERENCE_MAX_ATTEMPTS,
        lease_until=timezone.now() - dt.timedelta(seconds=1),
    )
    analyses_dispatch()  # and dispatch goes on for everyone else
    lost.refresh_from_db()
    assert (lost.status, lost.reason_code) == (Analysis.Status.FAILED, "worker_lost")
    assert WorklistEntry.objects.get(study_id=lost.study_id).status == WorklistEntry.Status.READY
    waiting.refresh_from_db()
    assert waiting.status == Analysis.Status.QUEUED
    lost = wait_for(lambda: finished(lost), timeout=30)  # the not-analysable SR, by the worker
    assert Instance.objects.filter(study_id=lost.study_id, sop_instance_uid=lost.sr_sop_instance_uid).exists()


def test_an_analysis_past_its_deadline_is_flagged_late(tenant_factory, reference_services, archived_study, settings):
    from inference.tasks import dispatch

    settings.INFERENCE_CAPACITY = 0
    organization, _ = tenant_factory()
    reference_services()
    [analysis] = queue_studies(organization, 1, archived_study)
    dispatch()
    analysis.refresh_from_db()
    assert analysis.late is False
    Analysis.objects.filter(id=analysis.id).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    dispatch()
    analysis.refresh_from_db()
    assert analysis.late is True
