"""Recount a range of days from the source rows: after a bug, a lost event or a re-run task."""

import datetime as dt

from django.db import connection

from medai.stats import counts
from medai.stats.models import DailyCount
from tenants.scope import dangerously_unscoped


def stats_rebuild(*, date_from: dt.date, date_to: dt.date) -> int:
    """Delete and recompute the counts of `date_from`..`date_to`; returns the rows written.

    The table is locked against live writers for the rebuild: one that waits adds its event after the
    rebuild commits, and the rebuild could not have seen that uncommitted event, so nothing is counted twice.
    """
    with dangerously_unscoped():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE stats_dailycount IN SHARE ROW EXCLUSIVE MODE")
        DailyCount.objects.filter(day__range=(date_from, date_to)).delete()
        counts.counts_fill(date_from=date_from, date_to=date_to)
        return DailyCount.objects.filter(day__range=(date_from, date_to)).count()
