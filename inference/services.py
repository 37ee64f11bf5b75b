"""Writes of AI analysis: routing a completed study, the life of an analysis row, the worklist.

The heavy part of a run (storage, Triton, building SR and SC) is in `inference.pipeline`; the writes
here are short and transactional, and every one of them runs inside the organization's scope.
"""

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from inference.records import AIService, Analysis, WorklistEntry
from inference.routing import not_routed_reason, routes_for, shadows_of, study_is_urgent
from inference.signals import analysis_finished, study_routed
from inference.webhooks import webhook_enqueue
from medai.accounts.principal import Principal
from medai.archive.models import Study

logger = logging.getLogger(__name__)

RESULT_EVENT = "analysis.finished"


@transaction.atomic
def study_route(*, study_id: int) -> list[Analysis]:
    """Create the study's worklist entry and one analysis per matching service, or one *not routed*
    analysis with its reason. Idempotent: a study already routed is left as it is."""
    from inference.scheduling import analyses_dispatch
    from inference.tasks import write_refusal_report

    study = Study.objects.select_for_update().get(id=study_id)
    if Analysis.objects.filter(study=study).exists():
        return []
    urgent = study_is_urgent(study)
    tenant = {"organization_id": study.organization_id, "region_id": study.region_id}
    WorklistEntry.objects.get_or_create(study=study, defaults={**tenant, "urgent": urgent})
    now = timezone.now()
    routes = routes_for(study)
    if not routes:
        analysis = Analysis.objects.create(
            study=study, **tenant, status=Analysis.Status.NOT_ROUTED, reason_code="no_service",
            reason=not_routed_reason(study), urgent=urgent, finished_at=now,
        )
        worklist_refresh(study_id=study.id)
        webhook_enqueue(analysis=analysis, event=RESULT_EVENT, payload=_result_event(analysis))
        transaction.on_commit(lambda: write_refusal_report.delay(analysis.id, analysis.organization_id))
        logger.info("study %s routed to no service", study.id)
        study_routed.send(sender=None, study_id=study.id)
        return [analysis]
    analyses = [
        Analysis.objects.create(
            study=study, service=service, **tenant, urgent=urgent, shadow=shadow,
            deadline_at=now + dt.timedelta(seconds=service.deadline_seconds),
        )
        for route in routes
        for service, shadow in [(route.service, False), *((s, True) for s in shadows_of(route.service))]
    ]
    transaction.on_commit(analyses_dispatch)
    logger.info("study %s routed to %s", study.id, ", ".join(route.service.code for route in routes))
    study_routed.send(sender=None, study_id=study.id)
    return analyses


def analysis_claim(*, analysis_id: int) -> Analysis | None:
    """Take a dispatched analysis (or one whose run lost its lease) for this run; None if another run has it
    or it is finished. The attempt number it gets is the run's ticket to store the result."""
    from django.conf import settings

    now = timezone.now()
    locked = Analysis.objects.select_for_update(of=("self",)).select_related("service", "study")
    analysis = locked.filter(id=analysis_id).first()
    if analysis is None or analysis.status in Analysis.FINAL or analysis.status == Analysis.Status.QUEUED:
        return None
    if analysis.status == Analysis.Status.RUNNING and analysis.lease_until and analysis.lease_until > now:
        return None
    analysis.status = Analysis.Status.RUNNING
    analysis.attempt += 1
    analysis.started_at = analysis.started_at or now
    analysis.lease_until = now + dt.timedelta(seconds=settings.INFERENCE_LEASE_SECONDS)
    analysis.save(update_fields=["status", "attempt", "started_at", "lease_until"])
    return analysis


def analysis_lock_for_result(*, analysis_id: int, attempt: int) -> Analysis | None:
    """Lock the analysis to store this run's result; None if the run lost it (a newer attempt, or done)."""
    analysis = Analysis.objects.select_for_update(of=("self",)).select_related("service", "study").get(id=analysis_id)
    if analysis.status != Analysis.Status.RUNNING or analysis.attempt != attempt:
        return None
    return analysis


def analysis_release_for_retry(*, analysis_id: int, attempt: int) -> bool:
    """A transient failure: hand the analysis back to the retried task (still counted as in flight)."""
    return bool(
        Analysis.objects.filter(id=analysis_id, attempt=attempt, status=Analysis.Status.RUNNING).update(
            status=Analysis.Status.DISPATCHED
        )
    )


def analysis_finish(*, analysis: Analysis, status: str, reason: str = "", code: str = "", **result) -> Analysis:
    """Record the end of an analysis (result fields in `result`), flag it late past its deadline, and
    move its study on the worklist. The caller holds the row lock."""
    now = timezone.now()
    analysis.status = status
    analysis.reason = reason[:500]
    analysis.reason_code = code
    analysis.finished_at = now
    analysis.lease_until = None
    analysis.late = bool(analysis.deadline_at and now > analysis.deadline_at)
    for field, value in result.items():
        setattr(analysis, field, value)
    analysis.save()
    if not analysis.shadow:  # a shadow result is kept for comparison, never delivered
        worklist_refresh(study_id=analysis.study_id)
        webhook_enqueue(analysis=analysis, event=RESULT_EVENT, payload=_result_event(analysis))
    analysis_finished.send(sender=Analysis, analysis=analysis)
    return analysis


def analysis_end_without_result(*, analysis: Analysis, status: str, code: str, reason: str) -> Analysis:
    """End an analysis that has no result (refused by the audit, failed, its worker lost); the clinic
    still gets an answer: its *not analysable* SR, written by a task after commit. The caller holds the
    row lock."""
    from inference.tasks import write_refusal_report

    analysis_finish(analysis=analysis, status=status, reason=reason, code=code)
    if not analysis.shadow:
        transaction.on_commit(lambda: write_refusal_report.delay(analysis.id, analysis.organization_id))
    return analysis


def _result_event(analysis: Analysis) -> dict:
    """What the RIS hears: ids, outcome and where to read the result; never patient data."""
    study_uid = analysis.study.study_instance_uid
    return {
        "analysis_id": analysis.id,
        "study_instance_uid": study_uid,
        "service": analysis.service.code if analysis.service else None,
        "status": analysis.status,
        "reason_code": analysis.reason_code,
        "probability": analysis.probability,
        "pathology": analysis.pathology,
        "category": analysis.category,
        "autonomous": analysis.autonomous,
        "late": analysis.late,
        "results": f"/api/v1/studies/{study_uid}/results",
    }


def autonomous_normal(*, service: AIService, organization_id: int, probability: float) -> bool:
    """May this result close the study without a radiologist? Only for a service at the autonomous stage,
    in an organization that enabled that, below the threshold chosen for sensitivity 1.0."""
    return (
        service.stage == AIService.Stage.AUTONOMOUS
        and service.autonomous_threshold is not None
        and probability < service.autonomous_threshold
        and service.autonomous_organizations.filter(id=organization_id).exists()
    )


@transaction.atomic
def worklist_refresh(*, study_id: int) -> WorklistEntry | None:
    """Re-rank a study from its analyses. When every analysis is done, it is ready for a radiologist, or
    closed by AI if every one is an autonomous normal: one service that may not close it (not autonomous
    here, or unsure) keeps the study for a radiologist."""
    entry = WorklistEntry.objects.select_for_update().filter(study_id=study_id).first()
    if entry is None:
        return None
    analyses = list(Analysis.objects.filter(study_id=study_id, shadow=False, superseded_at__isnull=True))
    probabilities = [a.probability for a in analyses if a.probability is not None]
    entry.ai_probability = max(probabilities) if probabilities else None
    entry.ai_flagged = any(a.pathology for a in analyses)
    entry.urgent = entry.urgent or any(a.ai_urgent for a in analyses)
    # Only a study still waiting for AI moves on: one a radiologist has (or got back) is never closed again.
    if entry.status == WorklistEntry.Status.AWAITING_AI and all(a.status in Analysis.FINAL for a in analyses):
        closed = bool(analyses) and all(
            a.status == Analysis.Status.SUCCEEDED and not a.pathology and a.autonomous for a in analyses
        )
        entry.status = WorklistEntry.Status.CLOSED_BY_AI if closed else WorklistEntry.Status.READY
        entry.reported_at = timezone.now() if closed else None
    entry.save()
    return entry


class WorklistConflict(Exception):
    """The study is not in a state that allows this (claimed by someone else, or already reported)."""


@transaction.atomic
def worklist_claim(*, entry: WorklistEntry, principal: Principal) -> WorklistEntry:
    """A radiologist takes a study; taking one's own again is harmless, taking another's is a conflict."""
    entry = WorklistEntry.objects.select_for_update().get(id=entry.id)
    if entry.status == WorklistEntry.Status.CLAIMED and entry.claimed_by == principal.subject:
        return entry
    if entry.status not in (WorklistEntry.Status.AWAITING_AI, WorklistEntry.Status.READY):
        raise WorklistConflict(f"The study is {entry.status}.")
    entry.status = WorklistEntry.Status.CLAIMED
    entry.claimed_by = principal.subject
    entry.claimed_at = timezone.now()
    entry.save(update_fields=["status", "claimed_by", "claimed_at"])
    return entry


@transaction.atomic
def worklist_complete(*, entry: WorklistEntry, principal: Principal) -> WorklistEntry:
    """The radiologist who claimed a study reports it; it leaves the worklist."""
    entry = WorklistEntry.objects.select_for_update().get(id=entry.id)
    if entry.status != WorklistEntry.Status.CLAIMED or entry.claimed_by != principal.subject:
        raise WorklistConflict("Only the radiologist who claimed the study can complete it.")
    entry.status = WorklistEntry.Status.REPORTED
    entry.reported_at = timezone.now()
    entry.save(update_fields=["status", "reported_at"])
    return entry
