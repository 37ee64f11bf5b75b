"""The phantoms' ground truth is what their DICOM pixels show, counted again from the files."""

import io

import numpy as np
import pydicom
import pytest

from inference.phantoms import (
    CONSOLIDATION_HU,
    DENSITY_SHARE,
    GROUND_GLASS_HU,
    LUNG_HU,
    chest_ct,
    chest_radiograph,
    ct_severity,
    mammography_study,
)
from medai.archive.synthetic import to_bytes


def hounsfield(datasets) -> np.ndarray:
    """The series as HU, read back from the Part 10 files with pydicom's modality LUT."""
    files = [pydicom.dcmread(io.BytesIO(to_bytes(ds))) for ds in datasets]
    files.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    return np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in files])


@pytest.mark.parametrize(("share", "severity"), [(0.0, "CT-0"), (0.12, "CT-1"), (0.35, "CT-2"), (0.6, "CT-3"),
                                                 (0.8, "CT-4")])
def test_ct_lesion_volumes_and_severity_are_what_the_voxels_show(share, severity):
    datasets, truth = chest_ct(affected_share=share, slices=24, size=96, noise_hu=0, seed=3)
    hu = hounsfield(datasets)
    voxels = {"ggo": int((hu == GROUND_GLASS_HU).sum()), "cons": int((hu == CONSOLIDATION_HU).sum()),
              "lung": int((hu == LUNG_HU).sum())}
    assert voxels["ggo"] * truth.voxel_ml == pytest.approx(sum(truth.ground_glass_ml.values()))
    assert voxels["cons"] * truth.voxel_ml == pytest.approx(sum(truth.consolidation_ml.values()))
    lesions = voxels["ggo"] + voxels["cons"]
    assert lesions / (lesions + voxels["lung"]) == pytest.approx(truth.affected_share())
    assert truth.affected_share() >= share and truth.severity == severity == ct_severity(truth.affected_share())


def test_ct_series_is_a_plausible_chest_ct():
    datasets, _ = chest_ct(slices=8, size=64)
    assert {ds.Modality for ds in datasets} == {"CT"} and len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, 9))
    assert float(datasets[0].SliceThickness) == 2.5 and datasets[0].BodyPartExamined == "CHEST"


def test_radiograph_lesions_lie_in_the_lungs_and_are_brighter():
    normal, truth = chest_radiograph(lesions=0, seed=1)
    assert truth.pathology is False and truth.findings == []
    image, truth = chest_radiograph(lesions=3, seed=1)
    pixels = pydicom.dcmread(io.BytesIO(to_bytes(image))).pixel_array.astype(float)
    assert truth.pathology and len(truth.findings) == 3 and image.ViewPosition == "PA"
    lung_level = np.median(pydicom.dcmread(io.BytesIO(to_bytes(normal))).pixel_array[200:300, 130:190])
    for finding in truth.findings:
        r0, c0, r1, c1 = finding.box
        centre = pixels[(r0 + r1) // 2, (c0 + c1) // 2]
        assert centre > lung_level + 800
        assert (finding.side == "right") == ((c0 + c1) / 2 < image.Columns / 2)  # PA: patient's right on the left


@pytest.mark.parametrize("density", ["A", "D"])
def test_mammography_has_four_standard_views_density_and_masses(density):
    datasets, truth = mammography_study(density=density, masses=1, seed=2)
    assert sorted((ds.ImageLaterality, ds.ViewPosition) for ds in datasets) == [
        ("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
    assert truth.birads == 4 and sum(len(boxes) for boxes in truth.masses.values()) == 2  # both views of one side
    pixels = [ds.pixel_array for ds in datasets]
    dense = np.mean([(p > 1700).sum() / (p > 700).sum() for p in pixels])
    assert dense == pytest.approx(DENSITY_SHARE[density], abs=0.08)
    _, negative = mammography_study(density=density, masses=0)
    assert negative.birads == 1
