"""Celery tasks of clinical monitoring: system jobs across tenants, safe to re-run, each month in its own
transaction. Without an argument they work on this month and the last one (UTC): verdicts on last
month's results keep coming in after it ends."""

import datetime as dt

from celery import shared_task
from django.utils import timezone

from inference.quality import clinical
from inference.records import AIService
from tenants.scope import dangerously_unscoped


def _months(month: str | None) -> list[dt.date]:
    """`month` as an ISO date (any day of it), or this month and the last one."""
    if month:
        return [clinical.month_start(dt.date.fromisoformat(month))]
    this_month = clinical.month_start(timezone.now().date())
    return [clinical.month_start(this_month - dt.timedelta(days=1)), this_month]


@shared_task(name="inference.quality.recompute_metrics", ignore_result=True)
def recompute_metrics(month: str | None = None) -> int:
    """Periodic: every service's metrics of the month(s), per region and nationally, and drift alerts.
    Returns the number of metrics rows written."""
    written = 0
    for start in _months(month):
        with dangerously_unscoped():
            written += len(clinical.month_metrics_recompute(month=start))
    return written


@shared_task(name="inference.quality.draw_review_samples", ignore_result=True)
def draw_review_samples(month: str | None = None) -> int:
    """Periodic: top up each service's review sample of the month(s) as results and verdicts arrive.
    Returns the number of results in the samples."""
    drawn = 0
    for start in _months(month):
        with dangerously_unscoped():
            services = AIService.objects.filter(id__in=clinical.results_in(start).values("service_id"))
            for service in services:
                drawn += len(clinical.review_sample_draw(service=service, month=start))
    return drawn
