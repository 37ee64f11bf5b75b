"""Benchmark: AI analysis end to end, per modality, and the platform's overhead over Triton itself.

In one run, on one machine: embedded PostgreSQL and Redis, objects as local files, the real Triton
with the reference models, and a Celery worker (prefork) as `medai up` runs it. Studies are phantoms
(inference/phantoms.py) stored straight into the archive, then completed one at a time:

1. **Latency** per modality: from `study_complete` (what the quiet timer or the API calls) to the
   analysis row finished with its SR and SC stored (`finished_at`): p50 / p95. The path measured is
   the whole platform: completion task, routing, fair dispatch, the run (audit, load from storage with
   sha256 checks, preprocessing, Triton, SR and SC built and stored), two broker hops.
2. **Model time**: the same inputs (the profile's prepared tensors of the same studies) sent straight to
   Triton with tritonclient, in the same run: p50. Overhead = (end-to-end p50 - model p50) / model p50.
3. **Throughput**: a burst of studies completed at once; studies per minute from the first completion
   to the last result.

Targets: chest CT overhead <= 15 % of model time at p50; chest radiograph end to end p95 <= 2 s.
--quick shrinks the counts for a smoke run.

Run: .venv/bin/python bench/inference.py [--quick] [--keep]
"""

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "platform"))

from medai.runtime import services  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    latency_studies: int  # per kind; CT gets a quarter (a realistic CT takes seconds in the model)
    burst_studies: int
    ct_slices: int
    ct_size: int
    xray_size: int
    mg_size: int


FULL = Sizes(latency_studies=20, burst_studies=20, ct_slices=300, ct_size=512, xray_size=1024, mg_size=1024)
QUICK = Sizes(latency_studies=4, burst_studies=4, ct_slices=40, ct_size=128, xray_size=512, mg_size=256)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def phantom(kind: str, sizes: Sizes, seed: int):
    from inference.phantoms import chest_ct, chest_radiograph, mammography_study

    if kind == "chest_xray":
        return [chest_radiograph(lesions=seed % 3, size=sizes.xray_size, seed=seed)[0]]
    if kind == "chest_ct":
        # The phantom places lesions slowly at this size; the model's work (segmentation, closing) is the same.
        share = 0.1 * (seed % 5) if sizes.ct_size <= 128 else 0.0
        return chest_ct(affected_share=share, slices=sizes.ct_slices, size=sizes.ct_size, spacing_mm=1.0,
                        seed=seed)[0]
    return mammography_study(density="BCD"[seed % 3], masses=seed % 2, size=sizes.mg_size, seed=seed)[0]


def start_platform(home: Path, cleanup: contextlib.ExitStack) -> dict[str, str]:
    postgres = services.start_postgres(home / "pg")
    cleanup.callback(postgres.stop)
    redis = services.start_redis(home / "redis" / "redis.db")
    cleanup.callback(redis.stop)
    from inference.triton import MODEL_REPOSITORY

    triton = services.start_triton(MODEL_REPOSITORY, home / "triton")
    cleanup.callback(triton.stop)
    env = {"DATABASE_URL": postgres.url, "CELERY_BROKER_URL": redis.url, "MEDAI_HOME": str(home),
           "DJANGO_SETTINGS_MODULE": "medai.settings", "S3_ENDPOINT_URL": "", "TRITON_URL": triton.url,
           "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    worker_log = (home / "celery.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "medai", "worker", "--pool", "prefork", "--concurrency", "2",
         "--loglevel", "INFO"], cwd=ROOT / "platform", env={**os.environ, **env, "LOG_LEVEL": "INFO"},
        stdout=worker_log, stderr=subprocess.STDOUT,
    )
    cleanup.callback(services.terminate, worker)
    return env


def store(organization, datasets):
    import hashlib
    import io

    from medai.archive.dicomfile import read_received
    from medai.archive.models import Study
    from medai.archive.services import ReceiveBatch
    from medai.archive.synthetic import to_bytes

    with ReceiveBatch(organization=organization) as batch:
        for dataset in datasets:
            raw = to_bytes(dataset)
            received = read_received(io.BytesIO(raw), len(raw))
            batch.store(dataset=received.dataset, fileobj=io.BytesIO(raw), size=len(raw),
                        sha256=hashlib.sha256(raw).hexdigest(), metadata=received.metadata)
    return Study.objects.get(organization=organization, study_instance_uid=str(datasets[0].StudyInstanceUID))


STAGES = re.compile(r"analysis (\d+): (.*)$")


def platform_stages(home: Path, analysis_ids: set[int]) -> list[float]:
    """Per run, the seconds of the platform's own stages around the model call (headers, load, prepare,
    results), from the worker's log line for each analysis: free of the model's run-to-run noise."""
    found = []
    for line in (home / "celery.log").read_text(errors="replace").splitlines():
        match = STAGES.search(line)
        if match and int(match.group(1)) in analysis_ids and " model " in match.group(2):
            stages = dict(part.rsplit(" ", 2)[:2] for part in match.group(2).split(", "))
            found.append(sum(float(seconds) for stage, seconds in stages.items() if stage != "model"))
    return found


def complete_and_wait(studies, timeout: float = 600.0) -> tuple[list[float], float]:
    """Complete the studies now; the seconds from completion to each one's analysis being finished, and
    from the first completion to the last result. Both come from the rows' `finished_at`, so the polling
    (unhurried, not to take CPU from the worker it measures) adds nothing to them."""
    from django.utils import timezone

    from inference.records import Analysis
    from medai.archive.services import study_complete

    started = {}
    for study in studies:
        started[study.id] = timezone.now()
        study_complete(study=study)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(Analysis.objects.filter(study_id__in=started).values_list("study_id", "status", "finished_at",
                                                                              "reason"))
        done = [r for r in rows if r[2] is not None]
        if len(done) == len(started):
            failed = [r for r in done if r[1] != Analysis.Status.SUCCEEDED]
            if failed:
                raise SystemExit(f"analyses did not succeed: {failed[:3]}")
            span = (max(r[2] for r in done) - min(started.values())).total_seconds()
            return [(finished - started[study_id]).total_seconds() for study_id, _, finished, _ in done], span
        time.sleep(0.1)
    raise SystemExit("timed out waiting for results")


def model_seconds(service, datasets, rounds: int = 3) -> float:
    """Triton alone on the prepared inputs of this study: the median of a few calls, the same statistic
    as the end-to-end p50 it is compared with."""
    from inference import triton
    from inference.profiles import profile_for

    profile = profile_for(service.profile)
    headers = datasets
    selected = set(profile.select(headers, service.profile_rules))
    prepared = profile.prepare([d for d in datasets if str(d.SOPInstanceUID) in selected], service.profile_rules)
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        for inputs in profile.requests(prepared):
            triton.infer(service.triton_model, inputs, profile.OUTPUTS)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def bench_kind(kind: str, service, organization, sizes: Sizes, home: Path) -> dict:
    latency_studies, burst_studies = sizes.latency_studies, sizes.burst_studies
    if kind == "chest_ct":
        latency_studies, burst_studies = max(2, latency_studies // 4), max(2, burst_studies // 4)
    log(f"{kind}: {latency_studies} studies one at a time")
    from inference.records import Analysis

    latencies, models, measured = [], [], set()
    for seed in range(latency_studies + 1):
        datasets = phantom(kind, sizes, seed)
        study = store(organization, datasets)
        seconds = complete_and_wait([study])[0][0]
        if seed:  # the first warms the worker and Triton's model instance
            latencies.append(seconds)
            models.append(model_seconds(service, datasets, rounds=1 if kind == "chest_ct" else 3))
            measured |= set(Analysis.objects.filter(study=study).values_list("id", flat=True))
    log(f"{kind}: a burst of {burst_studies} studies")
    burst = [store(organization, phantom(kind, sizes, 1000 + seed)) for seed in range(burst_studies)]
    per_minute = len(burst) / complete_and_wait(burst)[1] * 60
    e2e_p50, model_p50 = statistics.median(latencies), statistics.median(models)
    stages_p50 = statistics.median(platform_stages(home, measured))
    return {"kind": kind, "p50": e2e_p50, "p95": percentile(latencies, 95), "model_p50": model_p50,
            "overhead": (e2e_p50 - model_p50) / model_p50, "stages_p50": stages_p50, "per_minute": per_minute}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few and small studies, for a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) at the end")
    parser.add_argument("--kinds", default="chest_xray,chest_ct,mammography", help="kinds of study, comma-separated")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    home = Path(tempfile.mkdtemp(prefix="medai-bench-inference-"))
    log(f"working in {home}")
    load_at_start = os.getloadavg()
    with contextlib.ExitStack() as cleanup:
        if not args.keep:
            cleanup.callback(shutil.rmtree, home, ignore_errors=True)
        start_platform(home, cleanup)
        from django.db import connections

        from inference.demo import reference_services_load
        from tenants.services import organization_ensure, region_ensure

        cleanup.callback(connections.close_all)
        with connections["default"].cursor() as cursor:
            cursor.execute("SET medai.scope = 'national'")  # this process plays every clinic
        region = region_ensure(code="RU-MOW", name="Москва")
        organization = organization_ensure(region=region, oms_code="770001", name="Bench clinic")
        services_by_kind = {s.study_kind: s for s in reference_services_load()}
        rows = [bench_kind(kind, services_by_kind[kind], organization, sizes, home) for kind in args.kinds.split(",")]
    print(f"\n{'study kind':<12} {'e2e p50 s':>10} {'e2e p95 s':>10} {'model p50 s':>12} {'overhead':>9} "
          f"{'stages p50 s':>13} {'stages/model':>13} {'studies/min':>12}")
    for row in rows:
        print(f"{row['kind']:<12} {row['p50']:>10.3f} {row['p95']:>10.3f} {row['model_p50']:>12.3f} "
              f"{row['overhead']:>8.1%} {row['stages_p50']:>13.3f} {row['stages_p50'] / row['model_p50']:>12.1%} "
              f"{row['per_minute']:>12.1f}")
    print("overhead = (e2e p50 - model p50) / model p50, the model called straight on the same tensors; stages = "
          "the platform's own work around the model call in each run (headers, load, prepare, results), "
          "from the worker's log.")
    by_kind = {row["kind"]: row for row in rows}
    if "chest_ct" in by_kind:
        overhead = by_kind["chest_ct"]["overhead"]
        print(f"\nTarget: chest CT overhead {overhead:.1%} (<= 15 %: {'PASS' if overhead <= 0.15 else 'FAIL'}).")
    if "chest_xray" in by_kind:
        p95 = by_kind["chest_xray"]["p95"]
        print(f"Target: chest radiograph e2e p95 {p95:.2f} s (<= 2 s: {'PASS' if p95 <= 2 else 'FAIL'}).")
    print(f"Sizes: radiograph {sizes.xray_size} px, CT {sizes.ct_slices} x {sizes.ct_size}^2, mammogram "
          f"4 x {sizes.mg_size} px. {os.cpu_count()} CPUs; load average {load_at_start[0]:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end.")


if __name__ == "__main__":
    main()
