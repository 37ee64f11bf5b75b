"""Health endpoints for the probes: `/healthz` (the process answers) and `/readyz` (its dependencies do).

`/readyz` checks the database (`SELECT 1`), the Celery broker, the object store and Triton, each with
a short timeout, and answers 503 when any fails. The body names every check with `ok`, `latency_ms`
and, on failure, `error`. Neither view needs authentication, so the Ingress does not route them:
only the kubelet and the cluster reach them.

The same checks run without HTTP for pods that serve none (Celery workers and beat):
`python -m medai.health database broker` exits 1 when one fails.
"""

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection, transaction
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CHECK_TIMEOUT_SECONDS = 2.0
ALL_CHECKS = ("database", "broker", "storage", "triton")

# Checks other than the database run here so that one hung dependency costs the probe
# CHECK_TIMEOUT_SECONDS, not the sum of every client's own retries. A check still hung when the
# next probe comes keeps its thread; the pool's bound keeps that from growing.
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")


def check_database() -> None:
    # In the request's thread: Django's connections are per thread.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    from kombu import Connection

    timeouts = {"socket_connect_timeout": CHECK_TIMEOUT_SECONDS, "socket_timeout": CHECK_TIMEOUT_SECONDS}
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, **timeouts}
    with Connection(
        settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_SECONDS, transport_options=options
    ) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_SECONDS)
        client = getattr(conn.default_channel, "client", None)
        if client is not None and hasattr(client, "ping"):  # Redis: a round trip, not just a socket
            client.ping()


def check_storage() -> None:
    from medai.archive.storage import get_storage

    get_storage().check()


def check_triton() -> None:
    url = settings.TRITON_URL
    if settings.TRITON_PROTOCOL == "http":
        base = url if "://" in url else f"http://{url}"
        with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=CHECK_TIMEOUT_SECONDS) as response:
            if response.status != 200:
                raise RuntimeError(f"Triton answered {response.status}")
        return
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    try:
        if not client.is_server_ready(client_timeout=CHECK_TIMEOUT_SECONDS):
            raise RuntimeError("Triton is not ready")
    finally:
        client.close()


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
    "triton": check_triton,
}


def enabled_checks() -> tuple[str, ...]:
    """The checks this process runs: settings.HEALTH_READY_CHECKS, or all when it is empty."""
    return tuple(settings.HEALTH_READY_CHECKS or ALL_CHECKS)


def _timed(check: Callable[[], None]) -> dict:
    started = time.monotonic()
    try:
        check()
        result = {"ok": True}
    except Exception as exc:  # any failure is a failed check, reported by name
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def run_checks(names: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Run the named checks (default: the enabled ones); returns {name: {ok, latency_ms[, error]}}."""
    names = names or enabled_checks()
    unknown = set(names) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown health checks: {sorted(unknown)}")
    started = time.monotonic()
    futures = {name: _pool.submit(_timed, CHECKS[name]) for name in names if name != "database"}
    results = {"database": _timed(check_database)} if "database" in names else {}
    for name, future in futures.items():
        remaining = CHECK_TIMEOUT_SECONDS + 1 - (time.monotonic() - started)
        try:
            results[name] = future.result(timeout=max(remaining, 0))
        except FutureTimeout:
            elapsed = round((time.monotonic() - started) * 1000, 1)
            results[name] = {"ok": False, "error": "timed out", "latency_ms": elapsed}
    return {name: results[name] for name in names}


# Outside ATOMIC_REQUESTS: opening the request's transaction would touch the database before the
# view runs, turning a database outage into a 500 here (and a failed liveness probe).
@transaction.non_atomic_requests
@never_cache
@require_GET
def healthz(request):
    """Alive: the process serves requests. Touches no dependency, so an outage restarts nothing."""
    return JsonResponse({"status": "ok"})


@transaction.non_atomic_requests
@never_cache
@require_GET
def readyz(request):
    checks = run_checks()
    ok = all(result["ok"] for result in checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


def main(argv: list[str]) -> int:
    """`python -m medai.health [CHECK ...]`: the readiness checks for pods without HTTP."""
    import os

    import django

    from medai.paths import add_platform_to_path

    add_platform_to_path()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medai.settings")
    django.setup()
    checks = run_checks(tuple(argv) or None)
    print(json.dumps(checks))
    return 0 if all(result["ok"] for result in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
