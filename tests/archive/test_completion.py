"""A study is complete after a quiet time or on request, and `study_completed` fires exactly once."""

import threading
import time

import pytest
import requests
from celery.contrib.testing.worker import start_worker
from celery.signals import task_success

from medai.archive.models import Study
from medai.archive.synthetic import make_series, to_bytes
from medai.archive.tasks import complete_quiet_studies
from medai.celery_app import app
from tests.dicomweb.stow_client import multipart, stow


@pytest.fixture
def completions(transactional_db):
    """Run a real Celery worker on the test broker and record each `study_completed` it executes."""
    done: list[int] = []
    lock = threading.Lock()

    def record(sender=None, **kwargs):
        if sender.name == "archive.study_completed":
            with lock:
                done.append(sender.request.args[0])

    task_success.connect(record, weak=False)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield done
    task_success.disconnect(record)


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_complete_on_request_fires_once(live_platform, tenant_factory, completions):
    organization, token = tenant_factory()
    series = make_series(count=2)
    assert stow(live_platform, token, multipart([to_bytes(ds) for ds in series])).status_code == 200
    study_uid = str(series[0].StudyInstanceUID)
    url = f"{live_platform}/api/v1/studies/{study_uid}/complete"
    headers = {"Authorization": f"Bearer {token}"}
    first = requests.post(url, headers=headers, timeout=10)
    second = requests.post(url, headers=headers, timeout=10)
    assert first.status_code == second.status_code == 200
    assert (first.json()["status"], first.json()["newly_completed"]) == ("complete", True)
    assert second.json()["newly_completed"] is False
    study = Study.objects.get(organization=organization, study_instance_uid=study_uid)
    assert wait_for(lambda: completions == [study.id])
    time.sleep(1.0)
    assert completions == [study.id]


def test_quiet_studies_complete_once(live_platform, tenant_factory, completions, settings):
    settings.STUDY_QUIET_SECONDS = 1
    organization, token = tenant_factory()
    series = make_series(count=1)
    assert stow(live_platform, token, multipart([to_bytes(ds) for ds in series])).status_code == 200
    assert complete_quiet_studies() == 0  # still within the quiet time
    time.sleep(1.2)
    assert complete_quiet_studies() == 1
    assert complete_quiet_studies() == 0
    study = Study.objects.get(organization=organization)
    assert study.status == Study.Status.COMPLETE
    assert wait_for(lambda: completions == [study.id])


def test_another_tenant_cannot_complete_a_study(live_platform, tenant_factory):
    organization, token = tenant_factory()
    _, other_token = tenant_factory(region_code="RU-SPE")
    series = make_series(count=1)
    assert stow(live_platform, token, multipart([to_bytes(ds) for ds in series])).status_code == 200
    url = f"{live_platform}/api/v1/studies/{series[0].StudyInstanceUID}/complete"
    response = requests.post(url, headers={"Authorization": f"Bearer {other_token}"}, timeout=10)
    assert response.status_code == 404
    assert Study.objects.get(organization=organization).status == Study.Status.RECEIVING
