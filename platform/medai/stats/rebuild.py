"""Recount a range of days from the source rows: after a bug, a lost event, or as the nightly check."""

import datetime as dt
import logging

from medai.stats import counts
from medai.stats.models import DailyCount
from medai.stats.rollups import lock_against_live_writers
from tenants.scope import dangerously_unscoped

logger = logging.getLogger(__name__)
CELL = ("organization_id", "day", "modality", "service_id", "stat")


def stats_rebuild(*, date_from: dt.date, date_to: dt.date) -> int:
    """Delete and recompute the counts of `date_from`..`date_to`; returns the rows written.

    The table is locked against live writers for the rebuild: one that waits adds its event after the
    rebuild commits, and the rebuild could not have seen that uncommitted event, so nothing is counted twice.
    The region and national sums follow through the table's trigger.
    """
    with dangerously_unscoped():
        lock_against_live_writers()
        DailyCount.objects.filter(day__range=(date_from, date_to)).delete()
        counts.counts_fill(date_from=date_from, date_to=date_to)
        return DailyCount.objects.filter(day__range=(date_from, date_to)).count()


def stats_check(*, date_from: dt.date, date_to: dt.date) -> int:
    """The nightly check that the live path counted right: recount the days and compare. The recount stays
    (it is the truth); returns how many cells the live counts had wrong, and logs them if any."""
    with dangerously_unscoped():
        lock_against_live_writers()
        live = _cells(date_from, date_to)
        stats_rebuild(date_from=date_from, date_to=date_to)
        recounted = _cells(date_from, date_to)
    wrong = [cell for cell in live.keys() | recounted.keys() if live.get(cell) != recounted.get(cell)]
    if wrong:
        logger.warning("stats check %s..%s: %d cells differed from a recount and were corrected, e.g. stat %s",
                       date_from, date_to, len(wrong), sorted(cell[-1] for cell in wrong)[:5])
    return len(wrong)


def _cells(date_from: dt.date, date_to: dt.date) -> dict[tuple, int]:
    rows = DailyCount.objects.filter(day__range=(date_from, date_to)).values_list(*CELL, "value")
    return {tuple(row[:-1]): row[-1] for row in rows}
