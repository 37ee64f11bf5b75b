"""Moving the region and national sums forward: the nightly rollup of the days no live event reaches.

Events count on the local day they happen, so a day is final once it is over in every region: every
Russian region lies east of UTC, so at the nightly run (00:30 UTC) yesterday's UTC date is over
everywhere. Anything that still reaches a rolled-up day (a completion task re-run late, a rebuild) is
carried into the sums by the trigger of migration 0003; the lag only keeps such writes rare, as they
update national rows every writer would otherwise share.
"""

import datetime as dt

from django.db import connection

from medai.stats.models import RollupState
from tenants.scope import dangerously_unscoped

FINAL_AFTER_DAYS = 1


def lock_against_live_writers() -> None:
    """Hold live counting off the daily counts until this transaction ends (rebuilds, the rollup): a writer
    that waits adds its event after the commit, so it is neither missed nor counted twice."""
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE stats_dailycount IN SHARE ROW EXCLUSIVE MODE")


def rolled_up_through() -> dt.date | None:
    """The last day the region and national tables hold."""
    return RollupState.objects.filter(id=1).values_list("rolled_up_through", flat=True).first()


def rollups_advance(*, through: dt.date) -> int:
    """Sum the organization counts of the days after the last rolled-up one, up to `through`, into the
    region and national tables; returns the region rows written. Live writers wait on the table lock for the few
    hundred milliseconds of a day, so none slips between the sums and the new watermark."""
    with dangerously_unscoped(), connection.cursor() as cursor:
        lock_against_live_writers()
        cursor.execute("INSERT INTO stats_rollupstate (id) VALUES (1) ON CONFLICT DO NOTHING")
        cursor.execute("SELECT rolled_up_through FROM stats_rollupstate WHERE id = 1 FOR UPDATE")
        (last,) = cursor.fetchone()
        if last is not None and through <= last:
            return 0
        first = dt.date.min if last is None else last + dt.timedelta(days=1)
        cursor.execute("""
            INSERT INTO stats_regiondailycount (region_id, day, modality, service_id, stat, value)
            SELECT region_id, day, modality, service_id, stat, sum(value) FROM stats_dailycount
            WHERE day BETWEEN %s AND %s GROUP BY 1, 2, 3, 4, 5 HAVING sum(value) <> 0
        """, [first, through])
        written = cursor.rowcount
        cursor.execute("""
            INSERT INTO stats_nationaldailycount (day, modality, service_id, stat, value)
            SELECT day, modality, service_id, stat, sum(value) FROM stats_regiondailycount
            WHERE day BETWEEN %s AND %s GROUP BY 1, 2, 3, 4 HAVING sum(value) <> 0
        """, [first, through])
        cursor.execute("UPDATE stats_rollupstate SET rolled_up_through = %s WHERE id = 1", [through])
        return written
