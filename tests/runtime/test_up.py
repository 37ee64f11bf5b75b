"""`medai up` for real: embedded servers, demo data, credentials for scripts, a clean Ctrl-C, a restart
that keeps the data. It starts its own PostgreSQL, Redis and Triton, so it takes a few seconds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from medai.runtime.services import free_port

ROOT = Path(__file__).resolve().parents[2]
OWN_SERVERS = ("DATABASE_URL", "CELERY_BROKER_URL", "S3_ENDPOINT_URL", "TRITON_URL", "KEYCLOAK_URL")


def start(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in OWN_SERVERS}
    env["MEDAI_HOME"] = str(home)
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "up", "--port", str(port)], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_until_up(home: Path, process: subprocess.Popen, log: Path, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        if "Ctrl-C stops everything" in log.read_text():
            return json.loads((home / "credentials.json").read_text())
        time.sleep(0.5)
    raise TimeoutError(log.read_text()[-3000:])


def descendants(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            children |= {child} | descendants(child)
    return children


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()
            and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()}


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=60)


def test_up_serves_demo_tenants_stops_cleanly_and_keeps_state(tmp_path):
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    process = start(home, port, tmp_path / "first.log")
    try:
        credentials = wait_until_up(home, process, tmp_path / "first.log")
        children = descendants(process.pid)
        assert credentials["base_url"] == f"http://127.0.0.1:{port}"
        assert credentials["dicomweb_url"] == f"http://127.0.0.1:{port}/dicomweb"
        assert oct((home / "credentials.json").stat().st_mode)[-3:] == "600"
        roles = {u["role"] for u in credentials["users"]}
        assert roles == {"platform_admin", "ministry_analyst", "regional_admin", "org_admin", "radiologist",
                         "uploader", "finance"}
        pacs = next(u for u in credentials["users"] if u["role"] == "uploader")
        qido = f"{credentials['dicomweb_url']}/studies"
        assert requests.get(qido, headers={"Authorization": f"Bearer {pacs['token']}"}, timeout=10).status_code == 200
        assert requests.get(qido, timeout=10).status_code == 401
        ready = requests.get(f"{credentials['base_url']}/readyz", timeout=30).json()
        assert all(check["ok"] for check in ready["checks"].values()), ready
        assert set(ready["checks"]) >= {"database", "broker", "storage", "triton"}
    finally:
        code = stop(process)
    assert code == 0
    assert alive(children) == set()

    process = start(home, port, tmp_path / "second.log")
    try:
        again = wait_until_up(home, process, tmp_path / "second.log")
        assert [(u["username"], u["password"], u["token"]) for u in again["users"]] == [
            (u["username"], u["password"], u["token"]) for u in credentials["users"]]
        login = requests.Session()
        page = login.get(f"{again['base_url']}/accounts/login/", timeout=10)
        response = login.post(f"{again['base_url']}/accounts/login/?next=/",
                              data={"username": "admin", "password": again["users"][0]["password"],
                                    "csrfmiddlewaretoken": login.cookies["csrftoken"]},
                              headers={"Referer": page.url}, timeout=10)
        assert "platform_admin" in response.text
    finally:
        assert stop(process) == 0
