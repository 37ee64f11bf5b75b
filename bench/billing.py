"""Benchmark: OMS billing, the export of a million billable services and what billing adds to an analysis.

What it starts: embedded PostgreSQL (pgserver) in a temporary directory, objects as local files under it.
Celery gets its in-memory broker (`memory://`, no worker): the build task an export request queues on
commit goes nowhere, and the benchmark runs that task's body, `billing.exports.register_export_build`,
itself, in a child process of its own per format, so that the child's peak RSS is the export's.

What it does:

1. Seeds one region (OKATO 45000000000, Europe/Moscow), one organization, the demo tariffs and the
   reference AI services, then 1 M billable services (--quick: 50 k) of that organization in last
   month's billing period: a study (Cyrillic patient name with sex and birth date), a succeeded analysis
   and a charge each (chest radiographs at 150.00, every third a mammography at 239.00), written by
   INSERT ... SELECT generate_series as the pgserver superuser (it bypasses row-level security). The load
   runs with `session_replication_role = replica`, i.e. without triggers: neither the foreign-key checks
   nor the ledger's append-only trigger run per row (the period is open while it loads, so that trigger
   would have let every row in). Indexes that back no constraint are dropped for the load and built
   after it. Then VACUUM ANALYZE, and the period is closed with `billing.services.period_close`.
2. The cost of billing per analysis, first, on the quiet database: 300 (--quick: 50) studies with an
   instance whose metadata carries the ENP in OtherPatientIDsSequence, and a succeeded chest-radiograph
   analysis each, finished now; each is locked as `inference.services.analysis_lock_for_result` does
   and billed with `billing.services.analysis_bill` inside `organization_scope`, against the ledger of
   step 1. p50, p95 and mean of the call alone (5 warm-up calls first; the first opens this month's
   period), its SQL queries (counted with CaptureQueriesContext on the last warm-up call, listed, and
   timed in the client), and the same for a repeated, already billed call. The call includes what the
   charge adds to the daily statistics (`billing_analysis_charge`, billing migration 0003, counts it): one
   statement in all, a PL/pgSQL function whose plans the session keeps, as planning each statement anew
   (row-level security included) cost more than running it.
3. Exports the organization's register of that period in each format (XML package, CSV, XLSX):
   `register_export_request` in the organization's scope, then `register_export_build` in a child
   process (`--export-child`, Django set up before the clock starts). Prints seconds, the child's
   peak RSS (VmHWM) and its RSS before the build (Django and the apps imported), file size and
   services/s. Checks that each export is ready (for XML: the build validated the package against the
   XSDs), that its count and total equal COUNT and SUM(amount) in SQL, and that the period became
   *exported* after the XML one.
4. With --profile, where the XML export's time and memory go, in one more child: the header's query,
   the register's rows fetched alone, then also turned into lines (`register_lines`), then also
   formatted and encoded (`_write_records` into a sink), then written as the package
   (`write_xml_package`: also deflated), the package validated (`validate_xml_package`) and hashed;
   each timed, with its own peak RSS, and the differences printed as the cost of each stage. Also
   the register query's plan.

Targets: XML export of 1 M services <= 60 s and <= 200 MB peak RSS (the worker process's, Django included);
analysis_bill <= 2 ms at p95.
MB is 10^6 bytes throughout.

Run: .venv/bin/python bench/billing.py [--quick] [--keep] [--profile]
"""

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "platform"))
sys.path.append(str(ROOT))

from bench.harness import (  # noqa: E402
    log,
    migrated_django,
    percentile,
    reset_peak_rss,
    seed_statement,
    status_kib,
    superuser_url,
)

MB = 1_000_000
TIME_ZONE = "Europe/Moscow"
FORMATS = ("xml", "csv", "xlsx")
BILL_WARMUP = 5  # analyses billed before the timed ones (and used to count queries)
RETRY_CALLS = 50  # already-billed calls timed
ENP_OF_BILLED = "7700000000000017"

# Patients: a male and a female form of each, so that sex, name and patronymic agree.
SURNAMES = ["Иванов", "Петров", "Сидоров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов",
            "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов",
            "Козлов", "Степанов", "Орлов", "Голубев", "Виноградов", "Богданов"]
MALE_NAMES = ["Иван", "Пётр", "Сергей", "Дмитрий", "Николай", "Алексей", "Андрей", "Михаил", "Владимир", "Юрий"]
FEMALE_NAMES = ["Анна", "Мария", "Ольга", "Елена", "Татьяна", "Наталья", "Ирина", "Светлана", "Екатерина", "Галина"]
MALE_PATRONYMICS = ["Иванович", "Петрович", "Сергеевич", "Дмитриевич", "Николаевич", "Алексеевич", "Андреевич",
                    "Михайлович", "Владимирович", "Юрьевич"]
FEMALE_PATRONYMICS = ["Ивановна", "Петровна", "Сергеевна", "Дмитриевна", "Николаевна", "Алексеевна", "Андреевна",
                      "Михайловна", "Владимировна", "Юрьевна"]







def setup_django() -> None:
    """Django for this process, from the environment the parent set (DATABASE_URL, MEDAI_HOME, ...)."""
    import django

    django.setup()


# --- Tenants and reference data ------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    region_id: int
    organization_id: int
    period_id: int
    month: dt.date  # first day of last month, in the region's time zone
    tariffs: dict[str, tuple[int, str]]  # study kind: (tariff id, price)
    service_ids: dict[str, int]  # study kind: AI service id


def last_month() -> dt.date:
    from django.utils import timezone

    this_month = timezone.localdate(timezone=ZoneInfo(TIME_ZONE)).replace(day=1)
    return (this_month - dt.timedelta(days=1)).replace(day=1)


def create_world() -> World:
    from billing.demo import demo_tariffs_load
    from billing.models import Tariff
    from billing.services import period_open_for
    from inference.demo import REFERENCE_SERVICES
    from inference.records import AIService, StudyKind
    from tenants.models import Region
    from tenants.scope import dangerously_unscoped
    from tenants.services import organization_ensure, region_ensure

    region = region_ensure(code="RU-MOW", name="Москва", okato_code="45000000000", time_zone=TIME_ZONE)
    organization = organization_ensure(region=region, oms_code="770001", name="ГБУЗ «Городская поликлиника № 1»")
    demo_tariffs_load()
    # The reference services as rows (no Triton needed); created directly rather than with
    # inference.demo.reference_services_load, which calibrates the chest model on phantoms first.
    service_ids = {}
    for spec in REFERENCE_SERVICES:
        service = AIService.objects.filter(code=spec["code"]).first() or AIService.objects.create(
            vendor="bench", **spec)
        service.enabled_regions.add(*Region.objects.all())
        service_ids[service.study_kind] = service.id
    tariffs = {
        tariff.study_kind: (tariff.id, str(tariff.price))
        for tariff in Tariff.objects.filter(region=region, study_kind__in=[StudyKind.CHEST_XRAY,
                                                                           StudyKind.MAMMOGRAPHY])
    }
    month = last_month()
    with dangerously_unscoped():
        period_id = period_open_for(region_id=region.id, day=month)
    return World(region.id, organization.id, period_id, month, tariffs, service_ids)


# --- Seeding the ledger --------------------------------------------------------------------------

# Per generated row i: the patient p, the kind (every third a mammography), the day of last month and
# the moment of the analysis (noon in the region), shared by the study, the analysis and the charge.
ROW = """
    WITH g AS (
        SELECT i, ((i::bigint * 7919) %% %(patients)s::int)::int AS p, i %% 3 = 0 AS mammography,
               %(month)s::date + (i %% %(days)s::int) AS day
        FROM generate_series(0, %(n)s::int - 1) AS i
    )
    SELECT g.*, ((g.day + time '12:00') AT TIME ZONE %(tz)s) AS at, g.p %% 2 = 1 AS female FROM g
"""

NAME = """
    (%(surnames)s::text[])[1 + p %% cardinality(%(surnames)s::text[])] || CASE WHEN female THEN 'а' ELSE '' END
    || '^' || CASE WHEN female THEN (%(female_names)s::text[])[1 + p / 7 %% 10]
                   ELSE (%(male_names)s::text[])[1 + p / 7 %% 10] END
    || CASE WHEN p %% 50 = 0 THEN ''
            WHEN female THEN '^' || (%(female_patronymics)s::text[])[1 + p / 3 %% 10]
            ELSE '^' || (%(male_patronymics)s::text[])[1 + p / 3 %% 10] END"""

# Column: SQL over the generated row. A NOT NULL column missing here gets its model field's default.
STUDY_COLUMNS = {
    "id": "%(study0)s + i", "organization_id": "%(org)s", "region_id": "%(region)s",
    "study_instance_uid": "%(uid)s || '.' || i", "patient_id": "'P' || lpad(p::text, 8, '0')", "patient_name": NAME,
    "patient_birth_date": "to_char(date '1940-01-01' + (p * 37 %% 27000)::int, 'YYYYMMDD')",
    "patient_sex": "CASE WHEN female THEN 'F' ELSE 'M' END", "accession_number": "'A' || lpad(i::text, 9, '0')",
    "study_id": "'1'", "study_date": "day", "study_time": "'120000'",
    "study_description": "CASE WHEN mammography THEN 'Маммография' ELSE 'Флюорография' END",
    "referring_physician_name": "'Петрова^Анна^Сергеевна'",
    "modalities": "CASE WHEN mammography THEN '{MG}'::varchar[] ELSE '{DX}'::varchar[] END",
    "number_of_series": "1", "number_of_instances": "CASE WHEN mammography THEN 4 ELSE 1 END",
    "size_bytes": "CASE WHEN mammography THEN 40000000 ELSE 8000000 END", "status": "'complete'",
    "received_at": "at", "last_received_at": "at", "completed_at": "at",
}
ANALYSIS_COLUMNS = {
    "id": "%(analysis0)s + i", "organization_id": "%(org)s", "region_id": "%(region)s", "study_id": "%(study0)s + i",
    "service_id": "CASE WHEN mammography THEN %(mg_service)s ELSE %(cxr_service)s END", "status": "'succeeded'",
    "attempt": "1", "probability": "0.12", "pathology": "false", "model_version": "'1.0'",
    "sr_sop_instance_uid": "%(uid)s || '.' || i || '.99.1'", "sc_series_instance_uid": "%(uid)s || '.' || i || '.98'",
    "originals_verified": "true", "created_at": "at - interval '40 seconds'",
    "dispatched_at": "at - interval '30 seconds'", "started_at": "at - interval '20 seconds'", "finished_at": "at",
    "deadline_at": "at + interval '14 minutes'",
}
CHARGE_COLUMNS = {
    "id": "%(service0)s + i", "organization_id": "%(org)s", "region_id": "%(region)s", "kind": "'charge'",
    "status": "'billable'", "hold": "''", "analysis_id": "%(analysis0)s + i", "study_id": "%(study0)s + i",
    "study_kind": "CASE WHEN mammography THEN 'mammography' ELSE 'chest_xray' END", "service_date": "day",
    "policy_number": "(7700000000000000 + p)::text",
    "tariff_id": "CASE WHEN mammography THEN %(mg_tariff)s ELSE %(cxr_tariff)s END",
    "amount": "CASE WHEN mammography THEN %(mg_price)s::numeric ELSE %(cxr_price)s::numeric END",
    "period_id": "%(period)s", "reason": "''", "created_at": "at", "released_at": "at",
}



def seed_ledger(world: World, n: int) -> float:
    """n studies, analyses and charges in one transaction as the superuser; returns the seconds taken."""
    import psycopg

    from billing.models import BillableService
    from inference.records import Analysis, StudyKind
    from medai.archive.models import Study

    started = time.perf_counter()
    next_month = (world.month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"]), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        seeded = {Study: STUDY_COLUMNS, Analysis: ANALYSIS_COLUMNS, BillableService: CHARGE_COLUMNS}
        first = {model._meta.db_table: conn.execute(
            f"SELECT coalesce(max(id), 0) + 1 FROM {model._meta.db_table}").fetchone()[0] for model in seeded}
        params = {
            "n": n, "patients": max(1, n * 6 // 10), "month": world.month, "days": (next_month - world.month).days,
            "tz": TIME_ZONE, "org": world.organization_id, "region": world.region_id, "period": world.period_id,
            "uid": f"1.2.826.0.1.3680043.10.1{os.getpid()}", "study0": first["archive_study"],
            "analysis0": first["inference_analysis"], "service0": first["billing_billableservice"],
            "mg_service": world.service_ids[StudyKind.MAMMOGRAPHY],
            "cxr_service": world.service_ids[StudyKind.CHEST_XRAY],
            "mg_tariff": world.tariffs[StudyKind.MAMMOGRAPHY][0], "mg_price": world.tariffs[StudyKind.MAMMOGRAPHY][1],
            "cxr_tariff": world.tariffs[StudyKind.CHEST_XRAY][0], "cxr_price": world.tariffs[StudyKind.CHEST_XRAY][1],
            "surnames": SURNAMES, "male_names": MALE_NAMES, "female_names": FEMALE_NAMES,
            "male_patronymics": MALE_PATRONYMICS, "female_patronymics": FEMALE_PATRONYMICS,
        }
        with conn.transaction(), conn.cursor() as cursor:
            # No triggers: no foreign-key checks and no ledger trigger per row (superuser only, as
            # pg_restore --disable-triggers does it). The generator assigns the ids that tie the rows.
            cursor.execute("SET LOCAL session_replication_role = replica")
            for model, columns in seeded.items():
                table, insert = model._meta.db_table, seed_statement(model, columns, params, ROW)
                secondary = cursor.execute(
                    "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = "
                    "%s::regclass AND NOT EXISTS (SELECT FROM pg_constraint WHERE conindid = indexrelid)", [table]
                ).fetchall()
                for name, _ in secondary:
                    cursor.execute(f"DROP INDEX {name}")
                cursor.execute(insert, params)
                assert cursor.rowcount == n, (table, cursor.rowcount)
                for _, definition in secondary:
                    cursor.execute(definition)
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        log(f"inserted {n} studies, analyses and charges in {time.perf_counter() - started:.1f} s; VACUUM ANALYZE")
        for model in seeded:
            conn.execute(f"VACUUM ANALYZE {model._meta.db_table}")
        conn.execute("CHECKPOINT")  # the load's dirty pages written now, not while something is timed
    return time.perf_counter() - started


def close_period(world: World) -> None:
    from billing.models import BillingPeriod
    from billing.services import period_close

    period_close(period=BillingPeriod.objects.get(id=world.period_id), closed_by="bench")


def ledger_totals(world: World) -> tuple[int, str]:
    """COUNT and SUM(amount) of the organization's billed services of the period, straight from SQL."""
    import psycopg

    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"])) as conn:
        count, total = conn.execute(
            "SELECT count(*), sum(amount) FROM billing_billableservice WHERE period_id = %s AND organization_id = %s"
            " AND status = 'billable'", [world.period_id, world.organization_id]).fetchone()
    return count, str(total)


# --- Exports -------------------------------------------------------------------------------------


def export_request(world: World, fmt: str) -> int:
    from billing.exports import register_export_request
    from billing.models import BillingPeriod
    from tenants.models import MedicalOrganization
    from tenants.scope import organization_scope

    with organization_scope(organization_id=world.organization_id):
        export = register_export_request(
            period=BillingPeriod.objects.get(id=world.period_id),
            organization=MedicalOrganization.objects.get(id=world.organization_id), file_format=fmt,
            requested_by="bench",
        )
    return export.id  # committed: its build task went to the in-memory broker, which no worker reads


def run_child(*args: str) -> dict:
    """This script in a fresh interpreter (the parent's environment); returns the JSON of its last line."""
    completed = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout + completed.stderr)
        raise SystemExit(f"child {args} failed with exit code {completed.returncode}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def export_child(export_id: int, organization_id: int) -> None:
    """--export-child: build one export as the Celery task would, report seconds and memory as JSON."""
    setup_django()
    import billing.register  # noqa: F401 - imported before the clock, as in a worker
    from billing.exports import register_export_build

    rss_before = status_kib("VmRSS")
    started = time.perf_counter()
    export = register_export_build(export_id=export_id, organization_id=organization_id)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss_kib": status_kib("VmHWM"), "rss_before_kib": rss_before,
                      "status": export.status, "error": export.error, "count": export.services_count,
                      "total": str(export.total), "size": export.size_bytes, "file_name": export.file_name}))


def bench_exports(world: World, n: int, formats: list[str]) -> dict[str, dict]:
    from billing.models import BillingPeriod

    count, total = ledger_totals(world)
    results = {}
    for fmt in formats:
        export_id = export_request(world, fmt)
        log(f"building the {fmt.upper()} export {export_id} of {n} services in a child process")
        result = run_child("--export-child", str(export_id), str(world.organization_id))
        result["services_per_s"] = n / result["seconds"]
        log(f"{fmt}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_kib'] * 1024 / MB:.0f} MB "
            f"(before the build {result['rss_before_kib'] * 1024 / MB:.0f} MB), {(result['size'] or 0) / MB:.1f} MB "
            f"{result['file_name']}, {result['services_per_s']:.0f} services/s, status {result['status']} "
            f"{result['error']}")
        result["checks"] = {
            "ready": result["status"] == "ready",
            "count equals COUNT(*)": result["count"] == count == n,
            "total equals SUM(amount)": result["total"] == total,
        }
        if fmt == "xml":
            status = BillingPeriod.objects.values_list("status", flat=True).get(id=world.period_id)
            result["checks"]["period exported"] = status == BillingPeriod.Status.EXPORTED
        for check, passed in result["checks"].items():
            log(f"  {fmt} check: {check}: {'yes' if passed else 'NO'}"
                + (f" (export {result['count']} / {result['total']}, SQL {count} / {total})" if not passed else ""))
        results[fmt] = result
    return results


class _Discard:
    """A binary sink that keeps nothing."""

    def write(self, data: bytes) -> int:
        return len(data)


PHASES = {
    "header": "header: COUNT and SUM of the register (one query)",
    "fetch": "rows fetched alone (server-side cursor, values_list)",
    "lines": "lines built (rows fetched + register_lines)",
    "format": "lines formatted and encoded, written nowhere (incl. built)",
    "write": "write_xml_package (incl. rows fetched and lines built)",
    "validate": "validate_xml_package",
    "sha256": "sha256 of the package",
}


def profile_child(period_id: int, organization_id: int) -> None:
    """--profile-child: the XML export's phases one by one, each timed and with its own peak RSS."""
    setup_django()
    import importlib

    from billing import exports
    from billing.models import BillingPeriod, RegisterExport
    from billing.register import validate_xml_package, write_xml_package
    from billing.selectors import register_lines, register_services
    from tenants.scope import organization_scope

    # The XML writer's record loop, if it still has one of that name: formatting without deflating.
    write_records = getattr(importlib.import_module(write_xml_package.__module__), "_write_records", None)
    phases = {}

    @contextlib.contextmanager
    def phase(name: str):
        reset = reset_peak_rss()
        rss_before = status_kib("VmRSS")
        started = time.perf_counter()
        yield
        phases[name] = {"seconds": time.perf_counter() - started, "rss_before_kib": rss_before,
                        "peak_rss_kib": status_kib("VmHWM") if reset else None}

    with organization_scope(organization_id=organization_id), tempfile.TemporaryDirectory() as scratch:
        period = BillingPeriod.objects.select_related("region").get(id=period_id)
        services_qs = register_services(period=period, organization_id=organization_id)
        export = RegisterExport(organization_id=organization_id, region_id=period.region_id, period=period,
                                format="xml", number=99)
        with phase("header"):
            header = exports._header(export, services_qs)
        with phase("fetch"):
            rows = services_qs.order_by("id").values_list(
                "id", "policy_number", "service_date", "tariff__service_code", "study_kind",
                "tariff__diagnosis_code", "tariff__care_profile", "tariff__price", "amount", "kind",
                "study__patient_name", "study__patient_sex", "study__patient_birth_date")
            fetched = sum(1 for _ in rows.iterator(chunk_size=5000))
        with phase("lines"):
            built = sum(1 for _ in register_lines(services_qs))
        if write_records is not None:
            with phase("format"):
                write_records(_Discard(), _Discard(), header, register_lines(services_qs))
        path = os.path.join(scratch, "register.zip")
        with phase("write"), open(path, "wb") as out:
            write_xml_package(out, header, register_lines(services_qs))
        size = os.path.getsize(path)
        with phase("validate"):
            validate_xml_package(path)
        with phase("sha256"):
            exports._sha256(path)
        plan = rows.explain().splitlines()
    print(json.dumps({"phases": phases, "fetched": fetched, "built": built, "size": size, "plan": plan}))


def bench_profile(world: World) -> dict:
    log("profiling the XML export phase by phase in a child process")
    result = run_child("--profile-child", str(world.period_id), str(world.organization_id))
    phases = result["phases"]
    for name, values in phases.items():
        peak = values["peak_rss_kib"]
        log(f"  {PHASES[name]}: {values['seconds']:.1f} s, peak RSS "
            f"{'n/a' if peak is None else f'{peak * 1024 / MB:.0f} MB'} "
            f"(at its start {values['rss_before_kib'] * 1024 / MB:.0f} MB)")
    seconds = {name: values["seconds"] for name, values in phases.items()}
    stages = {"header query": seconds["header"], "fetching the rows (DB, psycopg, Django)": seconds["fetch"],
              "register_lines": seconds["lines"] - seconds["fetch"]}
    if "format" in seconds:
        stages["formatting and encoding ZAP and PERS"] = seconds["format"] - seconds["lines"]
        stages["deflating, ZIP and the LM copy"] = seconds["write"] - seconds["format"]
    else:
        stages["formatting, encoding, deflating"] = seconds["write"] - seconds["lines"]
    stages.update({"validation": seconds["validate"], "sha256": seconds["sha256"]})
    log("  so the XML export's stages cost: " + ", ".join(f"{name} {value:.1f} s" for name, value in stages.items()))
    log(f"  rows fetched {result['fetched']}, lines built {result['built']}, package {result['size'] / MB:.1f} MB; "
        "the register's query plan (as EXPLAIN gives it; the export's server-side cursor may plan otherwise):")
    for line in result["plan"]:
        log(f"    {line}")
    return result


# --- What billing adds to an analysis ------------------------------------------------------------


def create_finished_analyses(world: World, count: int) -> list[int]:
    """Studies with one instance carrying the ENP, each with a succeeded chest-radiograph analysis finished now."""
    from django.utils import timezone

    from inference.records import Analysis, StudyKind
    from medai.archive.models import Instance, Series, Study
    from tenants.scope import dangerously_unscoped

    now = timezone.now()
    other_ids = {"vr": "SQ", "Value": [{"00100020": {"vr": "LO", "Value": [ENP_OF_BILLED]},
                                        "00100021": {"vr": "LO", "Value": ["ENP"]}}]}
    root = f"1.2.826.0.1.3680043.10.2{os.getpid()}"
    tenant = {"organization_id": world.organization_id, "region_id": world.region_id}
    with dangerously_unscoped():
        studies = Study.objects.bulk_create([
            Study(**tenant, study_instance_uid=f"{root}.{k}", patient_id=f"B{k}",
                  patient_name="Сидорова^Мария^Ивановна", patient_birth_date="19700512", patient_sex="F",
                  accession_number=f"B{k}", modalities=["DX"],
                  study_date=now.date(), number_of_series=1, number_of_instances=1, status=Study.Status.COMPLETE,
                  last_received_at=now, completed_at=now)
            for k in range(count)])
        series = Series.objects.bulk_create([
            Series(**tenant, study=study, series_instance_uid=f"{study.study_instance_uid}.1", modality="DX",
                   series_number=1, body_part_examined="CHEST", number_of_instances=1) for study in studies])
        Instance.objects.bulk_create([
            Instance(**tenant, study=s.study, series=s, sop_instance_uid=f"{s.series_instance_uid}.1",
                     sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                     instance_number=1, rows=2048, columns=2048, size_bytes=8_000_000, sha256="0" * 64,
                     storage_key=f"bench/{s.series_instance_uid}.1.dcm",
                     metadata={"00080060": {"vr": "CS", "Value": ["DX"]}, "00101002": other_ids})
            for s in series])
        analyses = Analysis.objects.bulk_create([
            Analysis(**tenant, study=study, service_id=world.service_ids[StudyKind.CHEST_XRAY],
                     status=Analysis.Status.SUCCEEDED, attempt=1, probability=0.1, pathology=False, model_version="1.0",
                     sr_sop_instance_uid=f"{study.study_instance_uid}.99.1",
                     sc_series_instance_uid=f"{study.study_instance_uid}.98", originals_verified=True,
                     dispatched_at=now, started_at=now, finished_at=now)
            for study in studies])
    return [analysis.id for analysis in analyses]


def _bill_once(organization_id: int, analysis_id: int, capture: bool) -> tuple[float, object, list[dict]]:
    """Lock the analysis as the result is stored, then time analysis_bill alone (the caller's transaction).
    With `capture`, its queries as CaptureQueriesContext lists them, each with `ms` timed here (Django's
    `time` is in whole milliseconds)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.services import analysis_bill
    from inference.records import Analysis
    from tenants.scope import organization_scope

    timings = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - started) * 1000)

    with organization_scope(organization_id=organization_id):
        analysis = (Analysis.objects.select_for_update(of=("self",)).select_related("service", "study")
                    .get(id=analysis_id))
        with (CaptureQueriesContext(connection) if capture else contextlib.nullcontext() as queries,
              connection.execute_wrapper(timed) if capture else contextlib.nullcontext()):
            started = time.perf_counter()
            charge = analysis_bill(analysis=analysis)
            elapsed = (time.perf_counter() - started) * 1000
    if not capture:
        return elapsed, charge, []
    return elapsed, charge, [{**query, "ms": ms} for query, ms in zip(queries.captured_queries, timings, strict=True)]


def bench_billing_cost(world: World, count: int) -> dict:
    from billing.models import BillableService

    ids = create_finished_analyses(world, count + BILL_WARMUP)
    log(f"billing {count} analyses one at a time (after {BILL_WARMUP} warm-up ones), against the seeded ledger")
    queries = []
    for analysis_id in ids[:BILL_WARMUP]:
        _, charge, queries = _bill_once(world.organization_id, analysis_id, capture=True)
        assert charge is not None and charge.status == BillableService.Status.BILLABLE, charge
    samples = []
    for analysis_id in ids[BILL_WARMUP:]:
        elapsed, charge, _ = _bill_once(world.organization_id, analysis_id, capture=False)
        assert charge is not None and charge.status == BillableService.Status.BILLABLE, charge
        assert charge.policy_number == ENP_OF_BILLED and charge.period_id != world.period_id, charge
        samples.append(elapsed)
    assert billed_counts_agree(world), "the daily count of billed kopecks differs from the charges billed"
    retry_queries = _bill_once(world.organization_id, ids[0], capture=True)[2]
    retries = []
    for analysis_id in ids[BILL_WARMUP:][:RETRY_CALLS]:
        elapsed, charge, _ = _bill_once(world.organization_id, analysis_id, capture=False)
        assert charge is None
        retries.append(elapsed)
    result = {
        "p50_ms": percentile(samples, 0.5), "p95_ms": percentile(samples, 0.95), "mean_ms": statistics.mean(samples),
        "max_ms": max(samples), "queries": len(queries), "sql_ms": sum(q["ms"] for q in queries),
        "query_list": [q["sql"] for q in queries],
        "retry_p50_ms": percentile(retries, 0.5), "retry_p95_ms": percentile(retries, 0.95),
        "retry_queries": len(retry_queries),
    }
    log(f"analysis_bill: p50 {result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms, mean {result['mean_ms']:.2f} ms,"
        f" max {result['max_ms']:.2f} ms, {result['queries']} queries ({result['sql_ms']:.2f} ms in SQL on the last "
        f"warm-up call); already billed: p50 {result['retry_p50_ms']:.2f} ms, {result['retry_queries']} queries")
    for query in queries:
        log(f"    {query['ms']:.2f} ms: {' '.join(query['sql'].split())[:150]}")
    return result


def billed_counts_agree(world: World) -> bool:
    """The organization's daily counts of billed kopecks equal its charges billed by this run, from SQL (the
    seeded ledger has no counts)."""
    import psycopg

    with psycopg.connect(superuser_url(os.environ["DATABASE_URL"])) as conn:
        counted, billed = conn.execute("""
            SELECT (SELECT coalesce(sum(value), 0) FROM stats_dailycount
                    WHERE organization_id = %(org)s AND stat = 'billed_kopecks'),
                   (SELECT coalesce(sum(amount * 100), 0)::bigint FROM billing_billableservice
                    WHERE organization_id = %(org)s AND status = 'billable' AND period_id <> %(seeded)s)
        """, {"org": world.organization_id, "seeded": world.period_id}).fetchone()
    return counted == billed > 0


# --- Output --------------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, float, str, bool | None]]) -> None:
    print()
    print(f"{'metric':58} {'value':>10}  {'target':10} result")
    for metric, value, target, passed in rows:
        print(f"{metric:58} {value:10.2f}  {target:10} {'' if passed is None else 'PASS' if passed else 'FAIL'}")


def summary(n: int, seed_seconds: float, exports: dict[str, dict], cost: dict) -> None:
    rows: list[tuple[str, float, str, bool | None]] = [(f"seeding {n} services (s)", seed_seconds, "", None)]
    for fmt, result in exports.items():
        seconds, peak = result["seconds"], result["peak_rss_kib"] * 1024 / MB
        checked = all(result["checks"].values())
        target = fmt == "xml" and n >= 1_000_000
        rows += [
            (f"{fmt.upper()} export of {n} services (s)", seconds, "<= 60" if fmt == "xml" else "",
             (seconds <= 60 and checked) if target else None),
            (f"{fmt.upper()} export peak RSS (MB)", peak, "<= 200" if fmt == "xml" else "",
             (peak <= 200 and checked) if target else None),
            (f"{fmt.upper()} export RSS before the build (MB)", result["rss_before_kib"] * 1024 / MB, "", None),
            (f"{fmt.upper()} export services/s", result["services_per_s"], "", None),
            (f"{fmt.upper()} file size (MB)", (result["size"] or 0) / MB, "", None),
        ]
    rows += [
        ("analysis_bill p50 (ms)", cost["p50_ms"], "", None),
        ("analysis_bill p95 (ms)", cost["p95_ms"], "<= 2", cost["p95_ms"] <= 2),
        ("analysis_bill mean (ms)", cost["mean_ms"], "", None),
        ("analysis_bill SQL queries per call", cost["queries"], "", None),
        ("analysis_bill already billed, p50 (ms)", cost["retry_p50_ms"], "", None),
        ("analysis_bill already billed, SQL queries", cost["retry_queries"], "", None),
    ]
    print_table(rows)
    if n < 1_000_000:
        print(f"\n--quick: {n} services; the export targets apply to the full run (1 M) only.")
    failed = [f"{fmt}: {check}" for fmt, r in exports.items() for check, ok in r["checks"].items() if not ok]
    if failed:
        print("FAILED CHECKS: " + ", ".join(failed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 k services and 50 billed analyses, a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, exports)")
    parser.add_argument("--profile", action="store_true", help="also time the XML export's phases one by one")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="the exports to build (default: all; XML first, so the period is exported)")
    parser.add_argument("--export-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        return export_child(*args.export_child)
    if args.profile_child:
        return profile_child(*args.profile_child)

    n, billed = (50_000, 50) if args.quick else (1_000_000, 300)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs, harmless
    wall = time.perf_counter()
    with migrated_django("medai-bench-billing-", keep=args.keep) as home:
        world = create_world()
        log(f"seeding {n} billable services of one organization in {world.month:%Y-%m}")
        seed_seconds = seed_ledger(world, n)
        close_period(world)
        log(f"seeded in {seed_seconds:.1f} s; period {world.month:%Y-%m} closed")
        cost = bench_billing_cost(world, billed)  # first, on a quiet database
        exports = bench_exports(world, n, args.formats)
        if args.profile:
            bench_profile(world)
    summary(n, seed_seconds, exports, cost)
    print(f"\nWall time {time.perf_counter() - wall:.0f} s on {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.2f} at the end." + (f" Kept: {home}" if args.keep else ""))


if __name__ == "__main__":
    main()
