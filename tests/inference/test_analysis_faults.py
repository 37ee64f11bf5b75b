"""Faults on the way to a result: Triton down, a model answering the wrong tensors, a worker killed
mid-task, a study completed twice. Each ends with one answer per analysis, nothing lost, nothing doubled."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from billing.models import BillableService
from inference import triton as triton_client
from inference.phantoms import chest_radiograph
from inference.records import AIService, Analysis, WorklistEntry
from inference.scheduling import analyses_dispatch
from inference.services import study_route
from medai.archive.models import Instance
from medai.archive.services import study_complete
from tests.conftest import ROOT, _database_url_of
from tests.inference.conftest import finished, wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def closed_breakers():
    triton_client.breakers_reset()
    yield
    triton_client.breakers_reset()


def results_in_study(study) -> list[str]:
    """Modalities of the objects the platform added to the study (SR and SC)."""
    return list(Instance.objects.filter(study=study, series__modality__in=["SR", "OT"])
                .values_list("series__modality", flat=True))


def test_triton_down_fails_with_a_reason_after_retries_and_the_study_stays_on_the_worklist(
    tenant_factory, reference_services, archived_study, analysis_worker, triton, settings
):
    host, port = triton.url.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    proxy.cut()
    settings.TRITON_URL = f"127.0.0.1:{proxy.port}"
    settings.TRITON_RETRIES = 1
    settings.TRITON_RETRY_BACKOFF_SECONDS = 0.05
    settings.INFERENCE_MAX_ATTEMPTS = 2
    organization, _ = tenant_factory()
    reference_services(autonomous_organizations=[organization])
    study = archived_study(organization, [chest_radiograph(size=64)[0]])
    [analysis] = study_route(study_id=study.id)
    analyses_dispatch()
    analysis = wait_for(lambda: finished(analysis))
    assert analysis.status == Analysis.Status.FAILED
    assert analysis.attempt == 2
    assert "недоступен" in analysis.reason
    assert WorklistEntry.objects.get(study=study).status == WorklistEntry.Status.READY
    assert results_in_study(study) == ["SR"]  # the *not analysable* answer, no markings
    assert not BillableService.objects.filter(analysis_id=analysis.id).exists()  # a result is billed, even held


def test_a_model_answering_other_tensors_fails_without_retries(
    tenant_factory, reference_services, archived_study, analysis_worker
):
    organization, _ = tenant_factory()
    reference_services()
    AIService.objects.filter(code="ref-chest-xray").update(triton_model="pixel_stats")
    study = archived_study(organization, [chest_radiograph(size=64)[0]])
    [analysis] = study_route(study_id=study.id)
    analyses_dispatch()
    analysis = wait_for(lambda: finished(analysis))
    assert (analysis.status, analysis.reason_code, analysis.attempt) == (Analysis.Status.FAILED, "bad_model_answer", 1)
    assert analysis.probability is None


def test_the_same_study_completed_twice_is_analysed_once(
    tenant_factory, reference_services, archived_study, analysis_worker
):
    organization, _ = tenant_factory()
    reference_services()
    study = archived_study(organization, [chest_radiograph(size=64, lesions=1)[0]])
    assert study_complete(study=study) is True
    assert study_complete(study=study) is False
    study_route(study_id=study.id)  # as if the completion task ran again after a crash
    analysis = wait_for(lambda: Analysis.objects.filter(study=study).first())
    analysis = wait_for(lambda: finished(analysis))
    assert analysis.status == Analysis.Status.SUCCEEDED
    time.sleep(1.0)
    assert Analysis.objects.filter(study=study).count() == 1
    assert sorted(results_in_study(study)) == ["OT", "SR"]


def start_worker_process(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "medai", "worker", "--pool", "prefork", "--concurrency", "1",
         "--without-heartbeat", "--without-mingle", "--without-gossip"],
        cwd=ROOT / "platform", env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def test_a_worker_killed_mid_task_still_yields_exactly_one_result(
    tenant_factory, reference_services, archived_study, transactional_db, triton, settings, storage_backend
):
    from django.db import connection

    host, port = triton.url.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    proxy.cut()  # the first run hangs in its retries until it is killed
    settings.INFERENCE_LEASE_SECONDS = 3
    env = dict(os.environ, DATABASE_URL=_database_url_of(connection.settings_dict),
               TRITON_URL=f"127.0.0.1:{proxy.port}", TRITON_RETRIES="1000", TRITON_RETRY_BACKOFF_SECONDS="0.1",
               INFERENCE_LEASE_SECONDS="3", **storage_backend)
    log = Path(os.environ["MEDAI_HOME"]) / "killed-worker.log"
    organization, _ = tenant_factory()
    reference_services()
    study = archived_study(organization, [chest_radiograph(size=64, lesions=1)[0]])
    [analysis] = study_route(study_id=study.id)
    analyses_dispatch()
    worker = start_worker_process(env, log)
    try:
        wait_for(lambda: Analysis.objects.filter(id=analysis.id, status=Analysis.Status.RUNNING).exists())
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        proxy.restore()
        worker = start_worker_process(env, log)
        time.sleep(3.5)  # the lease runs out; the beat's dispatch puts the analysis back in the queue
        analyses_dispatch()
        wait_for(lambda: Analysis.objects.filter(id=analysis.id, status=Analysis.Status.QUEUED).exists()
                 or finished(analysis), timeout=10)
        analyses_dispatch()
        analysis = wait_for(lambda: finished(analysis), timeout=90)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    assert analysis.status == Analysis.Status.SUCCEEDED
    assert analysis.attempt == 2
    assert sorted(results_in_study(study)) == ["OT", "SR"]
