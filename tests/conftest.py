"""Real servers for the whole test session: PostgreSQL, Redis, an S3 server, Triton and the web tier.

`pytest_configure` runs before pytest-django imports the settings, so the embedded servers are
started (unless DATABASE_URL / CELERY_BROKER_URL / S3_ENDPOINT_URL point at running ones) and their
URLs exported first. Triton and the gunicorn web tier start lazily, once, for the tests that use them.
"""

import concurrent.futures
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "platform"))

from medai.runtime import services  # noqa: E402

_started: list = []
ARTIFACTS = ROOT / "test-artifacts"


def pytest_configure(config) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medai.settings")
    home = Path(tempfile.mkdtemp(prefix="medai-test-"))
    os.environ.setdefault("MEDAI_HOME", str(home))
    if "DATABASE_URL" not in os.environ:
        _started.append(services.start_postgres(home / "pg"))
        os.environ["DATABASE_URL"] = _started[-1].url
    if "CELERY_BROKER_URL" not in os.environ:
        _started.append(services.start_redis(home / "redis" / "redis.db"))
        os.environ["CELERY_BROKER_URL"] = _started[-1].url
    if "S3_ENDPOINT_URL" not in os.environ:
        _started.append(services.start_s3(log_file=home / "s3.log"))
        os.environ["S3_ENDPOINT_URL"] = _started[-1].url
    import django

    django.setup()
    from django.db.backends.signals import connection_created

    connection_created.connect(_see_every_tenant, weak=False)


def _see_every_tenant(sender, connection, **kwargs) -> None:
    """The test process inspects every tenant's rows, so its sessions default to national scope.
    Requests still set their own scope per transaction; the web servers under test have no default."""
    with connection.cursor() as cursor:
        cursor.execute("SET medai.scope = 'national'")


_keycloak = {}


def pytest_collection_modifyitems(session, config, items) -> None:
    """Start Keycloak in the background as soon as a collected test needs it: it takes a minute to boot."""
    if os.environ.get("KEYCLOAK_URL") or not any("keycloak" in item.fixturenames for item in items):
        return
    realm_file = ROOT / "platform" / "medai" / "accounts" / "realm.json"
    log_file = Path(os.environ["MEDAI_HOME"]) / "keycloak.log"
    future = concurrent.futures.ThreadPoolExecutor(1).submit(services.start_keycloak, realm_file, log_file=log_file)
    _keycloak["future"] = future


def pytest_unconfigure(config) -> None:
    if "future" in _keycloak and not _keycloak["future"].exception(timeout=400):
        _keycloak["future"].result().stop()
    while _started:
        _started.pop().stop()


@pytest.fixture(scope="session")
def triton() -> services.RunningService:
    """The real tritonserver serving `inference/models` (or the one at TRITON_URL / TRITON_HTTP_URL)."""
    if os.environ.get("TRITON_URL"):
        yield services.RunningService("triton", os.environ["TRITON_URL"], stop=lambda: None,
                                      http_url=os.environ.get("TRITON_HTTP_URL", ""))
        return
    from inference.triton import MODEL_REPOSITORY

    server = services.start_triton(MODEL_REPOSITORY, Path(os.environ["MEDAI_HOME"]) / "triton")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def keycloak() -> services.RunningService:
    """Keycloak in dev mode with the platform's realm (or the one at KEYCLOAK_URL)."""
    if os.environ.get("KEYCLOAK_URL"):
        return services.RunningService("keycloak", os.environ["KEYCLOAK_URL"], stop=lambda: None)
    return _keycloak["future"].result(timeout=400)


def _database_url_of(settings_dict: dict) -> str:
    """DATABASE_URL with the test database's name in place of the configured one."""
    return urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + settings_dict["NAME"]).geturl()


def _file_size_limit(env: dict[str, str]):
    """For the child only: this process keeps writing its own files meanwhile."""
    limit = env.get("MEDAI_TEST_RLIMIT_FSIZE")
    if limit is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.fixture(scope="session")
def web_server_factory(django_db_setup, django_db_blocker):
    """Start gunicorn on the test database with extra settings; the same server for the same settings.
    MEDAI_TEST_RLIMIT_FSIZE=N starts it under `ulimit -f` (bytes): its writes past N bytes of a file fail
    as on a full disk."""
    from django.db import connection

    servers: dict[tuple, services.RunningService] = {}

    def start(**env_overrides: str) -> str:
        key = tuple(sorted(env_overrides.items()))
        if key not in servers:
            port = services.free_port()
            env = dict(os.environ, DATABASE_URL=_database_url_of(connection.settings_dict), **env_overrides)
            workers = env.pop("WEB_WORKERS", "2")
            log = open(Path(os.environ["MEDAI_HOME"]) / f"gunicorn-{port}.log", "ab")  # noqa: SIM115
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "medai.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", workers, "--threads", "4", "--worker-class", "gthread", "--timeout", "300",
                 "--chdir", str(ROOT / "platform")],
                env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_file_size_limit(env),
            )
            url = f"http://127.0.0.1:{port}"
            services.wait_until(lambda: services.http_ok(url + "/api/schema/"), timeout=60,
                                what="web server", process=process)
            servers[key] = services.RunningService("web", url, stop=lambda p=process: services.terminate(p),
                                                   process=process)
        return servers[key].url

    yield start
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session", params=["s3", "local"])
def storage_backend(request) -> dict[str, str]:
    """The archive's tests run on both storage backends: the S3 server, and local files."""
    if request.param == "s3":
        return {"S3_ENDPOINT_URL": os.environ["S3_ENDPOINT_URL"]}
    return {"S3_ENDPOINT_URL": "", "MEDAI_HOME": tempfile.mkdtemp(prefix="medai-local-")}


@pytest.fixture
def use_storage(settings, storage_backend):
    """Point this process's settings at the parametrised backend, matching the web server's."""
    settings.S3_ENDPOINT_URL = storage_backend["S3_ENDPOINT_URL"]
    if "MEDAI_HOME" in storage_backend:
        settings.LOCAL_STORAGE_ROOT = Path(storage_backend["MEDAI_HOME"]) / "objects"
    from medai.archive.storage import get_storage

    return get_storage()


@pytest.fixture
def live_platform(transactional_db, web_server_factory, storage_backend, use_storage) -> str:
    """The web tier (gunicorn) on the test database and the parametrised storage backend."""
    return web_server_factory(**storage_backend)


@pytest.fixture
def tenant_factory(transactional_db):
    """Make a region, an organization and a user of it with a role; returns (organization, token)."""
    from medai.accounts.models import Role
    from medai.accounts.services import api_token_create, user_ensure
    from tenants.services import organization_ensure, region_ensure

    counter = iter(range(1, 10_000))

    def make(*, region_code: str = "RU-MOW", role: Role = Role.UPLOADER):
        n = next(counter)
        region = region_ensure(code=region_code, name=f"Region {region_code}")
        # Six digits, as the OMS registry codes them; the first two differ between the test regions.
        oms_code = f"{sum(map(ord, region_code)) % 90 + 10}{n:04d}"
        organization = organization_ensure(region=region, oms_code=oms_code, name=f"Clinic {n}")
        user = user_ensure(username=f"{region_code}-{n}-{role}", role=role, organization=organization)
        return organization, api_token_create(user=user)

    return make


@pytest.fixture
def api_client_for(transactional_db):
    """An in-process API client authenticated as a new user with a role at a scope."""
    from rest_framework.test import APIClient

    from medai.accounts.services import api_token_create, user_ensure

    counter = iter(range(1, 10_000))

    def make(role, *, region=None, organization=None) -> APIClient:
        user = user_ensure(username=f"{role}-{next(counter)}", role=role, region=region, organization=organization)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user)}")
        return client

    return make


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def reference_services(transactional_db):
    """The reference services of `medai up`, enabled in every region that exists when called."""
    from inference.demo import reference_services_load

    def load(*, autonomous_organizations=()):
        return {s.code: s for s in reference_services_load(autonomous_organizations=list(autonomous_organizations))}

    return load


@pytest.fixture
def archived_study(use_storage):
    """Store data sets as one receive batch of an organization; returns the Study."""

    from medai.archive.models import Study
    from medai.archive.services import ReceiveBatch
    from tests.archive.test_receive_batch import store_all

    def store(organization, datasets) -> Study:
        with ReceiveBatch(organization=organization, storage=use_storage) as batch:
            store_all(batch, datasets)
        return Study.objects.get(organization=organization, study_instance_uid=str(datasets[0].StudyInstanceUID))

    return store


def _worker_in_this_process(concurrency: int):
    from celery.contrib.testing.worker import start_worker

    from medai.celery_app import app

    return start_worker(app, pool="threads", concurrency=concurrency, perform_ping_check=False, shutdown_timeout=30)


@pytest.fixture
def worker(transactional_db):
    """A real Celery worker in this process, consuming the test broker."""
    with _worker_in_this_process(2):
        yield


@pytest.fixture
def analysis_worker(transactional_db, triton, settings):
    """A real Celery worker in this process, consuming the test broker, calling the real Triton."""
    settings.TRITON_URL = triton.url
    settings.TRITON_PROTOCOL = "grpc"
    with _worker_in_this_process(4):
        yield
