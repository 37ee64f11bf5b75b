"""Benchmark: recomputing a month of clinical-monitoring metrics (`inference.quality.clinical`) at national scale.

What it starts: embedded PostgreSQL (pgserver) in a temporary directory; Celery gets its in-memory broker
and no worker (nothing is queued).

What it does:

1. Seeds five regions with two organizations each and the three reference AI services (as rows: no
   Triton), then 1 M succeeded analyses (--quick: 100 k) of last month, spread over the services, the
   organizations and the days, each with its study; every tenth has a radiologist's review. The month
   before gets a fifth as many, so that every cell has a baseline and the drift path runs too. Scores
   come from a fixed hash of the row number (30 % of studies have the pathology; scores separate the
   classes imperfectly), so every run seeds the same data. Rows are written by INSERT ... SELECT
   generate_series as the pgserver superuser (it bypasses row-level security), without triggers
   (`session_replication_role = replica`) and with the secondary indexes dropped for the load and built
   after it; then VACUUM ANALYZE and a CHECKPOINT.
2. Times `month_metrics_recompute` for last month, as the periodic task runs it: the application's role
   (row-level security on) in `dangerously_unscoped()`, three times; the median counts. It prints each
   run's seconds and SQL queries, the process's peak RSS (VmHWM, reset before the runs where the kernel
   allows), and checks the national rows against COUNT(*) in SQL.

Target: a month of 1 M results recomputed in <= 30 s. MB is 10^6 bytes.

Run: .venv/bin/python bench/quality.py [--quick] [--keep]
"""

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "platform"))
sys.path.append(str(ROOT))

from bench.harness import (  # noqa: E402
    log,
    migrated_django,
    print_verdict,
    reset_peak_rss,
    seed_statement,
    status_kib,
    superuser_url,
)

MB = 1_000_000
TARGET_SECONDS = 30.0
RUNS = 3
REGIONS = [("RU-MOW", "Москва"), ("RU-SPE", "Санкт-Петербург"), ("RU-TAT", "Республика Татарстан"),
           ("RU-NIZ", "Нижегородская область"), ("RU-SVE", "Свердловская область")]
ORGANIZATIONS_PER_REGION = 2
REVIEWED_EVERY = 10
BASELINE_SHARE = 5  # the month before holds 1/5 as many results






# --- Tenants and services ------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    organization_ids: list[int]
    region_ids: list[int]  # the region of each organization, in the same order
    service_ids: list[int]
    thresholds: list[float]  # each service's operating point, in the same order
    month: dt.date  # first day of last month (UTC)
    baseline: dt.date  # first day of the month before


def first_of_previous(month: dt.date) -> dt.date:
    return (month - dt.timedelta(days=1)).replace(day=1)


def create_world() -> World:
    from django.utils import timezone

    from inference.demo import REFERENCE_SERVICES
    from inference.records import AIService
    from tenants.services import organization_ensure, region_ensure

    organizations = []
    for r, (code, name) in enumerate(REGIONS):
        region = region_ensure(code=code, name=name)
        organizations += [organization_ensure(region=region, oms_code=f"{r + 10}{k:04d}", name=f"Поликлиника {r}-{k}")
                          for k in range(ORGANIZATIONS_PER_REGION)]
    # The reference services as rows (no Triton needed), as bench/billing.py creates them.
    service_list = [AIService.objects.create(vendor="bench", **spec) for spec in REFERENCE_SERVICES]
    month = first_of_previous(timezone.now().date().replace(day=1))
    return World([o.id for o in organizations], [o.region_id for o in organizations],
                 [s.id for s in service_list], [s.pathology_threshold for s in service_list],
                 month, first_of_previous(month))


# --- Seeding -------------------------------------------------------------------------------------

# Row i of a month: its organization and service, the moment its analysis finished, and from the md5 of i
# (four independent 28-bit uniforms) whether the study has the pathology and the service's score.
ROW = """
    WITH h AS (
        SELECT i, md5(i::text) AS h FROM generate_series(%(first)s::bigint, %(first)s::bigint + %(n)s::int - 1) AS i
    ),
    g AS (
        SELECT i, i %% %(organizations)s::int AS o, (i / %(organizations)s::int) %% %(services)s::int AS s,
               %(month)s::timestamptz + make_interval(days => (i %% %(days)s::int)::int,
                                                      secs => ((i * 7) %% 86400)::float8) AS at,
               ('x' || substr(h, 1, 7))::bit(28)::int < 0.3 * 268435456 AS truth,
               (('x' || substr(h, 9, 7))::bit(28)::int + ('x' || substr(h, 17, 7))::bit(28)::int
                + ('x' || substr(h, 25, 7))::bit(28)::int) / 268435456.0 - 1.5 AS noise
        FROM h
    )
    SELECT g.*, round(least(1, greatest(0, 0.5 + CASE WHEN truth THEN 0.22 ELSE -0.22 END + 0.45 * noise))::numeric,
                      3)::float8 AS score
    FROM g
"""

STUDY_COLUMNS = {
    "id": "i", "organization_id": "(%(organization_ids)s::bigint[])[1 + o]",
    "region_id": "(%(region_ids)s::bigint[])[1 + o]", "study_instance_uid": "%(uid)s || '.' || i",
    "modalities": "'{DX}'::varchar[]", "number_of_series": "1", "number_of_instances": "1", "status": "'complete'",
    "study_date": "at::date", "received_at": "at", "last_received_at": "at", "completed_at": "at",
}
ANALYSIS_COLUMNS = {
    "id": "i", "organization_id": "(%(organization_ids)s::bigint[])[1 + o]",
    "region_id": "(%(region_ids)s::bigint[])[1 + o]", "study_id": "i",
    "service_id": "(%(service_ids)s::bigint[])[1 + s]", "status": "'succeeded'", "attempt": "1", "probability": "score",
    "pathology": "score >= (%(thresholds)s::float8[])[1 + s]", "model_version": "'1.0'", "originals_verified": "true",
    "created_at": "at - interval '40 seconds'", "started_at": "at - interval '20 seconds'", "finished_at": "at",
}
REVIEW_COLUMNS = {
    "organization_id": "(%(organization_ids)s::bigint[])[1 + o]", "region_id": "(%(region_ids)s::bigint[])[1 + o]",
    "analysis_id": "i", "service_id": "(%(service_ids)s::bigint[])[1 + s]", "reviewer": "'bench-radiologist'",
    "agrees": "truth = (score >= (%(thresholds)s::float8[])[1 + s])", "true_pathology": "truth",
    "localisation_correct": "CASE WHEN score >= (%(thresholds)s::float8[])[1 + s] THEN i %% 7 <> 0 END",
    "significance": "CASE WHEN truth = (score >= (%(thresholds)s::float8[])[1 + s]) THEN 'none' ELSE 'minor' END",
    "comment": "''", "reviewed_at": "at + interval '2 days'",
}



def seed_month(cursor, world: World, month: dt.date, first: int, n: int) -> None:
    from inference.quality.records import Review
    from inference.records import Analysis
    from medai.archive.models import Study

    next_month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    params = {
        "n": n, "first": first, "month": dt.datetime.combine(month, dt.time(), tzinfo=dt.UTC),
        "days": (next_month - month).days, "organizations": len(world.organization_ids),
        "services": len(world.service_ids), "organization_ids": world.organization_ids,
        "region_ids": world.region_ids, "service_ids": world.service_ids, "thresholds": world.thresholds,
        "uid": f"1.2.826.0.1.3680043.10.3{os.getpid()}",
    }
    for model, columns, where in ((Study, STUDY_COLUMNS, ""), (Analysis, ANALYSIS_COLUMNS, ""),
                                  (Review, REVIEW_COLUMNS, f"WHERE i %% {REVIEWED_EVERY} = 0")):
        cursor.execute(seed_statement(model, columns, params, ROW, where), params)


def seed(world: World, n: int) -> float:
    """n results of last month (and n / BASELINE_SHARE of the month before) as the superuser; returns seconds."""
    import psycopg

    from inference.quality.records import Review
    from inference.records import Analysis
    from medai.archive.models import Study

    started = time.perf_counter()
    tables = [model._meta.db_table for model in (Study, Analysis, Review)]
    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"]), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")  # no per-row FK checks or triggers
            secondary = cursor.execute(
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = ANY(%s::regclass[]) "
                "AND NOT EXISTS (SELECT FROM pg_constraint WHERE conindid = indexrelid)", [tables]).fetchall()
            for name, _ in secondary:
                cursor.execute(f"DROP INDEX {name}")
            seed_month(cursor, world, world.baseline, first=1, n=n // BASELINE_SHARE)
            seed_month(cursor, world, world.month, first=1 + n // BASELINE_SHARE, n=n)
            for _, definition in secondary:
                cursor.execute(definition)
            for table in tables:
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        log(f"inserted in {time.perf_counter() - started:.1f} s; VACUUM ANALYZE")
        for table in tables:
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


# --- The recompute -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    queries: int
    rows: int


def recompute_once(month: dt.date) -> Run:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from inference.quality.clinical import month_metrics_recompute
    from tenants.scope import dangerously_unscoped

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        with dangerously_unscoped():
            rows = month_metrics_recompute(month=month)
        seconds = time.perf_counter() - started
    return Run(seconds, len(queries.captured_queries), len(rows))


def check(world: World, n: int) -> dict[str, bool]:
    """The national rows against SQL: every result counted, every review judged, AUROC plausible."""
    import psycopg

    from inference.quality.records import ServiceMonthMetrics

    national = ServiceMonthMetrics.objects.filter(month=world.month, region=None)
    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"])) as conn:
        reviews = conn.execute("SELECT count(*) FROM inference_review r JOIN inference_analysis a "
                               "ON a.id = r.analysis_id WHERE a.finished_at >= %s",
                               [dt.datetime.combine(world.month, dt.time(), tzinfo=dt.UTC)]).fetchone()[0]
    return {
        "results": sum(row.results for row in national) == n,
        "reviewed": sum(row.reviewed for row in national) == reviews,
        "auroc": all(row.auroc is not None and 0.7 < row.auroc < 1 for row in national),
        "regions": ServiceMonthMetrics.objects.filter(month=world.month).count()
        == len(world.service_ids) * (len(REGIONS) + 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 k results, a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (the database)")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs, harmless
    wall = time.perf_counter()
    with migrated_django("medai-bench-quality-", keep=args.keep) as home:
        world = create_world()
        log(f"seeding {n} results of {world.month:%Y-%m} and {n // BASELINE_SHARE} of {world.baseline:%Y-%m}, "
            f"every {REVIEWED_EVERY}th reviewed, {len(world.service_ids)} services, {len(REGIONS)} regions")
        seed_seconds = seed(world, n)
        recompute_once(world.baseline)  # the baseline month's own rows, as the periodic task leaves them
        peak_reset = reset_peak_rss()
        runs = []
        for k in range(RUNS):
            runs.append(recompute_once(world.month))
            log(f"recompute {k + 1}: {runs[-1].seconds:.2f} s, {runs[-1].queries} queries, {runs[-1].rows} rows")
        peak_mb = status_kib("VmHWM") * 1024 / MB
        checks = check(world, n)
    median = statistics.median(run.seconds for run in runs)
    passed = median <= TARGET_SECONDS and all(checks.values())
    print()
    print(f"{'metric':52} {'value':>10}  {'target':10} result")
    print(f"{'seeding (s)':52} {seed_seconds:10.1f}")
    print(f"{f'recompute of {n} results, median of {RUNS} (s)':52} {median:10.2f}  {'<= 30':10} "
          f"{'PASS' if passed else 'FAIL'}" + ("" if n >= 1_000_000 else " (target is for 1 M)"))
    print(f"{'SQL queries per recompute':52} {runs[-1].queries:10d}")
    print(f"{'peak RSS of the process (MB)':52} {peak_mb:10.1f}" + ("" if peak_reset else "  (since start)"))
    print_verdict(checks, started=wall, home=home, keep=args.keep)


if __name__ == "__main__":
    main()
