"""/healthz and /readyz on the real web tier, and the same checks from the command line for workers."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from medai.runtime import services
from medai.runtime.services import free_port


def _dead_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


def test_healthz_answers_without_auth_or_dependencies(web_server_factory):
    # Every dependency down: being alive does not depend on them, so an outage restarts no pod.
    url = web_server_factory(S3_ENDPOINT_URL=_dead_url("http"), CELERY_BROKER_URL=_dead_url("redis"),
                             TRITON_URL=f"127.0.0.1:{free_port()}")
    response = requests.get(url + "/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response.headers["Cache-Control"]


def test_readyz_is_200_when_every_dependency_answers(web_server_factory, triton):
    url = web_server_factory(TRITON_URL=triton.url)
    response = requests.get(url + "/readyz", timeout=10)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert list(body["checks"]) == ["database", "broker", "storage", "triton"]
    for name, check in body["checks"].items():
        assert check["ok"] is True, name
        assert "error" not in check
        assert 0 <= check["latency_ms"] < 2000, name


def test_readyz_is_503_naming_the_storage_when_s3_is_down(web_server_factory, triton):
    url = web_server_factory(S3_ENDPOINT_URL=_dead_url("http"), TRITON_URL=triton.url)
    response = requests.get(url + "/readyz", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    failed = {name for name, check in body["checks"].items() if not check["ok"]}
    assert failed == {"storage"}
    assert "StorageUnavailable" in body["checks"]["storage"]["error"]


def test_readyz_reports_broker_and_triton_outages_within_its_timeout(web_server_factory):
    url = web_server_factory(CELERY_BROKER_URL=_dead_url("redis"), TRITON_URL=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    response = requests.get(url + "/readyz", timeout=10)
    assert time.monotonic() - started < 5  # inside the chart's probe timeout
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert {name for name, check in checks.items() if not check["ok"]} == {"broker", "triton"}
    assert checks["database"]["ok"] and checks["storage"]["ok"]


def test_the_checks_run_from_the_command_line_for_pods_without_http():
    env = dict(os.environ)
    ok = subprocess.run([sys.executable, "-m", "medai.health", "broker", "storage"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    env["CELERY_BROKER_URL"] = _dead_url("redis")
    down = subprocess.run([sys.executable, "-m", "medai.health", "broker", "storage"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 1
    assert '"broker": {"ok": false' in down.stdout


def test_healthz_never_touches_the_database_and_readyz_reports_it_down(client):
    # No django_db mark: pytest-django makes every database access raise, as an outage would.
    # Under ATOMIC_REQUESTS a view that opened the request's transaction would fail before running.
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["ok"] is False


def test_gunicorn_with_the_image_config_finishes_requests_in_flight_on_sigterm(tmp_path):
    # Triton that accepts connections and never answers: /readyz stays in flight ~2 s.
    with socket.socket() as silent_triton:
        silent_triton.bind(("127.0.0.1", 0))
        silent_triton.listen(16)
        port = free_port()
        env = dict(os.environ, GUNICORN_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1",
                   GUNICORN_GRACEFUL_TIMEOUT="20", TRITON_URL=f"127.0.0.1:{silent_triton.getsockname()[1]}")
        log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:medai.gunicorn_conf"],
                                   cwd=Path(__file__).parents[1] / "platform", env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            services.wait_until(lambda: services.http_ok(url + "/healthz"), timeout=60, what="gunicorn",
                                process=process)
            answers = []
            request = threading.Thread(target=lambda: answers.append(requests.get(url + "/readyz", timeout=30)))
            request.start()
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            request.join(30)
            assert process.wait(timeout=30) == 0
        finally:
            services.terminate(process)
            log.close()
    assert answers, "the request in flight was cut off"
    assert answers[0].status_code == 503
    assert answers[0].json()["checks"]["triton"]["ok"] is False


def test_readyz_runs_only_the_checks_the_settings_name(client, settings):
    # Web pods may leave Triton out (HEALTH_READY_CHECKS), so its outage keeps STOW and QIDO served.
    settings.HEALTH_READY_CHECKS = ["broker", "storage"]
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert list(response.json()["checks"]) == ["broker", "storage"]
