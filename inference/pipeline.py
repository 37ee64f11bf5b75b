"""One run of one analysis: audit the input, load it, call the model, store the SR and SC, finish.

A run works in short scoped transactions around the slow parts (storage, Triton), never holding a
row lock while the model thinks. It claims the analysis first (`analysis_claim` gives it an attempt
number) and stores its result only if that attempt is still the current one, so a duplicate task, or
a run that outlived its lease, stores nothing: one result per analysis, whatever the retries.
"""

import hashlib
import io
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

from inference import services, triton
from inference.outcome import Mark, Outcome
from inference.profiles import InputRejected, profile_for
from inference.profiles.base import decode_ahead
from inference.quality.services import defects_record
from inference.quality.technological import StoredResult, result_findings
from inference.records import AIService, Analysis
from inference.result_uids import result_uid
from inference.sc import build_marked_images
from inference.sr import ServiceIdentity, build_not_analysable_report, build_report
from medai.archive.dicomfile import read_received
from medai.archive.models import Instance, StudyAccess
from medai.archive.services import ReceiveBatch
from medai.archive.storage import get_storage
from tenants.models import MedicalOrganization
from tenants.scope import organization_scope

logger = logging.getLogger(__name__)

TRANSIENT = (triton.TritonUnavailable, triton.CircuitOpen, triton.ModelNotReady)
LOAD_THREADS = 8


class RetryLater(Exception):
    """The model could not be reached; the task retries after `countdown` seconds."""

    def __init__(self, countdown: float) -> None:
        super().__init__(f"retry in {countdown:.1f} s")
        self.countdown = countdown


@dataclass(frozen=True)
class _Source:
    instance: Instance
    header: Dataset


def analysis_run(*, analysis_id: int, organization_id: int) -> None:
    """Run one analysis to its end, or raise RetryLater for a transient failure of the model server."""
    with organization_scope(organization_id=organization_id):
        analysis = services.analysis_claim(analysis_id=analysis_id)
    if analysis is None:
        logger.info("analysis %s: nothing to do (finished or taken by another run)", analysis_id)
        return
    if analysis.attempt > settings.INFERENCE_MAX_ATTEMPTS:
        _finish_without_result(analysis, Analysis.Status.FAILED, "attempts_exhausted",
                               "Анализ не выполнен: исчерпаны попытки обработки.")
        return
    try:
        _run_claimed(analysis)
    except RetryLater:
        raise
    except Exception:
        # A defect of the platform, not of the study: fail now with a reason rather than leave the study
        # waiting for the lease to run out, and keep the traceback (ids only) for the operator.
        logger.exception("analysis %s: unexpected error", analysis.id)
        _finish_without_result(analysis, Analysis.Status.FAILED, "internal_error",
                               "Внутренняя ошибка платформы при анализе; исследование передано врачу.")


def _run_claimed(analysis: Analysis) -> None:
    service = analysis.service
    profile = profile_for(service.profile)
    spent: dict[str, float] = {}
    with _timed(spent, "headers"), organization_scope(organization_id=analysis.organization_id):
        sources = _sources(analysis, service)
    refusals = profile.audit([s.header for s in sources], service.profile_rules)
    if refusals:
        reason = " ".join(r.reason_ru for r in refusals)
        _finish_without_result(analysis, Analysis.Status.NOT_ANALYSABLE, refusals[0].code, reason)
        return
    selected = set(profile.select([s.header for s in sources], service.profile_rules))
    used = [s for s in sources if str(s.header.SOPInstanceUID) in selected]
    try:
        with _timed(spent, "load"):
            datasets = _load(used)
        with _timed(spent, "prepare"):
            prepared = profile.prepare(datasets, service.profile_rules)
    except InputRejected as refusal:
        _finish_without_result(analysis, Analysis.Status.NOT_ANALYSABLE, refusal.code, refusal.reason_ru)
        return
    try:
        with _timed(spent, "model"):
            answers, served_version = _infer(analysis, service, profile, prepared)
    except TRANSIENT as exc:
        _retry_or_fail(analysis, exc)
        return
    except triton.BadModelAnswer as exc:
        logger.warning("analysis %s: model %s answered wrongly: %s", analysis.id, service.triton_model, exc)
        _finish_without_result(analysis, Analysis.Status.FAILED, "bad_model_answer",
                               "Сервис ИИ вернул ответ неверного формата; исследование передано врачу.")
        return
    with _timed(spent, "results"):
        outcome = profile.interpret(prepared, answers, pathology_threshold=service.pathology_threshold)
        _store_result(analysis, service, outcome, datasets, served_version, used)
    logger.info("analysis %s: %s", analysis.id, ", ".join(f"{stage} {s:.2f} s" for stage, s in spent.items()))


@contextmanager
def _timed(spent: dict[str, float], stage: str) -> Iterator[None]:
    """Where a run's time goes, for the log: the operator's first look when results come late."""
    began = time.perf_counter()
    try:
        yield
    finally:
        spent[stage] = time.perf_counter() - began


def refusal_report_write(*, analysis_id: int, organization_id: int) -> None:
    """The *not analysable* SR of an analysis that ended without a result (not routed, refused, failed)."""
    with organization_scope(organization_id=organization_id):
        analysis = Analysis.objects.select_related("service").get(id=analysis_id)
        if analysis.sr_sop_instance_uid or analysis.status == Analysis.Status.SUCCEEDED:
            return
        headers = [s.header for s in _sources(analysis, analysis.service)][:1]
    report = build_not_analysable_report(
        sources=headers, reason_ru=analysis.reason, service=_identity(analysis.service),
        series_instance_uid=result_uid(analysis.id, "sr-series"), sop_instance_uid=result_uid(analysis.id, "sr"),
        series_number=_series_number(analysis, 0),
    )
    with organization_scope(organization_id=organization_id):
        locked = Analysis.objects.select_for_update().get(id=analysis_id)
        if locked.sr_sop_instance_uid:
            return
        _archive(locked, [report])
        locked.sr_sop_instance_uid = str(report.SOPInstanceUID)
        locked.save(update_fields=["sr_sop_instance_uid"])


def _sources(analysis: Analysis, service: AIService | None) -> list[_Source]:
    """The study's instances the service reads (all of them for a not-routed study), as headers from the
    index, and the read recorded in the study access log."""
    instances = Instance.objects.filter(study_id=analysis.study_id).select_related("series")
    if service is not None:
        instances = instances.filter(series__modality__in=service.modalities)
    instances = list(instances.order_by("series_id", "instance_number", "id"))
    StudyAccess.objects.create(
        organization_id=analysis.organization_id, region_id=analysis.region_id,
        study_instance_uid=analysis.study.study_instance_uid,
        subject=f"ai:{service.code}" if service else "ai:routing", role="ai_service", endpoint="inference",
        path=f"/analyses/{analysis.id}",
    )
    return [_Source(instance, _header(instance.metadata, sequences=i == 0)) for i, instance in enumerate(instances)]


def _header(metadata: dict, *, sequences: bool) -> Dataset:
    """A data set of the index's DICOM JSON without bulk data (pixels are loaded only when needed).
    Sequences (patient ids of other issuers...) are kept for the first instance only, which the reports
    copy patient and study from: they are half the cost of parsing 300 slice headers, and no audit reads them."""
    return Dataset.from_json({
        tag: value for tag, value in metadata.items()
        if "BulkDataURI" not in value and (sequences or value.get("vr") != "SQ")
    })


def _load(sources: list[_Source]) -> list[Dataset]:
    """Read the objects in parallel (a CT is hundreds of them), check each against its sha256 and decode
    compressed pixels while other threads wait on storage (pydicom keeps the decoded array for the profile;
    uncompressed pixels are read from the bytes when the profile needs them)."""
    storage = get_storage()

    def read(source: _Source) -> Dataset:
        data = storage.read(source.instance.storage_key)
        if hashlib.sha256(data).hexdigest() != source.instance.sha256:
            raise InputRejected(code="source_changed", reason_ru="Исходный объект в архиве повреждён.")
        dataset = dcmread(io.BytesIO(data))
        decode_ahead(dataset)
        return dataset

    with ThreadPoolExecutor(min(LOAD_THREADS, max(1, len(sources)))) as pool:
        return list(pool.map(read, sources))


def _infer(analysis: Analysis, service: AIService, profile, prepared) -> tuple[list[dict], str]:
    answers, version = [], service.triton_model_version
    for number, inputs in enumerate(profile.requests(prepared)):
        answer = triton.infer(
            service.triton_model, inputs, profile.OUTPUTS, version=service.triton_model_version,
            priority=1 if analysis.urgent else 0, request_id=f"analysis-{analysis.id}-{number}",
        )
        answers.append(answer.outputs)
        version = answer.model_version or version
    return answers, version


def _retry_or_fail(analysis: Analysis, exc: Exception) -> None:
    """Raise RetryLater while attempts are left, else fail the analysis for good."""
    if analysis.attempt < settings.INFERENCE_MAX_ATTEMPTS:
        with organization_scope(organization_id=analysis.organization_id):
            released = services.analysis_release_for_retry(analysis_id=analysis.id, attempt=analysis.attempt)
        if released:
            logger.warning("analysis %s: %s; retrying (attempt %s)", analysis.id, type(exc).__name__, analysis.attempt)
            raise RetryLater(settings.TRITON_RETRY_BACKOFF_SECONDS * 4 ** analysis.attempt) from exc
        return
    _finish_without_result(analysis, Analysis.Status.FAILED, "model_unavailable",
                           "Сервис ИИ недоступен; исследование передано врачу без анализа ИИ.")


def _finish_without_result(analysis: Analysis, status: str, code: str, reason: str) -> None:
    """End the analysis with a reason, if this run still holds it."""
    with organization_scope(organization_id=analysis.organization_id):
        locked = services.analysis_lock_for_result(analysis_id=analysis.id, attempt=analysis.attempt)
        if locked is None:
            return
        services.analysis_end_without_result(analysis=locked, status=status, code=code, reason=reason)
    logger.info("analysis %s ended %s (%s)", analysis.id, status, code)


def _store_result(analysis: Analysis, service: AIService, outcome: Outcome, datasets: list[Dataset],
                  served_version: str, used: list[_Source]) -> None:
    autonomous = not analysis.shadow and not outcome.pathology and _autonomous(analysis, service, outcome)
    identity = _identity(service, served_version)
    report = build_report(
        sources=datasets, outcome=outcome, service=identity, series_instance_uid=result_uid(analysis.id, "sr-series"),
        sop_instance_uid=result_uid(analysis.id, "sr"), series_number=_series_number(analysis, 0),
        autonomous=autonomous,
    )
    shown = len(outcome.key_images) or len(datasets)  # at most this many images; extra UIDs go unused
    marked = build_marked_images(
        sources=datasets, outcome=outcome, service=identity, series_instance_uid=result_uid(analysis.id, "sc-series"),
        sop_instance_uids=[result_uid(analysis.id, f"sc/{i}") for i in range(shown)],
        series_number=_series_number(analysis, 1),
    )
    with organization_scope(organization_id=analysis.organization_id):
        locked = services.analysis_lock_for_result(analysis_id=analysis.id, attempt=analysis.attempt)
        if locked is None:
            logger.info("analysis %s: attempt %s lost the analysis; result dropped", analysis.id, analysis.attempt)
            return
        produced = [str(ds.SOPInstanceUID) for ds in (report, *marked)]
        if not analysis.shadow:  # a shadow result is kept for comparison, never put in the clinic's study
            _archive(locked, [report, *marked])
        with ThreadPoolExecutor(1) as checking:  # the originals are hashed while the index is asked
            verified = checking.submit(_originals_unchanged, analysis, used)
            stored = set(produced) if analysis.shadow else set(
                Instance.objects.filter(study_id=analysis.study_id, sop_instance_uid__in=produced)
                .values_list("sop_instance_uid", flat=True))
            unchanged = verified.result()
        result = StoredResult(outcome=outcome, report=report, marked=marked, sources=datasets, stored_uids=stored,
                              originals_unchanged=unchanged)
        findings = result_findings(result, modalities=service.modalities, body_parts=service.body_parts)
        defects_record(analysis=locked, findings=findings)
        services.analysis_finish(
            analysis=locked, status=Analysis.Status.SUCCEEDED, probability=outcome.probability,
            pathology=outcome.pathology, ai_urgent=outcome.urgent, category=outcome.category,
            outcome=outcome.as_json(), autonomous=autonomous, model_version=served_version,
            sr_sop_instance_uid=str(report.SOPInstanceUID), sc_series_instance_uid=str(marked[0].SeriesInstanceUID),
            originals_verified=unchanged,
        )
    logger.info("analysis %s succeeded (probability %.3f)", analysis.id, outcome.probability)


def _autonomous(analysis: Analysis, service: AIService, outcome: Outcome) -> bool:
    with organization_scope(organization_id=analysis.organization_id):
        return services.autonomous_normal(
            service=service, organization_id=analysis.organization_id, probability=outcome.probability
        )


def _archive(analysis: Analysis, datasets: list[Dataset]) -> None:
    """Store result objects in the study through the archive's all-or-nothing batch, read back from their
    bytes exactly as STOW reads what a clinic sends."""
    organization = MedicalOrganization.objects.get(id=analysis.organization_id)
    with ReceiveBatch(organization=organization) as batch:
        for dataset in datasets:
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
            data = buffer.getvalue()
            received = read_received(io.BytesIO(data), len(data))
            batch.store(dataset=received.dataset, fileobj=io.BytesIO(data), size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(), metadata=received.metadata)


def _originals_unchanged(analysis: Analysis, used: list[_Source]) -> bool:
    """Technological check of every run, once its results are written: the analysed originals, read again
    from storage, are still byte for byte what the clinic sent (their sha256, in parallel threads)."""
    storage = get_storage()

    def unchanged_one(source: _Source) -> bool:
        digest = hashlib.sha256()
        for chunk in storage.iter_chunks(source.instance.storage_key):
            digest.update(chunk)
        return digest.hexdigest() == source.instance.sha256

    with ThreadPoolExecutor(min(LOAD_THREADS, max(1, len(used)))) as pool:
        unchanged = all(pool.map(unchanged_one, used))
    if not unchanged:
        logger.error("analysis %s: an original instance changed in storage", analysis.id)
    return unchanged


def warm_up() -> None:
    """Build a small SR once, so that highdicom loads its tables of the standard (about a second) before
    the first result waits for them. Pure: no database, storage or Triton, so the worker's parent process
    can call it before it forks its pool, and every child starts warm."""
    from inference.phantoms import chest_radiograph

    source, _ = chest_radiograph(size=32)
    uid = str(source.SOPInstanceUID)
    outcome = Outcome(probability=0.0, pathology=False, marks=[Mark(uid, (1, 1, 2, 2), "warm-up")], key_images=[uid],
                      conclusion_ru="warm-up")
    report = build_report(sources=[source], outcome=outcome, service=ServiceIdentity("warm-up", "warm-up", "0"),
                          series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(), series_number=1)
    report.save_as(io.BytesIO(), enforce_file_format=True)


def _identity(service: AIService | None, served_version: str = "") -> ServiceIdentity | None:
    if service is None:
        return None
    return ServiceIdentity(vendor=service.vendor, name=service.name, version=service.version,
                           model_name=service.triton_model, model_version=served_version)


def _series_number(analysis: Analysis, offset: int) -> int:
    """Result series numbered 9000 + 2 x service (+1 for the SC), clear of a modality's own series."""
    return 9000 + 2 * (analysis.service_id or 0) + offset
