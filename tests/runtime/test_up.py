"""`medai up` for real, as a user runs it: embedded servers, demo data, credentials for scripts, a clean
stop on Ctrl-C and on SIGTERM, and a restart that keeps the data.

Slow on purpose (about a minute: two full starts and stops of PostgreSQL, Redis, Triton, Celery and
gunicorn) and it runs in CI: `medai up` is the first thing anyone runs, and nothing else covers it.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from medai.archive.synthetic import make_instance, to_bytes
from medai.runtime.services import free_port
from tests.dicomweb.stow_client import multipart, stow
from tests.inference.conftest import wait_for

pytestmark = pytest.mark.timeout(360)

ROOT = Path(__file__).resolve().parents[2]
MEDAI = str(Path(sys.executable).parent / "medai")  # the console script, as the README runs it
# The test session's own servers: `medai up` must start its own instead.
OWN_SERVERS = ("DATABASE_URL", "CELERY_BROKER_URL", "S3_ENDPOINT_URL", "TRITON_URL", "TRITON_HTTP_URL",
               "KEYCLOAK_URL", "HEALTH_READY_CHECKS")
ROLES = {"platform_admin", "ministry_analyst", "regional_admin", "org_admin", "radiologist", "uploader", "finance"}


def start(home: Path, port: int, log: Path) -> subprocess.Popen:
    """In a session of its own, so that a signal to its process group is a Ctrl-C at its terminal."""
    env = {k: v for k, v in os.environ.items() if k not in OWN_SERVERS}
    env["MEDAI_HOME"] = str(home)
    with open(log, "wb") as out:
        return subprocess.Popen([MEDAI, "up", "--port", str(port)], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_up(home: Path, process: subprocess.Popen, log: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        if "Ctrl-C stops everything" in log.read_text():
            return json.loads((home / "credentials.json").read_text())
        time.sleep(0.5)
    raise TimeoutError(log.read_text()[-3000:])


def platform_processes(pid: int, home: Path) -> list[psutil.Process]:
    """Its children, and the servers that detach from it (PostgreSQL, Redis) found by their home folder."""
    found = {child.pid: child for child in psutil.Process(pid).children(recursive=True)}
    for process in psutil.process_iter(["cwd", "cmdline"]):
        if (process.info["cwd"] or "").startswith(str(home)) or str(home) in " ".join(process.info["cmdline"] or []):
            found |= {p.pid: p for p in [process, *process.children(recursive=True)]}
    assert len(found) >= 5, found  # at least gunicorn, celery, Triton, Redis and PostgreSQL
    return list(found.values())


def still_running(processes: list[psutil.Process]) -> list[str]:
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return running


def stop(process: subprocess.Popen, how: str) -> int:
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does: the whole foreground group gets it
    else:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=90)


def bearer(user: dict) -> dict:
    return {"Authorization": f"Bearer {user['token']}"}


def studies_of(credentials: dict, user: dict) -> set[str]:
    """The Study Instance UIDs a user finds over QIDO-RS."""
    found = requests.get(f"{credentials['dicomweb_url']}/studies", headers=bearer(user), timeout=10)
    assert found.status_code == 200
    return {s["0020000D"]["Value"][0] for s in found.json()}


def wait_for_analyses(credentials: dict, ministry: dict, *, count: int) -> None:
    """Until the nation's figures show `count` studies analysed (the worker runs them as they come)."""

    def analysed() -> bool:
        [totals] = requests.get(f"{credentials['base_url']}/api/v1/stats", headers=bearer(ministry),
                                params={"level": "national"}, timeout=30).json()["rows"] or [{"analysed": 0}]
        return isinstance(totals["analysed"], int) and totals["analysed"] >= count  # "<5" while few

    wait_for(analysed, timeout=180, interval=1)


def test_up_serves_demo_tenants_stops_cleanly_and_keeps_state(tmp_path):
    home, port = tmp_path / "home", free_port()
    process = start(home, port, tmp_path / "first.log")
    try:
        credentials = wait_until_up(home, process, tmp_path / "first.log")
        processes = platform_processes(process.pid, home)
        assert credentials["base_url"] == f"http://127.0.0.1:{port}"
        assert credentials["dicomweb_url"] == f"http://127.0.0.1:{port}/dicomweb"
        assert (home / "credentials.json").stat().st_mode & 0o777 == 0o600
        assert {u["role"] for u in credentials["users"]} == ROLES
        users = {u["username"]: u for u in credentials["users"]}
        pacs = next(u for u in credentials["users"] if u["role"] == "uploader")
        assert pacs["organization"] and pacs["region"] == "RU-MOW"
        said = (tmp_path / "first.log").read_text()  # what the person at the terminal reads
        assert "PostgreSQL (pgserver)" in said and "database migrations" in said
        assert f"http://127.0.0.1:{port}/dashboard/" in said and f"http://127.0.0.1:{port}/dicomweb" in said
        assert all(f"password {u['password']}   token {u['token']}" in said for u in credentials["users"])
        assert "10 demo studies stored and completed" in said  # five for each demo PACS
        demo_studies = studies_of(credentials, pacs)
        assert len(demo_studies) == 5

        qido = f"{credentials['dicomweb_url']}/studies"
        assert requests.get(qido, headers=bearer(pacs), timeout=10).status_code == 200
        assert requests.get(qido, timeout=10).status_code == 401
        study = make_instance(modality="DX")
        assert stow(credentials["base_url"], pacs["token"], multipart([to_bytes(study)])).status_code == 200

        triton = credentials["triton_http_url"]
        assert requests.get(f"{triton}/v2/health/ready", timeout=10).status_code == 200
        models = requests.post(f"{triton}/v2/repository/index", json={}, timeout=10).json()
        assert models and all(model["state"] == "READY" for model in models), models
        tariffs = requests.get(f"{credentials['base_url']}/api/v1/billing/tariffs",
                               headers=bearer(users["moscow-finance"]), timeout=10).json()["results"]
        assert {(t["region"], t["study_kind"], t["price"]) for t in tariffs} >= {("RU-MOW", "mammography", "239.00")}
        ready = requests.get(f"{credentials['base_url']}/readyz", timeout=30).json()
        assert set(ready["checks"]) == {"database", "broker", "storage", "triton"}
        assert all(check["ok"] for check in ready["checks"].values()), ready
        # The demo studies are analysed as any study: in the nation's figures; and in the polyclinic that
        # enabled autonomy, its normal radiographs closed by AI and its pathologies flagged.
        wait_for_analyses(credentials, users["ministry"], count=10)
        [clinic] = requests.get(f"{credentials['base_url']}/api/v1/stats", headers=bearer(users["gp2-admin"]),
                                timeout=30).json()["rows"]
        assert clinic["analysed"] == 5 and clinic["autonomous"] >= 1 and clinic["flagged"] >= 1, clinic
    finally:
        code = stop(process, "ctrl-c")
    assert code == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert still_running(processes) == []
    assert not (home / "pgdata" / "postmaster.pid").exists()

    process = start(home, port, tmp_path / "second.log")
    try:
        again = wait_until_up(home, process, tmp_path / "second.log")
        processes = platform_processes(process.pid, home)
        assert {u["username"]: (u["password"], u["token"]) for u in again["users"]} == {
            name: (u["password"], u["token"]) for name, u in users.items()}
        assert studies_of(again, pacs) == {*demo_studies, study.StudyInstanceUID}  # no demo studies sent again
        found = requests.get(f"{again['dicomweb_url']}/studies", params={"StudyInstanceUID": study.StudyInstanceUID},
                             headers=bearer(pacs), timeout=10)
        assert [s["0020000D"]["Value"][0] for s in found.json()] == [study.StudyInstanceUID]
        other_clinic = requests.get(f"{again['dicomweb_url']}/studies", headers=bearer(users["gp37-pacs"]),
                                    params={"StudyInstanceUID": study.StudyInstanceUID}, timeout=10)
        assert other_clinic.status_code == 200 and other_clinic.json() == []  # another tenant's study

        login = requests.Session()
        page = login.get(f"{again['base_url']}/accounts/login/", timeout=10)
        response = login.post(f"{again['base_url']}/accounts/login/?next=/",
                              data={"username": "admin", "password": users["admin"]["password"],
                                    "csrfmiddlewaretoken": login.cookies["csrftoken"]},
                              headers={"Referer": page.url}, timeout=10)
        assert "platform_admin" in response.text
        admin_site = login.get(f"{again['base_url']}/admin/", timeout=10)
        assert admin_site.url == f"{again['base_url']}/admin/" and "/admin/tenants/region/" in admin_site.text
    finally:
        code = stop(process, "sigterm")
    assert code == 0, (tmp_path / "second.log").read_text()[-3000:]
    assert still_running(processes) == []
