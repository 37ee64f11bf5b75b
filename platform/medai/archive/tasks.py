"""Celery tasks of the archive. Tasks take ids, are safe to re-run, and stay thin."""

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings

from medai.archive.services import storage_sweep_orphans, studies_complete_quiet
from medai.archive.signals import study_completed as study_completed_signal
from tenants.scope import dangerously_unscoped, organization_scope

logger = logging.getLogger(__name__)


@shared_task(name="archive.study_completed", ignore_result=True, acks_late=True)
def study_completed(study_id: int, organization_id: int) -> None:
    """Fired once per study when it is complete; listeners (AI routing) must be idempotent, as a worker
    crash re-runs the task."""
    with organization_scope(organization_id=organization_id):
        logger.info("study %s of organization %s completed", study_id, organization_id)
        study_completed_signal.send(sender=None, study_id=study_id, organization_id=organization_id)


@shared_task(name="archive.complete_quiet_studies", ignore_result=True)
def complete_quiet_studies() -> int:
    """Periodic: complete the studies that have been quiet for STUDY_QUIET_SECONDS."""
    with dangerously_unscoped():
        return studies_complete_quiet(quiet_seconds=settings.STUDY_QUIET_SECONDS)


@shared_task(name="archive.sweep_orphans", ignore_result=True)
def sweep_orphans() -> int:
    """Periodic: delete objects left in storage by requests that crashed before their index commit."""
    with dangerously_unscoped():
        return storage_sweep_orphans(older_than=dt.timedelta(hours=2))
