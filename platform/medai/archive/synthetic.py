"""Synthetic DICOM studies (CT, CR/DX, MG) for tests, demos and benchmarks: real, valid files, no patient.

Each generated instance is a complete Part 10 file (preamble, file meta, pixel data) that pydicom
and any PACS can read; patient attributes are invented.
"""

import io
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

_SOP_CLASS = {
    "CT": CTImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "CR": ComputedRadiographyImageStorage,
    "MG": DigitalMammographyXRayImageStorageForPresentation,
}
_BODY_PART = {"CT": "CHEST", "DX": "CHEST", "CR": "CHEST", "MG": "BREAST"}


@dataclass(frozen=True)
class Patient:
    patient_id: str = "SYN-0001"
    name: str = "Ivanov^Ivan"
    birth_date: str = "19700101"
    sex: str = "M"
    oms_policy: str = "7712345678901234"  # the single OMS policy number (ENP); "" for none


def make_instance(
    *,
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    instance_number: int = 1,
    rows: int = 64,
    columns: int = 64,
    patient: Patient = Patient(),
    accession_number: str = "ACC0001",
    study_date: str = "20260115",
    view_position: str = "",
    laterality: str = "",
    seed: int | None = None,
    pixels: np.ndarray | None = None,
    slice_thickness: float = 1.0,
    pixel_spacing: float = 0.7,
) -> Dataset:
    """One image instance with plausible attributes (uint16, 12 bits stored).

    `pixels` are the stored values (0-4095; for CT, HU + 1024); without them, noise.
    """
    rng = np.random.default_rng(seed if seed is not None else instance_number)
    if pixels is not None:
        rows, columns = pixels.shape
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = _SOP_CLASS[modality]
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient.patient_id
    ds.PatientName = patient.name
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    if patient.oms_policy:
        policy = Dataset()
        policy.PatientID = patient.oms_policy
        policy.IssuerOfPatientID = "OMS"
        ds.OtherPatientIDsSequence = [policy]
    ds.AccessionNumber = accession_number
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.StudyDescription = f"Synthetic {modality}"
    ds.ReferringPhysicianName = "Petrov^Petr"
    ds.Modality = modality
    ds.BodyPartExamined = _BODY_PART[modality]
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"Synthetic {modality} series"
    ds.InstanceNumber = instance_number
    if view_position:
        ds.ViewPosition = view_position
    if laterality:
        ds.ImageLaterality = laterality
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.SliceThickness = slice_thickness
        ds.ImagePositionPatient = [0, 0, float(instance_number) * slice_thickness]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
        ds.WindowCenter, ds.WindowWidth = -600, 1500
    else:
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PresentationIntentType = "FOR PRESENTATION"
    if pixels is None:
        pixels = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16)
    ds.PixelData = np.clip(pixels, 0, 4095).astype(np.uint16).tobytes()
    return ds


def make_series(*, modality: str = "CT", count: int = 3, study_uid: str | None = None, **kwargs) -> list[Dataset]:
    """`count` instances of one series in one study."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    return [
        make_instance(modality=modality, study_uid=study_uid, series_uid=series_uid, instance_number=i + 1, **kwargs)
        for i in range(count)
    ]


def to_bytes(ds: Dataset) -> bytes:
    """The Part 10 file of a data set, with its preamble."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
