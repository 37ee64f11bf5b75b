"""Celery tasks of AI analysis. Each takes ids, is safe to re-run, and leaves the work to services."""

import logging

from celery import shared_task
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
