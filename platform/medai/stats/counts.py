"""The declared statistics and the one SQL that fills them, incrementally or for a rebuild.

Each `CountStat` is a `SELECT ... GROUP BY` over its source rows (Zulip's `analytics/lib/counts.py`).
The live path runs the stats of an event for the one row it touched, in one statement, and adds the
result with `ON CONFLICT DO UPDATE SET value = value + EXCLUDED.value`; the rebuild runs the same
SELECTs for a range of days. Sharing the query is what makes the two paths give the same numbers.

Days are the region's local days (as billing's dates of service). The modality is the study's first
(its modalities are kept sorted, and AI results, OT and SR, sort after the images). Shadow analyses
are left out: they are never delivered or billed.
"""

import datetime as dt
from dataclasses import dataclass

from django.db import connection

HISTOGRAM_BUCKETS = 40  # bucket i holds times up to 2 ** (i / 2) seconds: 1 s .. 8.5 days, the last open-ended
PROCESSING_TIME = "processing_time"

ANALYSIS = "inference_analysis a JOIN archive_study s ON s.id = a.study_id"
FINISHED = "a.service_id IS NOT NULL AND NOT a.shadow AND a.finished_at IS NOT NULL"
SUCCEEDED = f"{FINISHED} AND a.status = 'succeeded'"
# In float8: numeric LOG took 20 times as long in a rebuild of 10 M results (bench/stats.py).
BUCKET = (f"LEAST({HISTOGRAM_BUCKETS - 1}, GREATEST(0, CEIL(2 * ln(GREATEST(1, "
          "EXTRACT(EPOCH FROM a.finished_at - a.created_at))::float8) / ln(2::float8))))::int")


@dataclass(frozen=True)
class CountStat:
    """One statistic: its rows (`source`, aliasing the tenant row `t` and the study `s`), when each row
    happened (`at`), which rows count (`where`), and the column an event names its row by (`key`)."""

    name: str
    source: str
    at: str
    where: str
    key: str
    tenant: str = "a"
    service: str = "a.service_id"
    value: str = "count(*)"
    stat: str = ""

    def select(self, condition: str) -> str:
        t = self.tenant
        return f"""
            SELECT {t}.organization_id, {t}.region_id, ({self.at} AT TIME ZONE r.time_zone)::date,
                   coalesce(s.modalities[1], ''), {self.service}, {self.stat or repr(self.name)}, {self.value}
            FROM {self.source} JOIN tenants_region r ON r.id = {t}.region_id
            WHERE {self.where} AND {condition}
            GROUP BY 1, 2, 3, 4, 5, 6
            HAVING {self.value} <> 0
        """


def _upsert(selects: list[str]) -> str:
    """Add the rows of several stats in one statement (their stat names differ, so no row is hit twice)."""
    return f"""
        INSERT INTO stats_dailycount (organization_id, region_id, day, modality, service_id, stat, value)
        {" UNION ALL ".join(f"({select})" for select in selects)}
        ON CONFLICT (organization_id, day, stat, modality, service_id)
            DO UPDATE SET value = stats_dailycount.value + EXCLUDED.value
        RETURNING id, value
    """


STUDY = dict(source="archive_study s", at="s.completed_at", where="s.status = 'complete'", key="s.id",
             tenant="s", service="NULL::bigint")
NOT_ROUTED = dict(source=ANALYSIS, at="a.finished_at", where="a.status = 'not_routed' AND a.service_id IS NULL",
                  key="a.study_id", service="NULL::bigint")
REVIEW = dict(source="inference_review v JOIN inference_analysis a ON a.id = v.analysis_id "
                     "JOIN archive_study s ON s.id = a.study_id",
              at="v.reviewed_at", key="v.id", tenant="v")
BILLED = dict(source="billing_billableservice b JOIN inference_analysis a ON a.id = b.analysis_id "
                     "JOIN archive_study s ON s.id = b.study_id",
              at="b.released_at", where="b.status = 'billable'", key="b.id", tenant="b")

STUDY_STATS = (
    CountStat("studies_received", **STUDY),
    CountStat("not_routed", **NOT_ROUTED),
)
ANALYSIS_STATS = (
    CountStat("analysed", source=ANALYSIS, at="a.finished_at", where=SUCCEEDED, key="a.id"),
    CountStat("failed", source=ANALYSIS, at="a.finished_at", where=f"{FINISHED} AND a.status = 'failed'", key="a.id"),
    CountStat("not_analysable", source=ANALYSIS, at="a.finished_at",
              where=f"{FINISHED} AND a.status = 'not_analysable'", key="a.id"),
    CountStat("autonomous", source=ANALYSIS, at="a.finished_at", where=f"{SUCCEEDED} AND a.autonomous", key="a.id"),
    CountStat("flagged", source=ANALYSIS, at="a.finished_at", where=f"{SUCCEEDED} AND a.pathology", key="a.id"),
    CountStat("defects", source="inference_defect d JOIN inference_analysis a ON a.id = d.analysis_id "
                                "JOIN archive_study s ON s.id = a.study_id",
              at="a.finished_at", where=FINISHED, key="a.id"),
    CountStat(PROCESSING_TIME, source=ANALYSIS, at="a.finished_at", where=SUCCEEDED, key="a.id",
              stat=f"'{PROCESSING_TIME}:' || lpad({BUCKET}::text, 2, '0')"),
)
REVIEW_STATS = (
    CountStat("reviews", where="TRUE", **REVIEW),
    CountStat("disagreements", where="NOT v.agrees", **REVIEW),
)
# A charge billed at once is counted into the same cell by billing_analysis_charge (billing migration 0003,
# for the cost of every analysis), not by this query: a change here goes there too (test_rollups compares).
BILLING_STATS = (CountStat("billed_kopecks", value="sum(b.amount * 100)::bigint", **BILLED),)

ALL_STATS = STUDY_STATS + ANALYSIS_STATS + REVIEW_STATS + BILLING_STATS
COUNTED = tuple(stat.name for stat in ALL_STATS if stat.name not in (PROCESSING_TIME, "billed_kopecks"))


def bucket_upper_seconds(bucket: int) -> float:
    """The longest time a histogram bucket holds."""
    return 2 ** (bucket / 2)


def counts_add(*, stats: tuple[CountStat, ...], key: int) -> None:
    """The live path: count one event's source row (a study, an analysis, a review, a billed service)
    into its day, in the caller's transaction and tenant scope."""
    with connection.cursor() as cursor:
        cursor.execute(_upsert([stat.select(f"{stat.key} = %s") for stat in stats]), [key] * len(stats))
        cancelled = [row_id for row_id, value in cursor.fetchall() if value == 0]
        if cancelled:  # a reversal that cancels the day's charges: no zero rows
            cursor.execute("DELETE FROM stats_dailycount WHERE id = ANY(%s) AND value = 0", [cancelled])


def counts_fill(*, date_from: dt.date, date_to: dt.date) -> None:
    """The rebuild path: count every source row of the local days `date_from`..`date_to` (the caller has
    deleted the range). Rows are preselected on UTC time a day wider, then cut on the local day."""
    with connection.cursor() as cursor:
        for stat in ALL_STATS:
            condition = (f"{stat.at} >= %s AND {stat.at} < %s "
                         f"AND ({stat.at} AT TIME ZONE r.time_zone)::date BETWEEN %s AND %s")
            start = dt.datetime.combine(date_from - dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
            end = dt.datetime.combine(date_to + dt.timedelta(days=2), dt.time(), tzinfo=dt.UTC)
            cursor.execute(_upsert([stat.select(condition)]), [start, end, date_from, date_to])
