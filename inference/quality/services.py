"""Writes of quality monitoring: defects of results, the suspension of a service that keeps failing, and
the operator's alerts.

Defects of a run are recorded in the transaction that stores its result, before the analysis ends, so
billing (which listens to the end of an analysis) already sees them. Judgements across tenants (a
service's streak, a month's defect rate) run in their own system transaction, from Celery.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from inference.quality.clinical import month_span, month_start
from inference.quality.records import Defect, QualityAlert, Severity
from inference.quality.technological import Finding
from inference.records import AIService, Analysis

logger = logging.getLogger(__name__)

# Failures that are the service's fault: it answered, but not as its contract says.
SERVICE_FAILURES = {"bad_model_answer": "Сервис ИИ вернул ответ неверного формата."}


def defects_record(*, analysis: Analysis, findings: list[Finding]) -> list[Defect]:
    """Store a result's findings; a rerun of the same analysis records each requirement once."""
    defects = [
        Defect(organization_id=analysis.organization_id, region_id=analysis.region_id, analysis=analysis,
               service_id=analysis.service_id, requirement=f.requirement, severity=f.severity, detail=f.detail[:500])
        for f in findings
    ]
    Defect.objects.bulk_create(defects, ignore_conflicts=True)
    for finding in findings:
        logger.warning("analysis %s: %s defect %s", analysis.id, finding.severity, finding.requirement)
    return defects


def finished_analysis_check(*, analysis: Analysis) -> list[Defect]:
    """What shows only once an analysis ended: a result past its deadline, an exchange error."""
    findings = []
    if analysis.service_id is None:
        return []
    if analysis.late and analysis.status in (Analysis.Status.SUCCEEDED, Analysis.Status.FAILED):
        findings.append(Finding("late", Severity.MAJOR,
                                f"Результат получен позже срока ({analysis.service.deadline_seconds} с)."))
    if analysis.status == Analysis.Status.FAILED and analysis.reason_code in SERVICE_FAILURES:
        findings.append(Finding("exchange_error", Severity.MAJOR, SERVICE_FAILURES[analysis.reason_code]))
    return defects_record(analysis=analysis, findings=findings) if findings else []


def has_critical_defect(analysis: Analysis) -> bool:
    return Defect.objects.filter(analysis=analysis, severity=Severity.CRITICAL).exists()


def critical_streak_check(*, service_id: int) -> bool:
    """Suspend a service whose last N results each had a critical defect, and tell the operator why.
    Needs the national scope (a service's results span tenants). Returns whether it suspended."""
    streak = settings.QUALITY_SUSPEND_AFTER_CRITICAL_STREAK
    service = AIService.objects.select_for_update().get(id=service_id)
    if streak <= 0 or service.status != AIService.Status.ACTIVE:
        return False
    last = list(
        Analysis.objects.filter(service=service, status__in=(Analysis.Status.SUCCEEDED, Analysis.Status.FAILED))
        .order_by("-finished_at", "-id")
        .annotate(critical=Count("defects", filter=Q(defects__severity=Severity.CRITICAL)))
        .values_list("critical", flat=True)[:streak]
    )
    if len(last) < streak or not all(last):
        return False
    requirements = sorted(set(
        Defect.objects.filter(service=service, severity=Severity.CRITICAL).order_by("-found_at")
        .values_list("requirement", flat=True)[: streak * 3]
    ))
    reason = (f"Приостановлен автоматически: {streak} результатов подряд с критическими дефектами "
              f"({', '.join(requirements)}).")
    service.status, service.status_reason = AIService.Status.SUSPENDED, reason
    service.save(update_fields=["status", "status_reason"])
    QualityAlert.objects.get_or_create(
        service=service, region=None, month=month_start(timezone.localdate()), kind=QualityAlert.Kind.CRITICAL_STREAK,
        defaults={"message": reason, "value": float(streak)},
    )
    logger.warning("service %s suspended: %s", service.code, reason)
    return True


def defect_rate_alerts(*, month: dt.date) -> list[QualityAlert]:
    """Alert on each service whose share of defective results in `month` (nationally and per region)
    passed QUALITY_DEFECT_RATE_ALERT over at least QUALITY_MIN_RESULTS results. Needs the national scope."""
    start, (since, until) = month_start(month), month_span(month)
    finished = Analysis.objects.filter(service__isnull=False, finished_at__gte=since, finished_at__lt=until,
                                       status__in=(Analysis.Status.SUCCEEDED, Analysis.Status.FAILED))
    counts = {"results": Count("id", distinct=True),
              "defective": Count("id", distinct=True, filter=Q(defects__severity__in=[Severity.CRITICAL,
                                                                                      Severity.MAJOR]))}
    cells = [(None, row) for row in finished.values("service_id").annotate(**counts)]
    cells += [(row["region_id"], row) for row in finished.values("service_id", "region_id").annotate(**counts)]
    raised = []
    for region_id, row in cells:
        rate = row["defective"] / row["results"] if row["results"] else 0.0
        if row["results"] < settings.QUALITY_MIN_RESULTS or rate <= settings.QUALITY_DEFECT_RATE_ALERT:
            continue
        where = "по стране" if region_id is None else "в регионе"
        alert, created = QualityAlert.objects.get_or_create(
            service_id=row["service_id"], region_id=region_id, month=start, kind=QualityAlert.Kind.DEFECT_RATE,
            defaults={"value": rate, "message": f"Доля результатов с дефектами {where} за {start:%m.%Y}: "
                                                 f"{rate:.1%} из {row['results']} (порог "
                                                 f"{settings.QUALITY_DEFECT_RATE_ALERT:.0%})."},
        )
        if created:
            raised.append(alert)
    return raised
