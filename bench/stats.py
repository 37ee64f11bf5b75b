"""Benchmark: statistics of a whole nation, the national dashboard's API calls and its page in Chromium.

What it starts: embedded PostgreSQL (pgserver) in a temporary directory and a migrated Django on it
(bench.harness.migrated_django; Celery on its in-memory broker, no worker), then the web tier as the tests
start it (gunicorn, 2 gthread workers x 4 threads, the application's database role, so row-level security
applies), and Debian's Chromium driven by Playwright.

What it does:

1. Seeds a nation: the 85 regions with their real time zones (most Europe/Moscow, the rest from
   Europe/Kaliningrad to Asia/Anadyr), ~1,600 medical organizations spread over them by population and
   unevenly within each (lognormal sizes; Moscow has the most), the reference AI services
   (`inference.demo.reference_services_load`, autonomous chest radiographs in half of Moscow's organizations
   and a few elsewhere), and 10 M studies (--quick: 200 k) completed over the last 365 days: fewer at
   weekends and on the New Year holidays, volume growing through the year, mostly in working hours local
   time, modalities DX 50 %, CT 20 %, CR 15 %, MG 15 %. Each study has one analysis: succeeded (~92 %),
   failed, not analysable, not routed (no service); processing time lognormal per modality with a tail;
   pathology flagged at the modality's rate, autonomous normals where the organization allows it; the last
   minutes' analyses still running. 5 % of the results are reviewed by a radiologist (hours later, 8 %
   disagreeing) and 0.6 % have a technological defect. Only what the statistics read is realistic; the
   other columns satisfy NOT NULL and unique constraints (a NOT NULL column the script does not know gets
   its model field's default). Rows are generated a day at a time with numpy and streamed with COPY
   (psycopg `cursor.copy`, one connection per table) as the pgserver superuser, which bypasses row-level
   security, with `session_replication_role = replica` (no triggers, so no per-row foreign-key checks).
   Every index but the primary keys is dropped for the load; the unique constraints and unique indexes are
   built again after it (so the data is checked against them); the other indexes (the archive's search
   indexes, the worklist's and monitoring's) are left out, as no statistic reads through them, unless
   --indexes (5-6 more minutes at 10 M). Then VACUUM ANALYZE and a CHECKPOINT. The server gets
   max_wal_size 8 GB and checkpoint_timeout 30 min for the load (kept for the run); nothing else is tuned
   (pgserver's defaults: shared_buffers 128 MB, work_mem 4 MB).
2. Fills the daily counts from the source rows with the real code, `medai.stats.rebuild.stats_rebuild`
   over the whole range (as the application's role, unscoped as the nightly task), and rolls them up with
   `medai.stats.rollups.rollups_advance(through=today - 2 days)`, as the nightly task does; each timed.
   Prints the time of each of their SQL statements (the COMMIT included: the rebuild's runs the deferred
   foreign-key checks of every row it wrote). Then VACUUM ANALYZE of the statistics tables (autovacuum's
   steady state). Prints the rows and size of each table, and checks the API's national totals against
   COUNT(*) over the source rows.
3. Times the calls of the national dashboard over HTTP (requests, one keep-alive session, a ministry
   analyst's API token), default window (the last 30 days: rolled-up days from the region or national
   sums plus the organization counts of the last two days): national totals, by region, by day, by
   modality, by service; national by month over 365 days; Moscow by organization. 5 warm-up rounds, then
   50 rounds, the calls interleaved in each; p50, p95, max per call. For a call whose p95 misses the
   target (or every call with --explain), the same table is built in-process and each SQL query is timed
   and its plan printed (EXPLAIN (ANALYZE, BUFFERS)).
4. Loads the national dashboard page (/dashboard/national) in headless Chromium, signed in through the
   local login form (/accounts/login/) as the ministry analyst: 2 warm-up loads, then 10, each until
   `networkidle`, read from the Navigation Timing entry: loadEventEnd (the target), responseStart (the
   server's time to first byte) and domContentLoadedEventEnd; then 3 loads in fresh contexts (empty cache,
   same session). If that page does not answer 200 (not written yet), the signed-in home page `/` is
   measured instead, and the run says so.

Targets: every API call p95 <= 200 ms; the page's load event p95 <= 1 s (both on the full 10 M run).

Run: .venv/bin/python bench/stats.py [--quick] [--keep] [--studies N] [--indexes] [--explain]
"""

import argparse
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "platform"))
sys.path.append(str(ROOT))

from bench.harness import (  # noqa: E402
    log,
    migrated_django,
    percentile,
    print_verdict,
    status_kib,
    superuser_url,
)
from medai.runtime import services  # noqa: E402

MB = 1_000_000
API_TARGET_MS = 200.0
PAGE_TARGET_MS = 1000.0
DAYS = 365
API_WARMUP, API_ROUNDS = 5, 50
PAGE_WARMUP, PAGE_LOADS, PAGE_COLD_LOADS = 2, 10, 3
SEED = 20240601
MINISTRY_USER, MINISTRY_PASSWORD = "bench-ministry", "bench-ministry-pass-1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
UID_ROOT = "1.2.643.5.1.13.13.12.2"

# The 85 regions: ISO 3166-2 code, name, time zone, population (thousands, rounded).
REGIONS = [
    ("RU-MOW", "Москва", "Europe/Moscow", 12600), ("RU-MOS", "Московская область", "Europe/Moscow", 7700),
    ("RU-SPE", "Санкт-Петербург", "Europe/Moscow", 5400), ("RU-KDA", "Краснодарский край", "Europe/Moscow", 5700),
    ("RU-SVE", "Свердловская область", "Asia/Yekaterinburg", 4300),
    ("RU-ROS", "Ростовская область", "Europe/Moscow", 4200),
    ("RU-BA", "Республика Башкортостан", "Asia/Yekaterinburg", 4000),
    ("RU-TA", "Республика Татарстан", "Europe/Moscow", 3900),
    ("RU-CHE", "Челябинская область", "Asia/Yekaterinburg", 3400),
    ("RU-NIZ", "Нижегородская область", "Europe/Moscow", 3200), ("RU-SAM", "Самарская область", "Europe/Samara", 3200),
    ("RU-DA", "Республика Дагестан", "Europe/Moscow", 3100), ("RU-KYA", "Красноярский край", "Asia/Krasnoyarsk", 2850),
    ("RU-STA", "Ставропольский край", "Europe/Moscow", 2800),
    ("RU-NVS", "Новосибирская область", "Asia/Novosibirsk", 2800),
    ("RU-KEM", "Кемеровская область — Кузбасс", "Asia/Novokuznetsk", 2600),
    ("RU-PER", "Пермский край", "Asia/Yekaterinburg", 2600),
    ("RU-VGG", "Волгоградская область", "Europe/Volgograd", 2500),
    ("RU-SAR", "Саратовская область", "Europe/Saratov", 2400), ("RU-IRK", "Иркутская область", "Asia/Irkutsk", 2370),
    ("RU-VOR", "Воронежская область", "Europe/Moscow", 2300), ("RU-ALT", "Алтайский край", "Asia/Barnaul", 2300),
    ("RU-ORE", "Оренбургская область", "Asia/Yekaterinburg", 1950),
    ("RU-PRI", "Приморский край", "Asia/Vladivostok", 1880), ("RU-OMS", "Омская область", "Asia/Omsk", 1900),
    ("RU-LEN", "Ленинградская область", "Europe/Moscow", 1900), ("RU-CR", "Республика Крым", "Europe/Simferopol", 1900),
    ("RU-TYU", "Тюменская область", "Asia/Yekaterinburg", 1550),
    ("RU-KHM", "Ханты-Мансийский автономный округ — Югра", "Asia/Yekaterinburg", 1700),
    ("RU-BEL", "Белгородская область", "Europe/Moscow", 1540), ("RU-CE", "Чеченская Республика", "Europe/Moscow", 1500),
    ("RU-UD", "Удмуртская Республика", "Europe/Samara", 1500), ("RU-TUL", "Тульская область", "Europe/Moscow", 1480),
    ("RU-VLA", "Владимирская область", "Europe/Moscow", 1350), ("RU-KHA", "Хабаровский край", "Asia/Vladivostok", 1300),
    ("RU-PNZ", "Пензенская область", "Europe/Moscow", 1290), ("RU-KIR", "Кировская область", "Europe/Kirov", 1250),
    ("RU-TVE", "Тверская область", "Europe/Moscow", 1250), ("RU-YAR", "Ярославская область", "Europe/Moscow", 1250),
    ("RU-ULY", "Ульяновская область", "Europe/Ulyanovsk", 1220),
    ("RU-CU", "Чувашская Республика", "Europe/Moscow", 1200), ("RU-BRY", "Брянская область", "Europe/Moscow", 1200),
    ("RU-VLG", "Вологодская область", "Europe/Moscow", 1150), ("RU-LIP", "Липецкая область", "Europe/Moscow", 1140),
    ("RU-KRS", "Курская область", "Europe/Moscow", 1100), ("RU-RYA", "Рязанская область", "Europe/Moscow", 1100),
    ("RU-ARK", "Архангельская область", "Europe/Moscow", 1090), ("RU-TOM", "Томская область", "Asia/Tomsk", 1070),
    ("RU-ZAB", "Забайкальский край", "Asia/Chita", 1050), ("RU-AST", "Астраханская область", "Europe/Astrakhan", 1000),
    ("RU-KLU", "Калужская область", "Europe/Moscow", 1000),
    ("RU-KGD", "Калининградская область", "Europe/Kaliningrad", 1000),
    ("RU-TAM", "Тамбовская область", "Europe/Moscow", 1000), ("RU-IVA", "Ивановская область", "Europe/Moscow", 990),
    ("RU-BU", "Республика Бурятия", "Asia/Irkutsk", 980), ("RU-SA", "Республика Саха (Якутия)", "Asia/Yakutsk", 980),
    ("RU-SMO", "Смоленская область", "Europe/Moscow", 920),
    ("RU-KB", "Кабардино-Балкарская Республика", "Europe/Moscow", 870),
    ("RU-KGN", "Курганская область", "Asia/Yekaterinburg", 820), ("RU-KO", "Республика Коми", "Europe/Moscow", 810),
    ("RU-AMU", "Амурская область", "Asia/Yakutsk", 780), ("RU-MO", "Республика Мордовия", "Europe/Moscow", 780),
    ("RU-MUR", "Мурманская область", "Europe/Moscow", 730), ("RU-ORL", "Орловская область", "Europe/Moscow", 720),
    ("RU-SE", "Республика Северная Осетия — Алания", "Europe/Moscow", 690),
    ("RU-ME", "Республика Марий Эл", "Europe/Moscow", 680), ("RU-KOS", "Костромская область", "Europe/Moscow", 630),
    ("RU-PSK", "Псковская область", "Europe/Moscow", 620), ("RU-KR", "Республика Карелия", "Europe/Moscow", 610),
    ("RU-NGR", "Новгородская область", "Europe/Moscow", 600),
    ("RU-YAN", "Ямало-Ненецкий автономный округ", "Asia/Yekaterinburg", 550),
    ("RU-SEV", "Севастополь", "Europe/Simferopol", 550), ("RU-KK", "Республика Хакасия", "Asia/Krasnoyarsk", 530),
    ("RU-IN", "Республика Ингушетия", "Europe/Moscow", 510), ("RU-AD", "Республика Адыгея", "Europe/Moscow", 500),
    ("RU-SAK", "Сахалинская область", "Asia/Sakhalin", 480),
    ("RU-KC", "Карачаево-Черкесская Республика", "Europe/Moscow", 470),
    ("RU-TY", "Республика Тыва", "Asia/Krasnoyarsk", 330), ("RU-KAM", "Камчатский край", "Asia/Kamchatka", 310),
    ("RU-KL", "Республика Калмыкия", "Europe/Moscow", 270), ("RU-AL", "Республика Алтай", "Asia/Barnaul", 220),
    ("RU-YEV", "Еврейская автономная область", "Asia/Vladivostok", 160),
    ("RU-MAG", "Магаданская область", "Asia/Magadan", 140), ("RU-CHU", "Чукотский автономный округ", "Asia/Anadyr", 50),
    ("RU-NEN", "Ненецкий автономный округ", "Europe/Moscow", 44),
]
CAPITAL = "RU-MOW"
ORGANIZATIONS = 1600
# Organizations and studies follow the population; Moscow has more of both (and its own AI programme).
ORGANIZATION_BOOST = {"RU-MOW": 1.8}
STUDY_BOOST = {"RU-MOW": 2.0, "RU-MOS": 1.3, "RU-SPE": 1.2}
MIN_ORGANIZATIONS = 3

MODALITIES = ["DX", "CR", "CT", "MG"]
MODALITY_SHARE = [0.50, 0.15, 0.20, 0.15]
SERVICE_OF_MODALITY = ["ref-chest-xray", "ref-chest-xray", "ref-chest-ct", "ref-mammography"]
PROCESSING_MEDIAN_S = np.array([18.0, 20.0, 140.0, 40.0])
PATHOLOGY_RATE = np.array([0.12, 0.12, 0.25, 0.07])
NOT_ANALYSABLE_RATE = np.array([0.03, 0.04, 0.06, 0.02])
NOT_ROUTED_RATE, FAILED_RATE = 0.02, 0.012
REVIEWED_SHARE, DISAGREEING_SHARE, DEFECT_SHARE = 0.05, 0.08, 0.006
WEEKDAY_WEIGHT = [1.0, 1.0, 1.0, 1.0, 0.95, 0.45, 0.25]
DEFECTS = [("sr_no_text", "major", "В DICOM SR нет текста проекта описания."),
           ("marking_outside_body", "critical", "Разметка вне исследуемой области тела: очаг 1."),
           ("sc_not_derived", "major", "Изображения SC не помечены как производные с нанесённой разметкой.")]


# --- The nation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nation:
    region_ids: np.ndarray  # per region
    region_offsets: np.ndarray  # seconds east of UTC, per region (no DST in Russia since 2014)
    region_codes: list[str]
    org_ids: np.ndarray  # per organization
    org_region: np.ndarray  # index into the regions
    org_weight: np.ndarray  # share of the nation's studies, sums to 1
    org_autonomous: np.ndarray  # bool: lets the chest radiograph service close normals
    service_ids: np.ndarray  # per modality (index into MODALITIES)
    autonomous_threshold: float | None


def allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """`total` split by weights, each at least `minimum` (largest remainders)."""
    raw = weights / weights.sum() * (total - minimum * len(weights))
    counts = np.floor(raw).astype(int)
    counts[np.argsort(counts - raw)[: total - minimum * len(weights) - counts.sum()]] += 1
    return counts + minimum


def check_time_zones() -> None:
    """Every time zone of REGIONS known to both Python and the server (the counts cut days in SQL)."""
    from django.db import connection

    zones = sorted({zone for _, _, zone, _ in REGIONS})
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_timezone_names WHERE name = ANY(%s)", [zones])
        known = {row[0] for row in cursor.fetchall()}
    missing = [zone for zone in zones if zone not in known]
    assert not missing, f"time zones unknown to PostgreSQL: {missing}"
    assert len(REGIONS) == 85 and len({code for code, *_ in REGIONS}) == 85, len(REGIONS)


def create_nation(rng: np.random.Generator) -> Nation:
    from django.utils import timezone

    from inference.demo import reference_services_load
    from inference.records import AIService
    from tenants.models import MedicalOrganization
    from tenants.services import region_ensure

    check_time_zones()
    now = timezone.now()
    regions = [region_ensure(code=code, name=name, time_zone=zone) for code, name, zone, _ in REGIONS]
    population = np.array([p for *_, p in REGIONS], dtype=float)
    boost = np.array([ORGANIZATION_BOOST.get(code, 1.0) for code, *_ in REGIONS])
    per_region = allocate(ORGANIZATIONS, population * boost, MIN_ORGANIZATIONS)
    organizations, org_region, org_weight = [], [], []
    for index, (region, count) in enumerate(zip(regions, per_region, strict=True)):
        # Sizes within a region: a few large hospitals, many small clinics.
        sizes = rng.lognormal(0, 0.9, count)
        share = population[index] * STUDY_BOOST.get(region.code, 1.0)
        for n in range(count):
            kind = "Городская клиническая больница" if n % 4 == 0 else "Городская поликлиника"
            organizations.append(MedicalOrganization(
                region=region, oms_code=f"{10 + index:02d}{n + 1:04d}", name=f"ГБУЗ «{kind} № {n + 1}» ({region.name})",
                status=MedicalOrganization.Status.ACTIVE, activated_at=now))
            org_region.append(index)
        org_weight.extend(share * sizes / sizes.sum())
    organizations = MedicalOrganization.objects.bulk_create(organizations)
    org_region = np.array(org_region)
    in_capital = org_region == [code for code, *_ in REGIONS].index(CAPITAL)
    org_autonomous = np.where(in_capital, rng.random(len(organizations)) < 0.5, rng.random(len(organizations)) < 0.05)
    autonomous = [org for org, allowed in zip(organizations, org_autonomous, strict=True) if allowed]
    started = time.perf_counter()
    loaded = {service.code: service for service in reference_services_load(autonomous_organizations=autonomous)}
    log(f"reference services loaded in {time.perf_counter() - started:.1f} s: {', '.join(loaded)}")
    chest = loaded["ref-chest-xray"]
    weight = np.array(org_weight)
    return Nation(
        region_ids=np.array([region.id for region in regions]),
        region_offsets=np.array([ZoneInfo(zone).utcoffset(now.replace(tzinfo=None)).total_seconds()
                                 for _, _, zone, _ in REGIONS], dtype=np.int64),
        region_codes=[region.code for region in regions],
        org_ids=np.array([org.id for org in organizations]), org_region=org_region, org_weight=weight / weight.sum(),
        org_autonomous=org_autonomous,
        service_ids=np.array([loaded[code].id for code in SERVICE_OF_MODALITY]),
        autonomous_threshold=chest.autonomous_threshold if chest.stage == AIService.Stage.AUTONOMOUS else None,
    )


# --- Rows, a day at a time -------------------------------------------------------------------------


def day_weights(days: list[dt.date], today_fraction: float) -> np.ndarray:
    """How the studies spread over the days: weekdays, New Year holidays, a year's growth, today so far."""
    weights = np.array([WEEKDAY_WEIGHT[day.weekday()] * (0.35 if day.month == 1 and day.day <= 8 else 1.0)
                        * (0.8 + 0.2 * k / max(1, len(days) - 1)) for k, day in enumerate(days)])
    weights[-1] *= today_fraction
    return weights / weights.sum()


# COPY text, built with lists and lookup tables: numpy's own string conversions are several times slower.
NULL = r"\N"
BOOL = ["f", "t"]


def with_nulls(values: list[str], null: np.ndarray | None) -> list[str]:
    if null is not None:
        for i in np.flatnonzero(null).tolist():
            values[i] = NULL
    return values


def texts(values: np.ndarray, null: np.ndarray | None = None, prefix: str = "") -> list[str]:
    """Integers as COPY text (optionally prefixed); NULL where `null`."""
    return with_nulls([prefix + str(v) for v in values.tolist()] if prefix else list(map(str, values.tolist())), null)


def bools(values: np.ndarray, null: np.ndarray | None = None) -> list[str]:
    return with_nulls([BOOL[v] for v in values.astype(np.int8).tolist()], null)


def dates(values: np.ndarray) -> list[str]:
    """datetime64[D] as ISO dates (a day's rows span a few dates: formatted once each)."""
    days = values.astype(np.int64)
    first = int(days.min())
    names = np.datetime_as_string(np.arange(first, int(days.max()) + 1).astype("datetime64[D]")).tolist()
    return [names[d] for d in (days - first).tolist()]


MINUTE_SECOND = [f"{minute:02d}:{sec:02d}" for minute in range(60) for sec in range(60)]


def stamps(values: np.ndarray, null: np.ndarray | None = None) -> list[str]:
    """datetime64 (UTC; the seeding sessions run in UTC) as COPY text, to the second: each hour's
    "YYYY-MM-DD HH:" formatted once, then "MM:SS" from a table."""
    if not len(values):
        return []
    seconds = values.astype("datetime64[s]").astype(np.int64)
    hours = seconds // 3600
    first = int(hours.min())
    names = [name.replace("T", " ") + ":" for name in
             np.datetime_as_string(np.arange(first, int(hours.max()) + 1).astype("datetime64[h]")).tolist()]
    return with_nulls([names[h] + MINUTE_SECOND[sec] for h, sec in
                       zip((hours - first).tolist(), (seconds - hours * 3600).tolist(), strict=True)], null)


@dataclass
class Ids:
    study: int
    analysis: int
    review: int
    defect: int


def day_rows(nation: Nation, day: dt.date, count: int, now: np.datetime64, ids: Ids, rng: np.random.Generator,
             patients: int) -> dict[str, dict]:
    """The studies completed on one local day (in each region's time zone), with their analyses, reviews
    and defects; as COPY columns (lists of text, or one text for every row). Advances `ids`."""
    org = rng.choice(len(nation.org_ids), size=count, p=nation.org_weight)
    region = nation.org_region[org]
    midnight = np.datetime64(day, "ms") - (nation.region_offsets[region] * 1000).astype("timedelta64[ms]")
    # Mostly working hours, some round the clock (emergencies); today only up to now.
    seconds = np.where(rng.random(count) < 0.85, np.clip(rng.normal(13 * 3600, 3 * 3600, count), 7 * 3600, 21 * 3600),
                       rng.random(count) * 86400)
    elapsed = ((now - midnight) / np.timedelta64(1, "s")).astype(float)
    seconds = np.where(elapsed < 86400, rng.random(count) * np.clip(elapsed, 60, 86400), seconds)
    at = np.minimum(midnight + (seconds * 1000).astype("timedelta64[ms]"), now - np.timedelta64(60, "s"))
    order = np.argsort(at, kind="stable")
    org, region, at = org[order], region[order], at[order]
    modality = rng.choice(len(MODALITIES), size=count, p=MODALITY_SHARE)
    study_id = np.arange(ids.study, ids.study + count)
    analysis_id = np.arange(ids.analysis, ids.analysis + count)
    ids.study += count
    ids.analysis += count
    local_day = (at + (nation.region_offsets[region] * 1000).astype("timedelta64[ms]")).astype("datetime64[D]")
    org_ids, region_ids = nation.org_ids[org], nation.region_ids[region]
    ct, mg = modality == 2, modality == 3
    instances = np.where(ct, rng.integers(150, 600, count), np.where(mg, 4, rng.integers(1, 3, count)))

    studies = {
        "id": texts(study_id), "organization_id": texts(org_ids), "region_id": texts(region_ids),
        "study_instance_uid": texts(study_id, prefix=f"{UID_ROOT}."),
        "patient_id": texts(study_id * 7919 % patients, prefix="P"), "accession_number": texts(study_id, prefix="A"),
        "study_date": dates(local_day),
        "modalities": np.array(["{DX}", "{CR}", "{CT}", "{MG}"])[modality].tolist(),
        "number_of_series": texts(np.where(ct, 3, 1)), "number_of_instances": texts(instances),
        "size_bytes": texts(instances * np.where(ct, 525_000, np.where(mg, 40_000_000, 8_000_000))),
        "status": "complete", "received_at": stamps(at - np.timedelta64(90, "s")),
        "last_received_at": stamps(at - np.timedelta64(60, "s")), "completed_at": stamps(at),
    }

    # Analyses: one per study, made when routing ran (seconds after completion).
    u = rng.random(count)
    not_routed = u < NOT_ROUTED_RATE
    not_analysable = ~not_routed & (u < NOT_ROUTED_RATE + NOT_ANALYSABLE_RATE[modality])
    failed = ~not_routed & ~not_analysable & (u < NOT_ROUTED_RATE + NOT_ANALYSABLE_RATE[modality] + FAILED_RATE)
    created = at + (rng.uniform(1, 5, count) * 1000).astype("timedelta64[ms]")
    tail = np.where(rng.random(count) < 0.01, rng.uniform(5, 60, count), 1.0)  # queues now and then
    processing = PROCESSING_MEDIAN_S[modality] * rng.lognormal(0, 0.45, count) * tail
    processing = np.select([not_routed, not_analysable, failed], [0.0, rng.uniform(1, 8, count),
                                                                   rng.uniform(60, 900, count)], processing)
    finished = created + (processing * 1000).astype("timedelta64[ms]")
    running = finished > now  # the last minutes' analyses are not done yet
    succeeded = ~(not_routed | not_analysable | failed | running)
    status = np.select([not_routed, running, not_analysable, failed],
                       ["not_routed", "running", "not_analysable", "failed"], "succeeded")
    pathology = succeeded & (rng.random(count) < PATHOLOGY_RATE[modality])
    probability = np.where(pathology, 0.5 + 0.5 * rng.beta(2, 1.5, count), 0.5 * rng.beta(1.2, 4, count))
    chest = modality <= 1
    autonomous = np.zeros(count, dtype=bool)
    if nation.autonomous_threshold is not None:
        autonomous = (succeeded & chest & ~pathology & nation.org_autonomous[org]
                      & (probability < nation.autonomous_threshold))
    reason = np.select([not_analysable, failed], ["Исследование не прошло входной контроль: нет нужной проекции.",
                                                  "Сервис ИИ не ответил за отведённое время."], "")
    analyses = {
        "id": texts(analysis_id), "organization_id": studies["organization_id"], "region_id": studies["region_id"],
        "study_id": studies["id"], "service_id": texts(nation.service_ids[modality], not_routed),
        "status": status.tolist(), "reason": reason.tolist(),
        "reason_code": np.select([not_analysable, failed], ["audit_view", "timeout"], "").tolist(),
        "attempt": texts(np.where(not_routed, 0, np.where(failed, 3, 1))),
        "probability": with_nulls([f"{p:.4f}" for p in probability.tolist()], ~succeeded),
        "pathology": bools(pathology, ~succeeded), "autonomous": bools(autonomous),
        "model_version": np.where(not_routed, "", "1.0").tolist(),
        "originals_verified": with_nulls(["t"] * count, ~succeeded),
        "created_at": stamps(created), "dispatched_at": stamps(created + np.timedelta64(500, "ms"), not_routed),
        "started_at": stamps(created + np.timedelta64(1000, "ms"), not_routed),
        "finished_at": stamps(finished, running),
        "deadline_at": stamps(created + np.timedelta64(900, "s"), not_routed),
    }

    # Reviews: a share of the results, read by a radiologist hours later; a few disagree.
    reviewed_at = finished + (rng.lognormal(math.log(6 * 3600), 0.8, count) * 1000).astype("timedelta64[ms]")
    reviewed = succeeded & (rng.random(count) < REVIEWED_SHARE) & (reviewed_at < now)
    agrees = rng.random(count) >= DISAGREEING_SHARE
    significance = np.where(agrees, "none", np.where(rng.random(count) < 0.7, "minor", "significant"))
    k = int(reviewed.sum())
    reviews = {
        "id": texts(np.arange(ids.review, ids.review + k)), "organization_id": texts(org_ids[reviewed]),
        "region_id": texts(region_ids[reviewed]), "analysis_id": texts(analysis_id[reviewed]),
        "service_id": texts(nation.service_ids[modality][reviewed]),
        "reviewer": texts((org_ids * 10 + analysis_id % 5)[reviewed], prefix="radiologist-"),
        "agrees": bools(agrees[reviewed]), "true_pathology": bools((pathology == agrees)[reviewed]),
        "significance": significance[reviewed].tolist(), "reviewed_at": stamps(reviewed_at[reviewed]),
    }
    ids.review += k

    # Technological defects: a few results break a requirement (found right after the result).
    defective = succeeded & (rng.random(count) < DEFECT_SHARE)
    kind = rng.integers(0, len(DEFECTS), count)[defective]
    k = int(defective.sum())
    defects = {
        "id": texts(np.arange(ids.defect, ids.defect + k)), "organization_id": texts(org_ids[defective]),
        "region_id": texts(region_ids[defective]), "analysis_id": texts(analysis_id[defective]),
        "service_id": texts(nation.service_ids[modality][defective]),
        "requirement": [DEFECTS[i][0] for i in kind], "severity": [DEFECTS[i][1] for i in kind],
        "detail": [DEFECTS[i][2] for i in kind], "found_at": stamps(finished[defective] + np.timedelta64(1, "s")),
    }
    ids.defect += k
    return {"archive_study": studies, "inference_analysis": analyses, "inference_review": reviews,
            "inference_defect": defects}


# --- COPY ------------------------------------------------------------------------------------------


def copy_text(value) -> str:
    """A constant in COPY's text format."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if hasattr(value, "obj"):  # psycopg's Json/Jsonb wrapper
        value = json.dumps(value.obj)
    elif isinstance(value, list | tuple):
        value = "{" + ",".join(str(item) for item in value) + "}"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


class CopyTable:
    """One table's COPY on its own connection: the columns `day_rows` gives, plus the model's default for
    every other NOT NULL column (so a new field does not break the benchmark)."""

    def __init__(self, stack: contextlib.ExitStack, url: str, model, columns: list[str]):
        import psycopg
        from django.db import connection

        self.table = model._meta.db_table
        self.columns = list(columns)
        self.constants = []
        for field in model._meta.concrete_fields:
            if field.column in columns or field.null or field.primary_key:
                continue
            default = field.get_default()
            assert default is not None, f"{self.table}.{field.column}: NOT NULL without a default; add it to the seed"
            self.columns.append(field.column)
            self.constants.append(copy_text(field.get_db_prep_save(default, connection)))
        self.suffix = "".join("\t" + text for text in self.constants)
        conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        for setting in ("SET synchronous_commit = off", "SET session_replication_role = replica",
                        "SET TIME ZONE 'UTC'"):
            conn.execute(setting)
        stack.enter_context(conn.transaction())
        self.copy = stack.enter_context(conn.cursor().copy(f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN"))
        self.rows = 0

    def write(self, values: dict) -> None:
        given = [values[column] for column in self.columns[: len(self.columns) - len(self.constants)]]
        count = next(len(v) for v in given if isinstance(v, list))
        if not count:
            return
        columns = [v if isinstance(v, list) else itertools.repeat(v) for v in given]
        suffix = self.suffix + "\n"
        self.copy.write("".join(line + suffix for line in map("\t".join, zip(*columns, strict=False))))
        self.rows += count


@dataclass(frozen=True)
class LoadIndex:
    """An index of a seeded table other than its primary key, dropped for the load."""

    name: str
    unique: bool  # backs a unique constraint, or is a unique index: always rebuilt
    drop: str
    restore: str


def load_indexes(cursor, table: str) -> list[LoadIndex]:
    rows = cursor.execute("""
        SELECT i.indexrelid::regclass::text, i.indisunique, c.conname, pg_get_indexdef(i.indexrelid),
               pg_get_constraintdef(c.oid)
        FROM pg_index i LEFT JOIN pg_constraint c
            ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('u', 'x')
        WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
    """, [table]).fetchall()
    return [LoadIndex(name, unique, f"ALTER TABLE {table} DROP CONSTRAINT {constraint}",
                      f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {definition}") if constraint else
            LoadIndex(name, unique, f"DROP INDEX {name}", index_definition)
            for name, unique, constraint, index_definition, definition in rows]


def seed(nation: Nation, n: int, rng: np.random.Generator, *, all_indexes: bool) -> tuple[dict[str, float], dt.date]:
    """n studies with their rows over the last DAYS days; returns the seconds of each step and the first day."""
    import psycopg
    from django.utils import timezone

    from inference.quality.records import Defect, Review
    from inference.records import Analysis
    from medai.archive.models import Study

    url = superuser_url(os.environ["DATABASE_URL"])
    now_utc = timezone.now()
    now = np.datetime64(now_utc.replace(tzinfo=None), "ms")
    moscow = now_utc.astimezone(ZoneInfo("Europe/Moscow"))
    today = moscow.date()
    days = [today - dt.timedelta(days=k) for k in range(DAYS - 1, -1, -1)]
    fraction = (moscow - moscow.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 86400
    per_day = rng.multinomial(n, day_weights(days, max(fraction, 0.01)))
    models = {"archive_study": Study, "inference_analysis": Analysis, "inference_review": Review,
              "inference_defect": Defect}
    steps = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
        conn.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
        conn.execute("SELECT pg_reload_conf()")
        first = {table: conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0] for table in models}
        dropped = [index for table in models for index in load_indexes(conn.cursor(), table)]
        for index in dropped:
            conn.execute(index.drop)
    ids = Ids(first["archive_study"], first["inference_analysis"], first["inference_review"], first["inference_defect"])
    started = time.perf_counter()
    sample = day_rows(nation, today, 1, now - np.timedelta64(1, "D"), Ids(0, 0, 0, 0), np.random.default_rng(0),
                      patients=1)
    with contextlib.ExitStack() as stack:
        tables = {table: CopyTable(stack, url, models[table], list(sample[table])) for table in models}
        for k, (day, count) in enumerate(zip(days, per_day, strict=True)):
            rows = day_rows(nation, day, int(count), now, ids, rng, patients=max(1, n * 7 // 10))
            for table, values in rows.items():
                tables[table].write(values)
            if k % 30 == 29 or k == len(days) - 1:
                log(f"  {day}: {ids.study - first['archive_study']} studies written "
                    f"({time.perf_counter() - started:.0f} s, RSS {status_kib('VmRSS') / 1024:.0f} MiB)")
        log("  committing")
    steps["COPY (rows generated and written)"] = time.perf_counter() - started
    written = {table: table_copy.rows for table, table_copy in tables.items()}
    log("copied " + ", ".join(f"{table} {rows}" for table, rows in written.items()))

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for table in models:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        unique = [index for index in dropped if index.unique]
        for index in unique:
            conn.execute(index.restore)
        steps[f"unique constraints and indexes rebuilt ({len(unique)})"] = time.perf_counter() - started
        log(f"{len(unique)} unique constraints and indexes rebuilt in {steps[next(reversed(steps))]:.1f} s")
        others = [index for index in dropped if not index.unique]
        if all_indexes:
            started = time.perf_counter()
            for index in others:
                conn.execute(index.restore)
            steps[f"other indexes rebuilt ({len(others)})"] = time.perf_counter() - started
            log(f"{len(others)} other indexes rebuilt in {steps[next(reversed(steps))]:.1f} s")
        else:
            log(f"{len(others)} indexes that no statistic reads through are left out (--indexes builds them): "
                + ", ".join(index.name for index in others))
        log("VACUUM ANALYZE")
        started = time.perf_counter()
        for table in [*models, "tenants_region", "tenants_medicalorganization", "inference_aiservice"]:
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("CHECKPOINT")
        steps["VACUUM ANALYZE, CHECKPOINT"] = time.perf_counter() - started
    return steps, days[0]


# --- Counts and rollups ----------------------------------------------------------------------------


def counts_and_rollups(first_day: dt.date) -> dict[str, float]:
    """stats_rebuild over the whole range, then rollups_advance, as the application runs them; each timed,
    with the time of each of their SQL statements, COMMIT included."""
    import psycopg
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from medai.stats.counts import ALL_STATS
    from medai.stats.rebuild import stats_rebuild
    from medai.stats.rollups import FINAL_AFTER_DAYS, rollups_advance

    today = timezone.localdate()
    last_day = today + dt.timedelta(days=1)  # a region east of UTC may already be on tomorrow
    log(f"rebuilding the daily counts of {first_day}..{last_day} from the source rows (stats_rebuild)")
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        rows = stats_rebuild(date_from=first_day - dt.timedelta(days=1), date_to=last_day)
        rebuild = time.perf_counter() - started
    statements = [(q["sql"], float(q["time"])) for q in captured.captured_queries]
    fills = iter(stat.name for stat in ALL_STATS)
    parts = [(next(fills) if "INSERT INTO stats_dailycount" in sql else sql.split()[0], seconds)
             for sql, seconds in statements]
    log(f"rebuild: {rebuild:.1f} s, {rows} daily count rows; statements: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts if seconds >= 0.05)
        + f" (COMMIT: deferred foreign-key checks of each row); outside SQL {rebuild - sum(t for _, t in parts):.1f} s")
    through = today - dt.timedelta(days=FINAL_AFTER_DAYS)
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        region_rows = rollups_advance(through=through)
        rollup = time.perf_counter() - started
    statements = [(" ".join(q["sql"].split()[:3]), float(q["time"])) for q in captured.captured_queries]
    log(f"rollup through {through}: {rollup:.1f} s, {region_rows} region rows; statements: "
        + ", ".join(f"{sql} {seconds:.1f} s" for sql, seconds in statements if seconds >= 0.05)
        + f"; outside SQL {rollup - sum(t for _, t in statements):.1f} s")
    started = time.perf_counter()
    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"]), autocommit=True) as conn:
        for table in ("stats_dailycount", "stats_regiondailycount", "stats_nationaldailycount", "stats_rollupstate"):
            conn.execute(f"VACUUM ANALYZE {table}")
    return {"rebuild": rebuild, "rollup": rollup, "vacuum": time.perf_counter() - started}


TABLES = ["archive_study", "inference_analysis", "inference_review", "inference_defect", "stats_dailycount",
          "stats_regiondailycount", "stats_nationaldailycount"]


def table_sizes() -> dict[str, tuple[int, int]]:
    """Rows (exact) and total size with indexes, per table."""
    import psycopg

    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"])) as conn:
        return {table: (conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0],
                        conn.execute("SELECT pg_total_relation_size(%s::regclass)", [table]).fetchone()[0])
                for table in TABLES}


def source_totals(date_from: dt.date, date_to: dt.date) -> dict[str, int]:
    """studies_received and analysed of the nation for a window, straight from the source rows."""
    import psycopg

    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"])) as conn:
        studies = conn.execute(
            "SELECT count(*) FROM archive_study s JOIN tenants_region r ON r.id = s.region_id WHERE s.status = "
            "'complete' AND (s.completed_at AT TIME ZONE r.time_zone)::date BETWEEN %s AND %s",
            [date_from, date_to]).fetchone()[0]
        analysed = conn.execute(
            "SELECT count(*) FROM inference_analysis a JOIN tenants_region r ON r.id = a.region_id WHERE a.status = "
            "'succeeded' AND NOT a.shadow AND a.service_id IS NOT NULL AND "
            "(a.finished_at AT TIME ZONE r.time_zone)::date BETWEEN %s AND %s", [date_from, date_to]).fetchone()[0]
    return {"studies_received": studies, "analysed": analysed}


# --- The API -------------------------------------------------------------------------------------


def ministry_token() -> str:
    from medai.accounts.models import Role
    from medai.accounts.services import api_token_create, user_ensure

    user = user_ensure(username=MINISTRY_USER, role=Role.MINISTRY_ANALYST, password=MINISTRY_PASSWORD)
    return api_token_create(user=user, name="bench")


def start_web(home: Path) -> services.RunningService:
    """gunicorn as tests/conftest.py's web_server_factory starts it, on the bench database (app role)."""
    port = services.free_port()
    log_file = open(home / "gunicorn.log", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "medai.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4", "--worker-class", "gthread", "--timeout", "300",
         "--chdir", str(ROOT / "platform")],
        env=dict(os.environ), stdout=log_file, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    services.wait_until(lambda: services.http_ok(url + "/healthz"), timeout=60, what="gunicorn", process=process)
    return services.RunningService("web", url, stop=lambda: services.terminate(process), process=process)


def api_calls(today: dt.date) -> dict[str, dict]:
    year = {"date_from": (today - dt.timedelta(days=DAYS)).isoformat(), "date_to": today.isoformat()}
    return {
        "national totals (30 d)": {"level": "national"},
        "national by region (30 d)": {"level": "national", "group_by": "region"},
        "national by day (30 d)": {"level": "national", "group_by": "day"},
        "national by modality (30 d)": {"level": "national", "group_by": "modality"},
        "national by service (30 d)": {"level": "national", "group_by": "service"},
        "national by month (365 d)": {"level": "national", "group_by": "month", **year},
        f"{CAPITAL} by organization (30 d)": {"level": "region", "region": CAPITAL, "group_by": "organization"},
    }


def bench_api(base_url: str, token: str, calls: dict[str, dict]) -> dict[str, dict]:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    samples = {name: [] for name in calls}
    answers = {}
    log(f"API: {API_WARMUP} warm-up rounds, then {API_ROUNDS} rounds of {len(calls)} calls, interleaved")
    for round_ in range(API_WARMUP + API_ROUNDS):
        for name, params in calls.items():
            started = time.perf_counter()
            response = session.get(base_url + "/api/v1/stats", params=params, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (name, response.status_code, response.text[:300])
            if round_ >= API_WARMUP:
                samples[name].append(elapsed)
            else:
                answers[name] = response.json()
    results = {}
    for name, values in samples.items():
        result = {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values),
                  "rows": len(answers[name]["rows"]), "bytes": len(json.dumps(answers[name]))}
        results[name] = result
        log(f"  {name:38} p50 {result['p50']:7.1f} ms  p95 {result['p95']:7.1f} ms  max {result['max']:7.1f} ms  "
            f"{result['rows']} rows  {'PASS' if result['p95'] <= API_TARGET_MS else 'FAIL'}")
    results["_answers"] = answers
    return results


def explain_call(name: str, params: dict) -> None:
    """The call's table built in-process (national scope, as the ministry's request): the time of each
    SQL query, and the plan of each (EXPLAIN (ANALYZE, BUFFERS))."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from medai.stats.selectors import STATS, Slice, grouping_by_hash, small_cell, stats_table
    from medai.stats.serializers import StatsQuerySerializer
    from tenants.models import Region
    from tenants.scope import dangerously_unscoped

    query = StatsQuerySerializer(data={k: v for k, v in params.items() if k != "group_by"}
                                 | {"group_by": [params["group_by"]] if "group_by" in params else []})
    query.is_valid(raise_exception=True)
    data = query.validated_data
    part = Slice("national") if data["level"] == "national" else Slice(
        "region", region=Region.objects.get(code=data["region"]))
    with dangerously_unscoped(), CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        stats_table(part=part, date_from=data["date_from"], date_to=data["date_to"], group_by=data["group_by"],
                    stats=list(STATS) if not params.get("stats") else data["stats"], suppress_below=small_cell())
        total = (time.perf_counter() - started) * 1000
    sql_ms = sum(float(q["time"]) for q in captured.captured_queries) * 1000
    log(f"  {name}: in-process {total:.1f} ms, of it SQL {sql_ms:.1f} ms in {len(captured)} queries")
    for q in captured.captured_queries:
        log(f"    {float(q['time']) * 1000:7.1f} ms  {q['sql'][:160]}")
        if not q["sql"].lstrip().upper().startswith("SELECT") or "set_config" in q["sql"]:
            continue
        with dangerously_unscoped(), grouping_by_hash(), connection.cursor() as cursor:  # as the read ran
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + q["sql"])
            for (line,) in cursor.fetchall():
                log(f"        {line}")


# --- The page in Chromium --------------------------------------------------------------------------

NAVIGATION = "JSON.stringify(performance.getEntriesByType('navigation')[0])"


def bench_page(base_url: str) -> dict:
    import requests
    from playwright.sync_api import sync_playwright

    path = "/dashboard/national"
    with requests.Session() as probe:  # is the dashboard there yet? (signed in the same way)
        login = probe.get(base_url + "/accounts/login/", timeout=30)
        probe.post(login.url, data={"username": MINISTRY_USER, "password": MINISTRY_PASSWORD,
                                    "csrfmiddlewaretoken": probe.cookies.get("csrftoken", "")},
                   headers={"Referer": login.url}, timeout=30)
        status = probe.get(base_url + path, timeout=60, allow_redirects=False).status_code
    fallback = status != 200
    if fallback:
        log(f"FALLBACK: {path} answers {status} after sign-in (the page is not there yet); measuring / instead")
        path = "/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        page.goto(base_url + "/accounts/login/?next=" + path)
        page.fill("input[name=username]", MINISTRY_USER)
        page.fill("input[name=password]", MINISTRY_PASSWORD)
        with page.expect_navigation():
            page.press("input[name=password]", "Enter")
        assert "/accounts/login" not in page.url, f"sign-in failed: {page.url}"
        log(f"page: signed in as {MINISTRY_USER} in Chromium; {PAGE_WARMUP} warm-up loads of {path}, then "
            f"{PAGE_LOADS}, then {PAGE_COLD_LOADS} with an empty cache")

        def load(tab) -> dict:
            started = time.perf_counter()
            response = tab.goto(base_url + path, wait_until="networkidle")
            wall = (time.perf_counter() - started) * 1000
            assert response is not None and response.status == 200, (path, response and response.status)
            entry = json.loads(tab.evaluate(NAVIGATION))
            return {"load": entry["loadEventEnd"], "ttfb": entry["responseStart"],
                    "dcl": entry["domContentLoadedEventEnd"], "duration": entry["duration"], "networkidle": wall,
                    "bytes": entry.get("transferSize", 0)}

        for _ in range(PAGE_WARMUP):
            load(page)
        warm = [load(page) for _ in range(PAGE_LOADS)]
        cold = []
        for _ in range(PAGE_COLD_LOADS):
            fresh = browser.new_context(storage_state=context.storage_state())
            cold.append(load(fresh.new_page()))
            fresh.close()
        title = page.title()
        browser.close()
    result = {"path": path, "fallback": fallback, "title": title}
    for key in ("load", "ttfb", "dcl", "duration", "networkidle"):
        values = [sample[key] for sample in warm]
        result[key] = {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values)}
    result["cold_load"] = {"p50": percentile([s["load"] for s in cold], 0.5), "max": max(s["load"] for s in cold)}
    log(f"  {path} ({title!r}): load event p50 {result['load']['p50']:.0f} ms, p95 {result['load']['p95']:.0f} ms; "
        f"first byte p50 {result['ttfb']['p50']:.0f} ms; DOMContentLoaded p50 {result['dcl']['p50']:.0f} ms; "
        f"networkidle (incl. its 500 ms quiet) p50 {result['networkidle']['p50']:.0f} ms; empty cache: load p50 "
        f"{result['cold_load']['p50']:.0f} ms")
    return result


# --- Output ----------------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, float, str, bool | None]]) -> None:
    print()
    print(f"{'metric':58} {'value':>12}  {'target':10} result")
    for metric, value, target, passed in rows:
        shown = f"{value:12,.0f}" if metric.startswith("rows:") else f"{value:12.1f}"
        print(f"{metric:58} {shown}  {target:10} {'' if passed is None else 'PASS' if passed else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 k studies, a smoke run")
    parser.add_argument("--studies", type=int, help="studies to seed (default 10 M, --quick 200 k)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    parser.add_argument("--indexes", action="store_true",
                        help="also build the source tables' indexes that statistics never use (5-6 min at 10 M)")
    parser.add_argument("--explain", action="store_true",
                        help="print the SQL plans of every API call, not only the slow ones")
    args = parser.parse_args()
    n = args.studies or (200_000 if args.quick else 10_000_000)
    full = n >= 10_000_000
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs, harmless
    wall = time.perf_counter()
    rng = np.random.default_rng(SEED)
    with migrated_django("medai-bench-stats-", keep=args.keep) as home:
        from django.utils import timezone

        started = time.perf_counter()
        nation = create_nation(rng)
        tenants_seconds = time.perf_counter() - started
        log(f"{len(nation.region_ids)} regions, {len(nation.org_ids)} organizations "
            f"({int((nation.org_region == 0).sum())} in {CAPITAL}), {int(nation.org_autonomous.sum())} with autonomous "
            f"AI; seeding {n} studies over {DAYS} days")
        steps, first_day = seed(nation, n, rng, all_indexes=args.indexes)
        seed_seconds = sum(steps.values())
        log(f"seeded in {seed_seconds:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
            + f"); peak RSS of this process {status_kib('VmHWM') / 1024:.0f} MiB")
        timings = counts_and_rollups(first_day)
        sizes = table_sizes()
        for table, (rows, size) in sizes.items():
            log(f"  {table:28} {rows:>12,} rows  {size / MB:9.0f} MB")

        token = ministry_token()
        today = timezone.localdate()
        calls = api_calls(today)
        web = start_web(home)
        try:
            api = bench_api(web.url, token, calls)
            answers = api.pop("_answers")
            window = answers["national totals (30 d)"]
            truth = source_totals(dt.date.fromisoformat(window["date_from"]), dt.date.fromisoformat(window["date_to"]))
            api_rows = window["rows"][0] if window["rows"] else {}
            checks = {f"API national {stat} (30 d) equals the source rows' count": api_rows.get(stat) == value
                      for stat, value in truth.items()}
            for check, ok in checks.items():
                log(f"check: {check}: {'yes' if ok else 'NO'} ({api_rows.get(check.split()[2])} vs "
                    f"{truth[check.split()[2]]})")
            slow = [name for name, result in api.items() if args.explain or result["p95"] > API_TARGET_MS]
            if slow:
                log("in-process timings and plans of " + ("every call" if args.explain else "the calls over target:"))
                for name in slow:
                    explain_call(name, calls[name])
            page = bench_page(web.url)
        finally:
            web.stop()

    rows: list[tuple[str, float, str, bool | None]] = [
        ("tenants and reference services (s)", tenants_seconds, "", None),
        (f"seeding {n} studies, total (s)", seed_seconds, "", None),
        *((f"  {step} (s)", seconds, "", None) for step, seconds in steps.items()),
        ("stats_rebuild over the whole range (s)", timings["rebuild"], "", None),
        ("rollups_advance to today - 2 days (s)", timings["rollup"], "", None),
        *((f"rows: {table}", float(rows_), "", None) for table, (rows_, _) in sizes.items()),
    ]
    for name, result in api.items():
        rows += [(f"API {name} p50 (ms)", result["p50"], "", None),
                 (f"API {name} p95 (ms)", result["p95"], f"<= {API_TARGET_MS:.0f}",
                  result["p95"] <= API_TARGET_MS if full else None)]
    label = "page " + page["path"] + (" (FALLBACK)" if page["fallback"] else "")
    rows += [(f"{label} load event p50 (ms)", page["load"]["p50"], "", None),
             (f"{label} load event p95 (ms)", page["load"]["p95"], f"<= {PAGE_TARGET_MS:.0f}",
              page["load"]["p95"] <= PAGE_TARGET_MS if full and not page["fallback"] else None),
             (f"{label} first byte p50 (ms)", page["ttfb"]["p50"], "", None),
             (f"{label} load event, empty cache, p50 (ms)", page["cold_load"]["p50"], "", None)]
    print_table(rows)
    if not full:
        print(f"\n{n} studies: the targets apply to the full run (10 M) only.")
    print_verdict(checks, started=wall, home=home, keep=args.keep)


if __name__ == "__main__":
    main()
