"""Celery tasks of AI analysis. Each takes ids, is safe to re-run, and leaves the work to services."""

import gc
import logging

from celery import shared_task
from celery.signals import worker_init, worker_process_init
from django.db.models import Q
from django.utils import timezone

from inference import pipeline
from inference.quality.clinical_tasks import draw_review_samples, recompute_metrics  # noqa: F401 - registers tasks
from inference.quality.tasks import critical_streak, defect_rate_alerts, recall  # noqa: F401 - registers tasks
from inference.records import Analysis
from inference.scheduling import analyses_dispatch
from inference.webhooks import deliver_webhook  # noqa: F401 - registers the task with the workers
from tenants.scope import dangerously_unscoped

logger = logging.getLogger(__name__)


@worker_init.connect
def warm_up(**kwargs) -> None:
    """Before the pool forks: children inherit what the first analysis would otherwise load. A failed
    warm-up only costs the first analysis its time, so it never stops the worker."""
    try:
        pipeline.warm_up()
    except Exception:
        logger.exception("warm-up failed; the first analyses load what they need themselves")


@worker_process_init.connect
def freeze_inherited(**kwargs) -> None:
    """In each pool process as it starts: what it inherited (Django, numpy, pydicom, highdicom: hundreds
    of thousands of objects, none of them garbage) leaves the garbage collector's scans, which otherwise
    walked it again and again during a run (about half a second of a 300-slice CT)."""
    gc.freeze()


@shared_task(name="inference.run_analysis", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def run_analysis(self, analysis_id: int, organization_id: int) -> None:
    """One (study, service) analysis. A transient model outage is retried later by Celery; the analysis
    row decides how many attempts there are and which run's result counts."""
    try:
        pipeline.analysis_run(analysis_id=analysis_id, organization_id=organization_id)
    except pipeline.RetryLater as later:
        raise self.retry(countdown=later.countdown) from later
    analyses_dispatch()


@shared_task(name="inference.write_refusal_report", acks_late=True, ignore_result=True)
def write_refusal_report(analysis_id: int, organization_id: int) -> None:
    pipeline.refusal_report_write(analysis_id=analysis_id, organization_id=organization_id)


@shared_task(name="inference.dispatch", ignore_result=True)
def dispatch() -> int:
    """Periodic: re-queue analyses whose worker died, send what capacity allows, flag overdue ones."""
    with dangerously_unscoped():
        overdue = Analysis.objects.filter(~Q(status__in=Analysis.FINAL), late=False, deadline_at__lt=timezone.now())
        flagged = overdue.update(late=True)
    if flagged:
        logger.warning("%s analyses passed their deadline unfinished", flagged)
    return analyses_dispatch()
