"""Benchmark: the cost of identity and tenant isolation.

1. Keycloak token validation with a warm JWKS cache (RS256 signature, issuer, audience, lifetime),
   then the whole bearer authentication (validation + claims to principal, one indexed lookup).
2. Requests per second and latency of an authenticated QIDO study search through gunicorn, with
   PostgreSQL row-level security on, then with it switched off on the same data.

Run: .venv/bin/python bench/auth.py [--quick]. Targets: validation <= 0.5 ms p50; RLS <= 10 % of QIDO latency.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "platform"))

from medai.runtime import services  # noqa: E402

TENANT_TABLES = ("archive_study", "archive_series", "archive_instance", "archive_studyaccess")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def serve_jwks(jwks: dict) -> tuple[ThreadingHTTPServer, str]:
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def bench_token_validation(iterations: int, organization) -> dict:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from django.conf import settings
    from django.test import RequestFactory

    from medai.accounts.authentication import BearerTokenAuthentication
    from medai.accounts.keycloak import configured_realm, validate_token

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "use": "sig", "alg": "RS256"})
    server, url = serve_jwks({"keys": [jwk]})
    # The realm's JWKS lives at {KEYCLOAK_URL}/realms/{realm}/protocol/openid-connect/certs; any path serves here.
    settings.KEYCLOAK_URL = url
    realm = configured_realm()
    now = int(time.time())
    token = jwt.encode(
        {"iss": realm.issuer, "sub": str(uuid.uuid4()), "aud": "medai-platform", "azp": "medai-platform",
         "iat": now, "exp": now + 3600, "preferred_username": "bench", "realm_access": {"roles": ["radiologist"]},
         "groups": [f"/regions/{organization.region.code}/{organization.oms_code}"]},
        key, algorithm="RS256", headers={"kid": "bench"},
    )
    validate_token(token, realm)  # warm the JWKS cache
    validation = []
    for _ in range(iterations):
        started = time.perf_counter()
        validate_token(token, realm)
        validation.append((time.perf_counter() - started) * 1000)
    request = RequestFactory().get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {token}")
    authenticator = BearerTokenAuthentication()
    from django.db import transaction

    full = []
    for _ in range(iterations):
        with transaction.atomic():
            started = time.perf_counter()
            authenticator.authenticate(request)
            full.append((time.perf_counter() - started) * 1000)
    server.shutdown()
    return {"validation_p50_ms": percentile(validation, 0.5), "validation_p95_ms": percentile(validation, 0.95),
            "authentication_p50_ms": percentile(full, 0.5), "authentication_p95_ms": percentile(full, 0.95)}


def seed(organizations: int, studies_per_org: int, instances_per_study: int):
    """Index rows straight through the ORM in bulk (no objects in storage: QIDO reads the index only)."""
    from django.utils import timezone

    from medai.accounts.models import Role
    from medai.accounts.services import api_token_create, user_ensure
    from medai.archive.models import Instance, Series, Study
    from tenants.scope import dangerously_unscoped
    from tenants.services import organization_ensure, region_ensure

    region = region_ensure(code="RU-MOW", name="Москва")
    token, first = None, None
    with dangerously_unscoped():
        for n in range(organizations):
            org = organization_ensure(region=region, oms_code=f"77{n:04d}", name=f"Clinic {n}")
            first = first or org
            now = timezone.now()
            studies = Study.objects.bulk_create([
                Study(organization=org, region=region, study_instance_uid=f"1.2.{n}.{s}", patient_id=f"P{n}-{s % 500}",
                      patient_name=f"Patient^{s}", accession_number=f"A{n}-{s}", modalities=["CT"],
                      study_date=now.date(), number_of_series=1, number_of_instances=instances_per_study,
                      last_received_at=now)
                for s in range(studies_per_org)])
            series = Series.objects.bulk_create([
                Series(organization=org, region=region, study=st, series_instance_uid=f"{st.study_instance_uid}.1",
                       modality="CT", series_number=1, number_of_instances=instances_per_study) for st in studies])
            Instance.objects.bulk_create([
                Instance(organization=org, region=region, study=se.study, series=se,
                         sop_instance_uid=f"{se.series_instance_uid}.{i}", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                         transfer_syntax_uid="1.2.840.10008.1.2.1", instance_number=i, size_bytes=1,
                         sha256="0" * 64, storage_key=f"bench/{se.series_instance_uid}.{i}", metadata={})
                for se in series for i in range(instances_per_study)], batch_size=5000)
    user = user_ensure(username="bench-radiologist", role=Role.RADIOLOGIST, organization=first)
    token = api_token_create(user=user)
    return first, token


def set_rls(superuser_url: str, enabled: bool) -> None:
    import psycopg

    with psycopg.connect(superuser_url, autocommit=True) as conn:
        for table in TENANT_TABLES:
            if enabled:
                conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
                conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            else:
                conn.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
                conn.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def bench_qido(base_url: str, token: str, seconds: float, threads: int) -> dict:
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/dicom+json"}
    queries = [{"limit": "50"}, {"PatientID": "P0-7"}, {"AccessionNumber": "A0-42"}, {"PatientName": "Patient^1*",
                                                                                       "limit": "20"}]
    for q in queries:  # warm-up, and every query must succeed
        assert session.get(f"{base_url}/dicomweb/studies", params=q, headers=headers, timeout=30).status_code == 200
    latencies = []
    for i in range(100):
        started = time.perf_counter()
        session.get(f"{base_url}/dicomweb/studies", params=queries[i % len(queries)], headers=headers, timeout=30)
        latencies.append((time.perf_counter() - started) * 1000)

    def load(_):
        s = requests.Session()
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            s.get(f"{base_url}/dicomweb/studies", params=queries[done % len(queries)], headers=headers, timeout=30)
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(load, range(threads)))
    return {"p50_ms": statistics.median(latencies), "p95_ms": percentile(latencies, 0.95), "rps": total / seconds}


def bench_sql(organization, superuser_url: str, rounds: int) -> dict[bool, float]:
    """The study-search SQL alone (no HTTP, no Python view), under RLS and without: p50 in ms."""
    from django.db import transaction

    from medai.accounts.principal import Scope
    from medai.archive.models import Study
    from tenants.scope import set_transaction_scope

    samples: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for enabled in (True, False):
            set_rls(superuser_url, enabled=enabled)
            for i in range(200):
                with transaction.atomic():
                    set_transaction_scope(scope=Scope.ORGANIZATION, organization_id=organization.id)
                    started = time.perf_counter()
                    list(Study.objects.filter(organization_id=organization.id, patient_id=f"P0-{i % 500}")
                         .order_by("-study_date", "-id")[:50])
                    list(Study.objects.filter(organization_id=organization.id).order_by("-study_date", "-id")[:50])
                    samples[enabled].append((time.perf_counter() - started) * 1000)
    set_rls(superuser_url, enabled=True)
    return {enabled: statistics.median(values) for enabled, values in samples.items()}


def _merge(results: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="medai-bench-"))
    postgres = services.start_postgres(home / "pg")
    env = dict(os.environ, DATABASE_URL=postgres.url, MEDAI_HOME=str(home), DJANGO_SETTINGS_MODULE="medai.settings",
               CELERY_BROKER_URL="memory://", S3_ENDPOINT_URL="")
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    organizations, studies, instances = (5, 400, 5) if args.quick else (20, 2000, 25)
    started = time.perf_counter()
    organization, token = seed(organizations, studies, instances)
    print(f"seeded {organizations * studies} studies, {organizations * studies * instances} instances "
          f"in {time.perf_counter() - started:.1f} s")
    tokens = bench_token_validation(2000 if args.quick else 10000, organization)

    port = services.free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "medai.wsgi:application", "--chdir", str(ROOT / "platform"),
         "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "2", "--worker-class", "gthread"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    superuser_url = postgres.url.replace("medai:@/medai", "postgres:@/medai", 1)
    try:
        services.wait_until(lambda: services.http_ok(base_url + "/healthz"), timeout=60, what="gunicorn", process=web)
        seconds = 3 if args.quick else 8
        # Alternate on/off rounds so that drift in the machine's load hits both sides alike.
        rounds = {True: [], False: []}
        for _ in range(3 if args.quick else 5):
            for enabled in (True, False):
                set_rls(superuser_url, enabled=enabled)
                rounds[enabled].append(bench_qido(base_url, token, seconds, threads=4))
        set_rls(superuser_url, enabled=True)
        with_rls, without_rls = (_merge(rounds[enabled]) for enabled in (True, False))
        sql = bench_sql(organization, superuser_url, rounds=3 if args.quick else 5)
    finally:
        services.terminate(web)
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)

    overhead = (with_rls["p50_ms"] - without_rls["p50_ms"]) / without_rls["p50_ms"] * 100
    print()
    print(f"{'metric':44} {'value':>10}  target")
    print(f"{'token validation, warm JWKS, p50 (ms)':44} {tokens['validation_p50_ms']:10.3f}  <= 0.5")
    print(f"{'token validation, warm JWKS, p95 (ms)':44} {tokens['validation_p95_ms']:10.3f}")
    print(f"{'bearer authentication incl. scope, p50 (ms)':44} {tokens['authentication_p50_ms']:10.3f}")
    print(f"{'QIDO with RLS: p50 / p95 (ms)':44} {with_rls['p50_ms']:5.1f} / {with_rls['p95_ms']:5.1f}")
    print(f"{'QIDO without RLS: p50 / p95 (ms)':44} {without_rls['p50_ms']:5.1f} / {without_rls['p95_ms']:5.1f}")
    print(f"{'QIDO requests/s with / without RLS':44} {with_rls['rps']:5.0f} / {without_rls['rps']:5.0f}")
    print(f"{'RLS cost on QIDO p50 (%)':44} {overhead:10.1f}  <= 10")
    print(f"{'study search SQL alone, with / without RLS (ms)':44} {sql[True]:5.2f} / {sql[False]:5.2f}")


if __name__ == "__main__":
    main()
