"""Fair, urgent-first dispatch of analyses to the Celery workers.

Analyses wait in the database (status `queued`), not in the broker. At most INFERENCE_CAPACITY of them
are in flight at once, and each free slot goes, in this order, to:
1. an urgent study (STAT/HIGH), whatever its organization;
2. a delivered analysis before one of a service in shadow (those use capacity nobody else wants);
3. the organization with the fewest analyses in flight counting the ones picked in this round
   (a round-robin between organizations), so one region's backlog of a thousand studies waits behind
   another clinic's single study instead of in front of it;
4. the oldest.
The broker therefore never holds a backlog that a newcomer would queue behind. Urgent analyses
also get the highest Celery priority and Triton's higher request priority.

A run that stops renewing its lease (worker killed) is put back in the queue, or failed once it has
used its attempts; the run itself claims its analysis by attempt number, so a late duplicate of a
task finds nothing to do.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from inference.records import Analysis
from inference.services import analysis_end_without_result
from tenants.scope import dangerously_unscoped

logger = logging.getLogger(__name__)

# Celery priority on Redis: 0 is served first.
CELERY_PRIORITY_URGENT = 0
CELERY_PRIORITY_ROUTINE = 6
_DISPATCH_LOCK = 7_300_001  # pg advisory lock: one dispatcher at a time

_PICK_SQL = """
WITH in_flight AS (
    SELECT organization_id, count(*) AS n FROM inference_analysis
    WHERE status IN ('dispatched', 'running') GROUP BY organization_id
), ranked AS (
    SELECT a.id, a.urgent, a.shadow, a.created_at,
           coalesce(f.n, 0) + row_number() OVER (
               PARTITION BY a.organization_id ORDER BY a.urgent DESC, a.shadow, a.created_at, a.id) AS turn
    FROM inference_analysis a LEFT JOIN in_flight f USING (organization_id)
    WHERE a.status = 'queued'
)
SELECT id FROM ranked ORDER BY urgent DESC, shadow, turn, created_at, id LIMIT %s
"""


def analyses_dispatch() -> int:
    """Send queued analyses to the workers while capacity is free; returns how many were sent."""
    from inference.tasks import run_analysis

    with dangerously_unscoped():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_DISPATCH_LOCK])
        _recover_expired_leases()
        free = settings.INFERENCE_CAPACITY - Analysis.objects.filter(status__in=Analysis.IN_FLIGHT).count()
        if free <= 0:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(_PICK_SQL, [free])
            ids = [row[0] for row in cursor.fetchall()]
        now = timezone.now()
        lease = now + dt.timedelta(seconds=settings.INFERENCE_LEASE_SECONDS)
        picked = list(Analysis.objects.filter(id__in=ids).values_list("id", "organization_id", "urgent"))
        Analysis.objects.filter(id__in=ids).update(status=Analysis.Status.DISPATCHED, dispatched_at=now,
                                                   lease_until=lease)

        def send() -> None:
            for analysis_id, organization_id, urgent in picked:
                priority = CELERY_PRIORITY_URGENT if urgent else CELERY_PRIORITY_ROUTINE
                run_analysis.apply_async((analysis_id, organization_id), priority=priority)

        transaction.on_commit(send)
    return len(picked)


def _recover_expired_leases() -> None:
    """Runs whose lease ran out (their worker died) go back to the queue, or fail after their last attempt."""
    now = timezone.now()
    expired = Analysis.objects.filter(status__in=Analysis.IN_FLIGHT, lease_until__lt=now)
    for analysis in expired.select_for_update(skip_locked=True):
        if analysis.attempt >= settings.INFERENCE_MAX_ATTEMPTS:
            logger.warning("analysis %s lost its worker on its last attempt; failed", analysis.id)
            analysis_end_without_result(analysis=analysis, status=Analysis.Status.FAILED, code="worker_lost",
                                        reason="Анализ прерван: обработчик ИИ не ответил за отведённое время; "
                                               "исследование передано врачу без анализа ИИ.")
        else:
            logger.warning("analysis %s lost its worker (attempt %s); queued again", analysis.id, analysis.attempt)
            Analysis.objects.filter(id=analysis.id).update(status=Analysis.Status.QUEUED, lease_until=None)
