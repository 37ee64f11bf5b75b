"""Celery tasks of statistics: the nightly check of the live counts and the rollup to region and nation."""

import datetime as dt

from celery import shared_task
from django.utils import timezone

from medai.stats.rebuild import stats_check
from medai.stats.rollups import FINAL_AFTER_DAYS, rollups_advance

CHECKED_DAYS = 3


@shared_task(name="stats.nightly", ignore_result=True)
def nightly() -> int:
    """Recount the last days the live path wrote (correcting them if it erred), then roll the days that are
    final up to region and nation. Returns the cells that were wrong."""
    today = timezone.localdate()
    wrong = stats_check(date_from=today - dt.timedelta(days=CHECKED_DAYS), date_to=today - dt.timedelta(days=1))
    rollups_advance(through=today - dt.timedelta(days=FINAL_AFTER_DAYS))
    return wrong
