"""Celery tasks of quality monitoring; system jobs across tenants, safe to re-run."""

from celery import shared_task
from django.utils import timezone

from inference.quality import services
from tenants.scope import dangerously_unscoped


@shared_task(name="inference.quality.critical_streak", ignore_result=True)
def critical_streak(service_id: int) -> bool:
    """After a result with a critical defect: suspend its service if that is its Nth in a row."""
    with dangerously_unscoped():
        return services.critical_streak_check(service_id=service_id)


@shared_task(name="inference.quality.defect_rate_alerts", ignore_result=True)
def defect_rate_alerts() -> int:
    """Periodic: alert on this month's defect rates past their threshold."""
    with dangerously_unscoped():
        return len(services.defect_rate_alerts(month=timezone.now().date()))
