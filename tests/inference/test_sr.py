"""The AI draft report as DICOM SR: what a RIS/PACS reads back from the Part 10 file, after a round trip."""

import io

import highdicom as hd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from inference.outcome import Mark, Measurement, Outcome
from inference.phantoms import chest_ct, chest_radiograph, mammography_study
from inference.sr import (
    AUTONOMOUS_RU,
    DRAFT_WARNING_RU,
    ServiceIdentity,
    build_not_analysable_report,
    build_report,
)
from medai.archive.synthetic import to_bytes

SERVICE = ServiceIdentity(vendor="Вектор ИИ", name="Lung Scan", version="2.4.1", model_name="cxr-opacity",
                          model_version="7")


def round_trip(ds: Dataset) -> Dataset:
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def texts(item: Dataset) -> list[str]:
    """Every "Impression" TEXT item's value in the content tree, depth first: what a viewer shows as the text."""
    found = []
    if item.get("ValueType") == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == "Impression":
        found.append(str(item.TextValue))
    for child in item.get("ContentSequence", []):
        found += texts(child)
    return found


def evidence_uids(sr: Dataset) -> set[str]:
    return {str(sop.ReferencedSOPInstanceUID) for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}


def procedures(sr: Dataset) -> list[str]:
    return [str(item.ConceptCodeSequence[0].CodeMeaning) for item in sr.ContentSequence
            if item.ConceptNameCodeSequence[0].CodeMeaning == "Procedure reported"]


def report(sources: list[Dataset], outcome: Outcome, **kwargs) -> tuple[Dataset, dict[str, str]]:
    uids = {"series": generate_uid(), "sop": generate_uid()}
    sr = build_report(sources=sources, outcome=outcome, service=SERVICE, series_instance_uid=uids["series"],
                      sop_instance_uid=uids["sop"], series_number=9002, **kwargs)
    return round_trip(sr), uids


@pytest.fixture(scope="module")
def radiograph() -> tuple[Dataset, Outcome]:
    ds, truth = chest_radiograph(lesions=2, size=256, seed=4)
    outcome = Outcome(
        probability=0.91, pathology=True, category="CXR-3",
        measurements=[Measurement("Opacity share of lung fields", "Доля затемнения лёгочных полей", 7.5, "%")],
        marks=[Mark(str(ds.SOPInstanceUID), f.box, f"Очаг {i}") for i, f in enumerate(truth.findings, start=1)],
        conclusion_ru="В обоих лёгких очаговые затемнения округлой формы.",
    )
    return ds, outcome


def test_draft_report_keeps_the_study_and_reads_back_in_russian(radiograph):
    ds, outcome = radiograph
    sr, uids = report([ds], outcome)
    assert (sr.StudyInstanceUID, sr.PatientID, str(sr.PatientName)) == (ds.StudyInstanceUID, "SYN-0001", "Ivanov^Ivan")
    assert sr.OtherPatientIDsSequence[0].PatientID == ds.OtherPatientIDsSequence[0].PatientID  # the OMS policy
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == (uids["series"], uids["sop"]) != (ds.SeriesInstanceUID,) * 2
    assert sr.Modality == "SR" and sr.SpecificCharacterSet == "ISO_IR 192"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("PARTIAL", "UNVERIFIED")
    assert sr.Manufacturer == "Вектор ИИ" and sr.SeriesDescription == "AI report: Lung Scan"
    [text] = texts(sr)
    assert text.startswith(DRAFT_WARNING_RU)
    assert outcome.conclusion_ru in text and "Lung Scan 2.4.1" in text
    assert "Доля затемнения лёгочных полей: 7.5 %" in text


def test_draft_report_carries_probability_category_measurements_and_device_observer(radiograph):
    ds, outcome = radiograph
    sr, _ = report([ds], outcome)
    content = hd.sr.srread(io.BytesIO(to_bytes(sr))).content
    [study_group] = content.get_image_measurement_groups()
    values = {(m.name.meaning, m.unit.value): m.value for m in study_group.get_measurements()}
    assert values == {("Probability of pathology", "{probability}"): pytest.approx(0.91),
                      ("Opacity share of lung fields", "%"): pytest.approx(7.5)}
    assert [e.value.meaning for e in study_group.get_qualitative_evaluations()] == ["CXR-3"]
    [observer] = content.get_observer_contexts()
    device = observer.observer_identifying_attributes
    assert (device.name, device.manufacturer_name, device.model_name) == ("Lung Scan", "Вектор ИИ", "cxr-opacity 7")


def test_each_mark_is_a_planar_roi_on_its_source_image(radiograph):
    ds, outcome = radiograph
    sr, _ = report([ds], outcome)
    groups = hd.sr.srread(io.BytesIO(to_bytes(sr))).content.get_planar_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Очаг 1", "Очаг 2"]
    for group, mark in zip(groups, outcome.marks, strict=True):
        region = group.roi
        assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
        corners = {(int(row), int(col)) for col, row in region.value}
        top, left, bottom, right = mark.box
        assert corners == {(top, left), (top, right), (bottom, right), (bottom, left)}


def test_report_references_every_analysed_slice():
    slices, truth = chest_ct(affected_share=0.3, slices=8, size=64, seed=2)
    outcome = Outcome(probability=0.7, pathology=True, category=truth.severity,
                      measurements=[Measurement("Lesion volume", "Объём поражения", 12.25, "ml")],
                      marks=[Mark(str(slices[4].SOPInstanceUID), (20, 10, 30, 25), "Матовое стекло")],
                      conclusion_ru="Изменения по типу матового стекла.")
    sr, _ = report(slices, outcome)
    assert evidence_uids(sr) == {str(s.SOPInstanceUID) for s in slices}
    assert procedures(sr) == ["Computed tomography of chest"]
    assert "Объём поражения: 12.25 ml" in texts(sr)[0]


def test_autonomous_normal_says_so_instead_of_asking_for_review():
    ds, _ = chest_radiograph(size=128, seed=1)
    outcome = Outcome(probability=0.02, pathology=False, conclusion_ru="Лёгочные поля без очаговых теней.")
    sr, _ = report([ds], outcome, autonomous=True)
    [text] = texts(sr)
    assert text.startswith(AUTONOMOUS_RU) and "Lung Scan 2.4.1" in text
    assert DRAFT_WARNING_RU not in text and (sr.CompletionFlag, sr.VerificationFlag) == ("PARTIAL", "UNVERIFIED")


def test_mammography_report_is_a_mammography_procedure_with_its_bi_rads():
    views, truth = mammography_study(masses=1, size=128, seed=5)
    marks = [Mark(str(v.SOPInstanceUID), m.box, "Образование") for v in views
             for m in truth.masses[(v.ImageLaterality, v.ViewPosition)]]
    sr, _ = report(views, Outcome(probability=0.8, pathology=True, category="BI-RADS 4", marks=marks))
    content = hd.sr.srread(io.BytesIO(to_bytes(sr))).content
    assert procedures(sr) == ["Mammography"]
    assert len(content.get_planar_roi_measurement_groups()) == len(marks) == 2
    assert evidence_uids(sr) == {str(v.SOPInstanceUID) for v in views}
    assert str(sr.PatientName) == "Ivanova^Maria" and sr.PatientSex == "F"


def test_a_mark_on_an_image_that_was_not_analysed_is_refused(radiograph):
    ds, _ = radiograph
    stray = Outcome(probability=0.5, pathology=True, marks=[Mark(generate_uid(), (1, 1, 5, 5), "Очаг")])
    with pytest.raises(ValueError, match="not among the sources"):
        report([ds], stray)


@pytest.mark.parametrize(("service", "author"), [(None, "MedAI Platform"), (SERVICE, "Вектор ИИ")])
def test_not_analysable_report_tells_the_clinic_why(service, author):
    ds, _ = chest_radiograph(size=128, seed=2, modality="CR")
    header = ds.copy()
    del header.PixelData  # the pipeline passes headers only
    reason = "Передана боковая проекция; сервис анализирует только прямую"
    sr = round_trip(build_not_analysable_report(
        sources=[header], reason_ru=reason, service=service, series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(), series_number=9000))
    [text] = texts(sr)
    assert "не может быть проанализировано" in text and reason in text
    assert sr.Manufacturer == author and sr.StudyInstanceUID == ds.StudyInstanceUID and sr.PatientID == ds.PatientID
    assert evidence_uids(sr) == {str(ds.SOPInstanceUID)}
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("PARTIAL", "UNVERIFIED")


def test_the_workers_warm_up_builds_a_report_without_database_or_storage():
    """Run in the worker's parent before it forks: no database access here (pytest-django would refuse it)."""
    from inference.pipeline import warm_up

    warm_up()
