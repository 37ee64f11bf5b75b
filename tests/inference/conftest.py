"""Fixtures of AI analysis: the reference services, studies stored straight into the archive.

Imports of Django code stay inside the fixtures: pytest loads this file before Django is set up
when it is named on the command line."""

import os

import pytest


@pytest.fixture(scope="session")
def storage_backend() -> dict[str, str]:
    """AI analysis reads and writes through the archive, whose tests cover both backends: S3 suffices here."""
    return {"S3_ENDPOINT_URL": os.environ["S3_ENDPOINT_URL"]}


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


@pytest.fixture
def analysis_worker(transactional_db, triton, settings):
    """A real Celery worker in this process, consuming the test broker, calling the real Triton."""
    from celery.contrib.testing.worker import start_worker

    from medai.celery_app import app

    settings.TRITON_URL = triton.url
    settings.TRITON_PROTOCOL = "grpc"
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30):
        yield


def wait_for(condition, timeout: float = 60.0, interval: float = 0.2):
    """Poll until `condition()` is truthy; returns its value, or fails the test with what it last saw."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            assert value, f"still not true after {timeout} s"
            return value
        time.sleep(interval)
