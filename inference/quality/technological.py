"""Technological monitoring: every AI result checked against the basic functional requirements of
../shared/domain.md before it is delivered, each broken one a classified finding.

The checks read the result objects exactly as they were stored (the SR, the SC series) and the source
images they came from, not the model's intentions: a marking is judged on the pixels of the image it
is drawn on, the warning on the pixels of the SC.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from inference.outcome import Mark, Outcome
from inference.quality.records import Severity
from inference.sc import WARNING_BAND

MASK_SIDE = 256  # body masks are computed on images shrunk to about this many pixels a side
FOREGROUND_LEVEL = 0.15  # of the 1st-99th percentile range: above it is tissue or denser
MIN_BOX_SHARE_IN_BODY = 0.5
WARNING_TOLERANCE = 40  # per channel, for the colour of the burned-in warning band


@dataclass(frozen=True)
class Finding:
    """A requirement one result broke."""

    requirement: str
    severity: Severity
    detail: str


@dataclass(frozen=True)
class StoredResult:
    """What a run stored and what it came from."""

    outcome: Outcome
    report: Dataset | None
    marked: list[Dataset]
    sources: list[Dataset]  # the analysed originals, with pixels
    stored_uids: set[str]  # SOP Instance UIDs the archive now holds for the study
    originals_unchanged: bool


def result_findings(result: StoredResult, *, modalities: Iterable[str], body_parts: Iterable[str]) -> list[Finding]:
    """Every broken requirement of one result, the fundamental (critical) ones first."""
    checks = (_presence, _originals, _area, _markings, _report_text, _marked_images)
    findings = [finding for check in checks for finding in check(result, set(modalities), set(body_parts))]
    order = list(Severity)
    return sorted(findings, key=lambda f: order.index(f.severity))


def _presence(result: StoredResult, *_) -> list[Finding]:
    findings = []
    if result.report is None or str(result.report.SOPInstanceUID) not in result.stored_uids:
        findings.append(Finding("sr_missing", Severity.CRITICAL, "Нет DICOM SR с проектом описания."))
    if not result.marked or any(str(sc.SOPInstanceUID) not in result.stored_uids for sc in result.marked):
        findings.append(Finding("sc_missing", Severity.CRITICAL, "Нет серии DICOM SC с разметкой."))
    return findings


def _originals(result: StoredResult, *_) -> list[Finding]:
    findings = []
    if not result.originals_unchanged:
        findings.append(Finding("original_changed", Severity.CRITICAL, "Исходная серия изменилась при анализе."))
    original_series = {str(ds.SeriesInstanceUID) for ds in result.sources}
    produced = [ds for ds in [result.report, *result.marked] if ds is not None]
    if any(str(ds.SeriesInstanceUID) in original_series for ds in produced):
        findings.append(Finding("result_in_original_series", Severity.CRITICAL,
                                "Результат ИИ записан в исходную серию, а не в новую."))
    return findings


def _area(result: StoredResult, modalities: set[str], body_parts: set[str]) -> list[Finding]:
    for source in result.sources:
        modality = str(source.get("Modality", "")).upper()
        body_part = str(source.get("BodyPartExamined", "")).upper()
        if (modalities and modality not in modalities) or (body_parts and body_part and body_part not in body_parts):
            return [Finding("wrong_area", Severity.CRITICAL,
                            f"Обработана не та область: {modality} {body_part or '(часть тела не указана)'}.")]
    return []


def _markings(result: StoredResult, *_) -> list[Finding]:
    """Each marking inside its image, and mostly on the body (not on the air around it)."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in result.sources}
    outside_image, outside_body = [], []
    masks: dict[tuple[str, int], BodyMask] = {}
    for mark in result.outcome.marks:
        source = by_uid.get(mark.sop_instance_uid)
        if source is None or not _inside_image(mark, source):
            outside_image.append(mark.label)
            continue
        key = (mark.sop_instance_uid, mark.frame)
        if key not in masks:
            masks[key] = body_mask(_frame(source, mark.frame))
        if masks[key].share(mark.box) < MIN_BOX_SHARE_IN_BODY:
            outside_body.append(mark.label)
    findings = []
    if outside_image:
        findings.append(Finding("marking_outside_image", Severity.CRITICAL,
                                f"Разметка вне изображения: {', '.join(outside_image)}."))
    if outside_body:
        findings.append(Finding("marking_outside_body", Severity.CRITICAL,
                                f"Разметка вне исследуемой области тела: {', '.join(outside_body)}."))
    return findings


def _inside_image(mark: Mark, source: Dataset) -> bool:
    top, left, bottom, right = mark.box
    frames = int(source.get("NumberOfFrames", 1) or 1)
    return (0 <= top < bottom <= int(source.Rows) and 0 <= left < right <= int(source.Columns)
            and 1 <= mark.frame <= frames)


def _frame(source: Dataset, frame: int) -> np.ndarray:
    """One frame's grey levels, brighter meaning denser (MONOCHROME1 inverted)."""
    pixels = source.pixel_array
    pixels = pixels[frame - 1] if pixels.ndim == 3 and int(source.get("NumberOfFrames", 1) or 1) > 1 else pixels
    return -pixels.astype(np.float32) if source.get("PhotometricInterpretation") == "MONOCHROME1" else pixels


@dataclass(frozen=True)
class BodyMask:
    """Where the body is on one image, on a copy shrunk by `step`."""

    mask: np.ndarray
    step: int

    def share(self, box: tuple[int, int, int, int]) -> float:
        """The share of a box (full-size pixels) that lies on the body."""
        top, left, bottom, right = (value // self.step for value in box)
        region = self.mask[top:max(top + 1, bottom), left:max(left + 1, right)]
        return float(region.mean()) if region.size else 0.0


def body_mask(pixels: np.ndarray) -> BodyMask:
    """The body on a grey-level image: everything not connected to the image border through air.

    Lungs and other dark cavities are inside the body and count as body; the air around the patient
    is below FOREGROUND_LEVEL of the image's range and reaches the border. Works for radiographs, CT
    slices in HU and mammograms alike, on a copy shrunk to about MASK_SIDE pixels.
    """
    step = max(1, max(pixels.shape) // MASK_SIDE)
    small = pixels[::step, ::step].astype(np.float32)
    low, high = np.percentile(small, (1, 99))
    air = small <= low + FOREGROUND_LEVEL * (high - low)
    outside = np.zeros_like(air)
    outside[0, :], outside[-1, :], outside[:, 0], outside[:, -1] = air[0, :], air[-1, :], air[:, 0], air[:, -1]
    while True:  # grow the outside through air, four-connected, until it stops
        grown = outside.copy()
        grown[1:, :] |= outside[:-1, :]
        grown[:-1, :] |= outside[1:, :]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= air
        if np.array_equal(grown, outside):
            return BodyMask(~outside, step)
        outside = grown


def _report_text(result: StoredResult, *_) -> list[Finding]:
    """The SR holds the draft description of the study, and references the analysed images."""
    if result.report is None:
        return []
    findings = []
    conclusion = result.outcome.conclusion_ru.strip()
    if not conclusion or conclusion not in "\n".join(_texts(result.report)):
        findings.append(Finding("sr_no_text", Severity.MAJOR, "В DICOM SR нет текста проекта описания."))
    referenced = {str(instance.ReferencedSOPInstanceUID)
                  for study in result.report.get("CurrentRequestedProcedureEvidenceSequence", [])
                  for series in study.get("ReferencedSeriesSequence", [])
                  for instance in series.get("ReferencedSOPSequence", [])}
    if not referenced & {str(ds.SOPInstanceUID) for ds in result.sources}:
        findings.append(Finding("sr_no_references", Severity.MAJOR, "DICOM SR не ссылается на исходные изображения."))
    return findings


def _texts(dataset: Dataset) -> Iterable[str]:
    for item in dataset.get("ContentSequence", []):
        if item.get("ValueType") == "TEXT":
            yield str(item.TextValue)
        yield from _texts(item)


def _marked_images(result: StoredResult, *_) -> list[Finding]:
    """Each SC image is derived, burned-in, and carries the warning band across its top."""
    findings = []
    not_derived = [sc for sc in result.marked
                   if str(sc.get("ImageType", [""])[0]).upper() != "DERIVED" or sc.get("BurnedInAnnotation") != "YES"]
    if not_derived:
        findings.append(Finding("sc_not_derived", Severity.MAJOR,
                                "Изображения SC не помечены как производные с нанесённой разметкой."))
    if any(not _has_warning_band(sc) for sc in result.marked):
        findings.append(Finding("sc_no_warning", Severity.MAJOR,
                                "На изображениях SC нет предупреждения о необходимости проверки врачом."))
    return findings


def _has_warning_band(sc: Dataset) -> bool:
    pixels = sc.pixel_array
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        return False
    top = pixels[:2].reshape(-1, 3).astype(int)
    close = np.all(np.abs(top - np.array(WARNING_BAND)) <= WARNING_TOLERANCE, axis=1)
    return bool(close.mean() > 0.5)
