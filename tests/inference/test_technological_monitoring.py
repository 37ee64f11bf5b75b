"""Every AI result is checked against the basic functional requirements. Services that break them on
purpose (marking the air beside the patient, marking off the image, a report without its text, answering
late) run through the real worker and Triton; each defect is caught, classified and stored with the
result, a critical one is not billed, and a streak of them suspends the service and tells the operator."""

import copy
import dataclasses
from decimal import Decimal

import numpy as np
import pytest

from billing.models import BillableService
from inference.outcome import Mark
from inference.phantoms import chest_radiograph, mammography_study
from inference.profiles import PROFILES
from inference.profiles.chest_xray import ChestXray
from inference.quality.records import Defect, QualityAlert
from inference.quality.services import defect_rate_alerts
from inference.quality.technological import StoredResult, body_mask, result_findings
from inference.records import AIService, Analysis
from inference.result_uids import result_uid
from inference.sc import build_marked_images
from inference.services import study_route
from inference.sr import ServiceIdentity, build_report
from tests.inference.conftest import wait_for

pytestmark = pytest.mark.timeout(240)


class MarksTheAir(ChestXray):
    """Moves every marking into the top-left corner: the air beside the patient."""

    name = "test_marks_the_air"

    def interpret(self, prepared, answers, *, pathology_threshold):
        outcome = super().interpret(prepared, answers, pathology_threshold=pathology_threshold)
        uid = prepared.sop_instance_uids[0]
        return dataclasses.replace(outcome, marks=[Mark(uid, (2, 2, 12, 12), "Затемнение 1")])


class MarksOffTheImage(ChestXray):
    name = "test_marks_off_the_image"

    def interpret(self, prepared, answers, *, pathology_threshold):
        outcome = super().interpret(prepared, answers, pathology_threshold=pathology_threshold)
        rows, columns = prepared.image.shape
        uid = prepared.sop_instance_uids[0]
        return dataclasses.replace(outcome, marks=[Mark(uid, (rows - 5, columns - 5, rows + 20, columns + 20), "1")])


class WithoutText(ChestXray):
    name = "test_without_text"

    def interpret(self, prepared, answers, *, pathology_threshold):
        outcome = super().interpret(prepared, answers, pathology_threshold=pathology_threshold)
        return dataclasses.replace(outcome, conclusion_ru="")


@pytest.fixture
def defective_service(monkeypatch, reference_services):
    """Register a chest radiograph service whose profile breaks a requirement; the reference one stops."""

    def register(profile, **fields) -> AIService:
        monkeypatch.setitem(PROFILES, profile.name, profile)
        reference = reference_services()["ref-chest-xray"]
        reference.status = AIService.Status.SUSPENDED
        reference.save(update_fields=["status"])
        service = AIService.objects.create(
            code=profile.name, vendor="Тест", name=profile.name, version="1", study_kind=reference.study_kind,
            profile=profile.name, triton_model=reference.triton_model, modalities=reference.modalities,
            body_parts=reference.body_parts, pathology_threshold=reference.pathology_threshold, **fields)
        service.enabled_regions.add(*reference.enabled_regions.all())
        return service

    return register


def analyse(organization, archived_study, *, seed: int = 0) -> Analysis:
    from billing.demo import demo_tariffs_load

    demo_tariffs_load()
    study = archived_study(organization, [chest_radiograph(lesions=1, size=256, seed=seed)[0]])
    study_route(study_id=study.id)
    return wait_for(lambda: Analysis.objects.filter(study=study, status__in=Analysis.FINAL).first(), timeout=120)


def defects_of(analysis: Analysis) -> dict[str, str]:
    return dict(Defect.objects.filter(analysis=analysis).values_list("requirement", "severity"))


def test_markings_on_the_air_are_critical_not_billed_and_a_streak_suspends_the_service(
    tenant_factory, archived_study, defective_service, analysis_worker, settings
):
    settings.QUALITY_SUSPEND_AFTER_CRITICAL_STREAK = 2
    organization, _ = tenant_factory()
    service = defective_service(MarksTheAir())
    first = analyse(organization, archived_study, seed=1)
    assert first.status == Analysis.Status.SUCCEEDED
    assert defects_of(first) == {"marking_outside_body": "critical"}
    assert not BillableService.objects.filter(study_id=first.study_id).exists()
    service.refresh_from_db()
    assert service.status == AIService.Status.ACTIVE  # one is not yet a streak

    analyse(organization, archived_study, seed=2)
    wait_for(lambda: AIService.objects.get(id=service.id).status == AIService.Status.SUSPENDED, timeout=30)
    service.refresh_from_db()
    assert "marking_outside_body" in service.status_reason
    alert = QualityAlert.objects.get(service=service, kind=QualityAlert.Kind.CRITICAL_STREAK)
    assert alert.message == service.status_reason


def test_markings_off_the_image_are_critical(tenant_factory, archived_study, defective_service, analysis_worker):
    organization, _ = tenant_factory()
    defective_service(MarksOffTheImage())
    assert defects_of(analyse(organization, archived_study)) == {"marking_outside_image": "critical"}


def test_a_report_without_its_text_is_a_major_defect_and_still_billed(
    tenant_factory, archived_study, defective_service, analysis_worker
):
    organization, _ = tenant_factory()
    defective_service(WithoutText())
    analysis = analyse(organization, archived_study)
    assert defects_of(analysis) == {"sr_no_text": "major"}
    assert BillableService.objects.get(study_id=analysis.study_id).amount == Decimal("150.00")


def test_a_late_answer_is_a_major_defect(tenant_factory, archived_study, defective_service, analysis_worker):
    organization, _ = tenant_factory()
    service = defective_service(WithoutText())
    service.deadline_seconds = 0
    service.save(update_fields=["deadline_seconds"])
    analysis = analyse(organization, archived_study)
    assert analysis.late
    assert defects_of(analysis) == {"late": "major", "sr_no_text": "major"}


def reference_result(**changes) -> StoredResult:
    """The objects a reference chest radiograph run stores, built by the platform's own builders."""
    source, _ = chest_radiograph(lesions=1, size=256, seed=7)
    uid = str(source.SOPInstanceUID)
    body = body_mask(source.pixel_array)
    rows, cols = np.nonzero(body.mask)
    centre = (int(rows.mean()) * body.step, int(cols.mean()) * body.step)
    from inference.outcome import Outcome

    outcome = Outcome(probability=0.9, pathology=True, marks=[Mark(uid, (centre[0] - 8, centre[1] - 8,
                      centre[0] + 8, centre[1] + 8), "Затемнение 1")], conclusion_ru="Выявлено затемнение.",
                      key_images=[uid])
    service = ServiceIdentity(vendor="Тест", name="Тест", version="1")
    report = build_report(sources=[source], outcome=outcome, service=service, series_instance_uid=result_uid(1, "a"),
                          sop_instance_uid=result_uid(1, "b"), series_number=901, autonomous=False)
    marked = build_marked_images(sources=[source], outcome=outcome, service=service,
                                 series_instance_uid=result_uid(1, "c"), sop_instance_uids=[result_uid(1, "d")],
                                 series_number=902)
    stored = {str(report.SOPInstanceUID), *(str(sc.SOPInstanceUID) for sc in marked)}
    result = StoredResult(outcome=outcome, report=report, marked=marked, sources=[source], stored_uids=stored,
                          originals_unchanged=True)
    return dataclasses.replace(result, **changes)


def requirements(result: StoredResult, modalities=("DX", "CR"), body_parts=("CHEST",)) -> list[str]:
    return [f.requirement for f in result_findings(result, modalities=modalities, body_parts=body_parts)]


def test_a_correct_result_has_no_findings():
    assert requirements(reference_result()) == []


def test_each_broken_requirement_is_found_and_classified():
    result = reference_result()
    assert requirements(dataclasses.replace(result, report=None)) == ["sr_missing"]
    assert requirements(dataclasses.replace(result, stored_uids=set())) == ["sr_missing", "sc_missing"]
    assert requirements(dataclasses.replace(result, originals_unchanged=False)) == ["original_changed"]
    assert requirements(result, modalities=["CT"]) == ["wrong_area"]
    stripped = copy.deepcopy(result.marked[0])
    pixels = stripped.pixel_array.copy()
    pixels[:40] = 0  # no warning band
    stripped.PixelData = pixels.tobytes()
    assert requirements(dataclasses.replace(result, marked=[stripped])) == ["sc_no_warning"]
    result.report.SeriesInstanceUID = result.sources[0].SeriesInstanceUID
    findings = result_findings(result, modalities=["DX"], body_parts=["CHEST"])
    assert [(f.requirement, f.severity) for f in findings] == [("result_in_original_series", "critical")]


def test_the_originals_are_read_again_and_a_changed_byte_is_caught(use_storage):
    """After a run the analysed originals are read back from storage and hashed: one changed byte in one
    of many objects fails the check."""
    import hashlib
    import io
    import uuid
    from types import SimpleNamespace

    from inference.pipeline import _originals_unchanged, _Source
    from medai.archive.models import Instance

    sources = []
    for n in range(6):
        data = bytes([n]) * (1_500_000 + n)  # more than one storage chunk each
        key = f"test-originals/{uuid.uuid4()}"
        use_storage.put(key, io.BytesIO(data), len(data))
        sources.append(_Source(Instance(storage_key=key, sha256=hashlib.sha256(data).hexdigest()), header=None))
    analysis = SimpleNamespace(id=0)
    assert _originals_unchanged(analysis, sources) is True
    changed = bytearray(bytes([4]) * (1_500_000 + 4))
    changed[1_200_000] ^= 1
    use_storage.put(sources[4].instance.storage_key, io.BytesIO(bytes(changed)), len(changed))
    assert _originals_unchanged(analysis, sources) is False


def test_the_body_mask_holds_the_lungs_but_not_the_air():
    source, _ = chest_radiograph(size=256, seed=3)
    body = body_mask(source.pixel_array)
    assert body.share((118, 70, 138, 90)) == 1.0  # in the right lung field
    assert body.share((0, 0, 10, 10)) == 0.0  # air in the corner
    mammogram = mammography_study(size=128, seed=1)[0][0]
    assert 0.2 < body_mask(mammogram.pixel_array).mask.mean() < 0.95


def test_defect_rates_past_the_threshold_alert_the_operator_once(
    tenant_factory, archived_study, defective_service, analysis_worker, settings
):
    from django.utils import timezone

    settings.QUALITY_MIN_RESULTS, settings.QUALITY_DEFECT_RATE_ALERT = 2, 0.05
    organization, _ = tenant_factory()
    service = defective_service(WithoutText())
    for seed in (1, 2):
        analyse(organization, archived_study, seed=seed)
    raised = defect_rate_alerts(month=timezone.now().date())
    assert {(a.service_id, a.region_id) for a in raised} == {(service.id, None), (service.id, organization.region_id)}
    assert "100.0%" in raised[0].message
    assert defect_rate_alerts(month=timezone.now().date()) == []
