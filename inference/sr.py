"""The draft report of an AI analysis as a DICOM Structured Report (TID 1500 Measurement Report).

Pure functions: source headers and an `Outcome` in, a pydicom Dataset out; nothing is stored here.
The report is what a RIS or PACS shows as the AI's draft description, so it carries the study's
patient and study attributes, references every analysed image, names the AI service as a device
observer, and says in Russian that a radiologist must check it (unless the service sorted the study
autonomously as normal). It stays PARTIAL/UNVERIFIED: only a physician can complete and verify it.
"""

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    CodedConcept,
    Comprehensive3DSR,
    ContainerContentItem,
    DeviceObserverIdentifyingAttributes,
    ImageRegion,
    LanguageOfContentItemAndDescendants,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)
from highdicom.sr import Measurement as SRMeasurement
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from inference.outcome import Mark, Measurement, Outcome

UTF8 = "ISO_IR 192"
PLATFORM_VENDOR = "MedAI Platform"
DRAFT_WARNING_RU = (
    "Заключение подготовлено системой ИИ (референсная модель, не медицинское изделие) "
    "и требует проверки врачом-рентгенологом."
)
AUTONOMOUS_RU = "Исследование описано автономно системой ИИ: патологии не выявлено"
NOT_ANALYSABLE_RU = "Исследование не может быть проанализировано системой ИИ"

# Concepts with no standard code (the AI's probability, its category, a service's own measurements)
# are coded in the platform's private scheme, declared in CodingSchemeIdentificationSequence.
LOCAL_SCHEME = "99MEDAI"
PROBABILITY = CodedConcept("PROB-PATHOLOGY", LOCAL_SCHEME, "Probability of pathology")
CATEGORY = CodedConcept("AI-CATEGORY", LOCAL_SCHEME, "AI category")
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
RUSSIAN = CodedConcept("ru-RU", "RFC5646", "Russian (Russian Federation)")
DIAGNOSTIC_IMAGING_REPORT = CodedConcept("18748-4", "LN", "Diagnostic imaging report")
UNIT_MEANINGS = {"ml": "milliliter", "%": "percent", "1": "no units", "{probability}": "probability",
                 "mm": "millimeter", "mm2": "square millimeter", "[hnsf'U]": "Hounsfield unit"}


@dataclass(frozen=True)
class ServiceIdentity:
    """Who produced a result, as written into the SR's device observer and the SC's burned-in text."""

    vendor: str
    name: str
    version: str
    model_name: str = ""
    model_version: str = ""

    @property
    def label(self) -> str:
        """One line naming the service for people: name, version, vendor."""
        vendor = f" ({self.vendor})" if self.vendor != self.name else ""
        return f"{self.name} {self.version}{vendor}"


def platform_identity() -> ServiceIdentity:
    """The platform itself, the author of results when no AI service could be matched to a study."""
    try:
        version = metadata.version("medai-platform")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return ServiceIdentity(vendor=PLATFORM_VENDOR, name=PLATFORM_VENDOR, version=version)


def series_description(prefix: str, service: ServiceIdentity) -> str:
    """SeriesDescription is LO: at most 64 characters, however long the service's name."""
    return f"{prefix}: {service.name}"[:64]


def build_report(
    *, sources: list[Dataset], outcome: Outcome, service: ServiceIdentity, series_instance_uid: str,
    sop_instance_uid: str, series_number: int, autonomous: bool = False,
) -> Dataset:
    """The draft report of one analysis: TID 1500 with the probability, category, measurements and one
    planar ROI per mark, plus the Russian text a radiologist reads (or the autonomous-normal text)."""
    _require_sources(sources)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    groups: list = [_analysis_group(sources, outcome, service)]
    groups += [_mark_group(mark, by_uid, service, index) for index, mark in enumerate(outcome.marks, start=1)]
    report = MeasurementReport(
        observation_context=_observation_context(service),
        procedure_reported=procedure_code(sources[0]),
        imaging_measurements=groups,
        language_of_content_item_and_descendants=LanguageOfContentItemAndDescendants(RUSSIAN),
    )  # no Image Library: highdicom's needs PatientOrientation, which radiographs often lack
    report[0].ContentSequence.append(_text_container(report_text(outcome, service, autonomous=autonomous)))
    return _document(sources, report, service, series_instance_uid, sop_instance_uid, series_number)


def build_not_analysable_report(
    *, sources: list[Dataset], reason_ru: str, service: ServiceIdentity | None, series_instance_uid: str,
    sop_instance_uid: str, series_number: int,
) -> Dataset:
    """An SR that tells the clinic the study could not be analysed, and why, so nobody waits for a result
    that will not come. No measurements: a plain report container with the observer and the text."""
    _require_sources(sources)
    service = service or platform_identity()
    root = ContainerContentItem(name=DIAGNOSTIC_IMAGING_REPORT)
    root.ContentSequence = [
        *LanguageOfContentItemAndDescendants(RUSSIAN),
        *_observation_context(service),
        _procedure_item(sources[0]),
        TextContentItem(name=codes.DCM.Impression, value=not_analysable_text(reason_ru, service),
                        relationship_type="CONTAINS"),
    ]
    return _document(sources, root, service, series_instance_uid, sop_instance_uid, series_number)


def report_text(outcome: Outcome, service: ServiceIdentity, *, autonomous: bool) -> str:
    """The text a radiologist (or, for an autonomous normal, the patient's record) gets: the warning or
    the autonomous statement first, then the service, the draft description and the numbers."""
    lead = f"{AUTONOMOUS_RU}. Сервис ИИ: {service.label}." if autonomous else (
        f"{DRAFT_WARNING_RU} Сервис ИИ: {service.label}.")
    lines = [lead]
    if outcome.conclusion_ru:
        lines.append(outcome.conclusion_ru)
    summary = f"Вероятность патологии: {outcome.probability:.2f}"
    if outcome.category:
        summary += f"; категория: {outcome.category}"
    lines.append(summary + ".")
    lines += [f"{m.concept_ru}: {_number(m.value)} {m.unit}." for m in outcome.measurements]
    return "\n".join(lines)


def not_analysable_text(reason_ru: str, service: ServiceIdentity) -> str:
    """Why there is no AI result, in Russian, naming who says so."""
    reason = reason_ru.strip() or "причина не указана"
    return f"{NOT_ANALYSABLE_RU}. Причина: {reason}\nИсточник: {service.label}."


def procedure_code(source: Dataset) -> CodedConcept:
    """The procedure reported, from the source's modality and body part (SNOMED CT procedures)."""
    modality = str(source.get("Modality", "")).upper()
    body_part = str(source.get("BodyPartExamined", "")).upper()
    if modality == "CT":
        if body_part == "CHEST":
            return CodedConcept("169069000", "SCT", "Computed tomography of chest")
        if body_part == "HEAD":
            return CodedConcept("303653007", "SCT", "Computed tomography of head")
        return CodedConcept("77477000", "SCT", "Computed tomography")
    if modality in ("CR", "DX"):
        if body_part == "CHEST":
            return CodedConcept("399208008", "SCT", "Plain chest X-ray")
        return CodedConcept("168537006", "SCT", "Plain radiography")
    if modality == "MG":
        return CodedConcept("71651007", "SCT", "Mammography")
    return CodedConcept("363679005", "SCT", "Imaging procedure")


def copy_patient_and_study(source: Dataset, target: Dataset) -> None:
    """Result objects belong to the analysed study: copy what identifies the patient and the study
    (including the OMS policy in OtherPatientIDsSequence) that the target lacks."""
    for keyword in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                    "OtherPatientIDsSequence", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime",
                    "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription"):
        if keyword in source and not target.get(keyword):
            target[keyword] = copy.deepcopy(source[keyword])  # never share an element with the source


def _require_sources(sources: Sequence[Dataset]) -> None:
    if not sources:
        raise ValueError("a result needs at least one source image: it takes the patient and study from it")


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _observation_context(service: ServiceIdentity) -> ObservationContext:
    """The AI service as the device observer; its UID is stable per vendor, name and model."""
    device = DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[service.vendor, service.name, service.model_name]),
        name=service.name[:64],
        manufacturer_name=service.vendor[:64],
        model_name=_model(service)[:64],
    )
    return ObservationContext(observer_device_context=ObserverContext(codes.DCM.Device, device))


def _model(service: ServiceIdentity) -> str:
    model = service.model_name or service.name
    return f"{model} {service.model_version or service.version}".strip()


def _algorithm(service: ServiceIdentity) -> AlgorithmIdentification:
    parameters = [f"model {service.model_name} {service.model_version}".strip()] if service.model_name else None
    return AlgorithmIdentification(name=service.name[:64], version=service.version[:64], parameters=parameters,
                                   manufacturer=service.vendor[:64])


def _analysis_group(sources: list[Dataset], outcome: Outcome, service: ServiceIdentity) -> (
        MeasurementsAndQualitativeEvaluations):
    """TID 1501 for the whole study: probability, category, the service's measurements. It names the key
    images as its sources (every image when there are none); the evidence sequence lists every image
    analysed, so a 300-slice CT does not put 300 references in the content tree as well."""
    measurements = [SRMeasurement(name=PROBABILITY, value=float(outcome.probability), unit=_unit("{probability}"))]
    measurements += [_measurement(m) for m in outcome.measurements]
    evaluations = None
    if outcome.category:
        value = CodedConcept(_local_code(outcome.category), LOCAL_SCHEME, outcome.category[:64])
        evaluations = [QualitativeEvaluation(name=CATEGORY, value=value)]
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=_uid("analysis", sources), identifier="AI analysis"),
        algorithm_id=_algorithm(service),
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[SourceImageForMeasurementGroup.from_source_image(ds) for ds in _key_sources(sources, outcome)],
    )


def _key_sources(sources: list[Dataset], outcome: Outcome) -> list[Dataset]:
    keys = set(outcome.key_images)
    return [ds for ds in sources if str(ds.SOPInstanceUID) in keys] or sources


def _measurement(measurement: Measurement) -> SRMeasurement:
    name = CodedConcept(_local_code(measurement.concept), LOCAL_SCHEME, measurement.concept[:64])
    return SRMeasurement(name=name, value=float(measurement.value), unit=_unit(measurement.unit))


def _unit(unit: str) -> CodedConcept:
    return CodedConcept(unit, "UCUM", UNIT_MEANINGS.get(unit, unit))


def _local_code(text: str) -> str:
    """A short, stable code value (SH, at most 16 characters) for a concept named in free text."""
    return "C" + hashlib.sha1(text.encode()).hexdigest()[:12].upper()


def _uid(kind: str, sources: list[Dataset], *extra: str) -> str:
    """Tracking UIDs derived from the sources, so a rerun of the same analysis writes the same UIDs."""
    return generate_uid(entropy_srcs=[kind, *(str(ds.SOPInstanceUID) for ds in sources[:1]), *extra])


def _mark_group(mark: Mark, by_uid: dict[str, Dataset], service: ServiceIdentity, index: int) -> (
        PlanarROIMeasurementsAndQualitativeEvaluations):
    """TID 1410 for one mark: its box as a closed polyline on the image (and frame) it was found on."""
    source = by_uid.get(mark.sop_instance_uid)
    if source is None:
        raise ValueError(f"mark {mark.label!r} refers to an image not among the sources: {mark.sop_instance_uid}")
    frames = [mark.frame] if int(source.get("NumberOfFrames", 1) or 1) > 1 else None
    region = ImageRegion(
        graphic_type="POLYLINE",
        graphic_data=_rectangle(mark.box),
        source_image=SourceImageForRegion.from_source_image(source, referenced_frame_numbers=frames),
    )
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=_uid("mark", [source], str(index)), identifier=mark.label[:64]),
        referenced_region=region,
        finding_type=codes.SCT.Lesion,
        algorithm_id=_algorithm(service),
    )


def _rectangle(box: tuple[int, int, int, int]) -> np.ndarray:
    """A box (rows and columns, end exclusive) as SCOORD (column, row) corners, closed: pixel (r, c)
    covers [c, c + 1) x [r, r + 1) in SCOORD's pixel-edge convention."""
    top, left, bottom, right = box
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom], [left, top]], dtype=float)


def _procedure_item(source: Dataset) -> CodeContentItem:
    return CodeContentItem(name=codes.DCM.ProcedureReported, value=procedure_code(source),
                           relationship_type="HAS CONCEPT MOD")


def _text_container(text: str) -> ContainerContentItem:
    """TID 1500's Qualitative Evaluations container, holding the draft description as TEXT."""
    container = ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    container.ContentSequence = [TextContentItem(name=codes.DCM.Impression, value=text, relationship_type="CONTAINS")]
    return container


def _document(sources: list[Dataset], content, service: ServiceIdentity, series_instance_uid: str,
              sop_instance_uid: str, series_number: int) -> Dataset:
    """The SR document: the study's patient and study, a new series, a draft (PARTIAL, UNVERIFIED)."""
    sr = Comprehensive3DSR(
        evidence=sources,
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=service.vendor[:64],
        is_complete=False,
        is_verified=False,
        series_description=series_description("AI report", service),
        manufacturer_model_name=_model(service)[:64],
        software_versions=service.version[:64],
        specific_character_set=UTF8,
        coding_schemes=[CodingSchemeIdentificationItem(designator=LOCAL_SCHEME, name="MedAI Platform local codes",
                                                       responsible_organization=PLATFORM_VENDOR)],
    )
    copy_patient_and_study(sources[0], sr)
    return sr
