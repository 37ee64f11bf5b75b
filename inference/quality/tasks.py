"""Celery tasks of quality monitoring; system jobs across tenants, safe to re-run."""

from celery import shared_task
from django.utils import timezone

from inference.quality import services, versions
from inference.records import AIService
from tenants.scope import dangerously_unscoped, organization_scope


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


@shared_task(name="inference.quality.recall", acks_late=True, ignore_result=True)
def recall(service_id: int, model_version: str, reason: str) -> int:
    """Withdraw every delivered result of a model version, one organization (and scope) at a time."""
    with dangerously_unscoped():
        service = AIService.objects.get(id=service_id)
        organizations = versions.recall_organizations(service=service, model_version=model_version)
    withdrawn = 0
    for organization_id in organizations:
        with organization_scope(organization_id=organization_id):
            withdrawn += versions.organization_results_withdraw(service=service, model_version=model_version,
                                                                reason=reason)
    return withdrawn
