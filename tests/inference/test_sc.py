"""The marked images as a DICOM Secondary Capture series: what a radiologist sees in the viewer, read back
from the Part 10 files, and the sources left byte for byte as they were."""

import copy
import io

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from inference.outcome import Mark, Outcome
from inference.phantoms import chest_ct, chest_radiograph, mammography_study
from inference.sc import PALETTE, WARNING_BAND, build_marked_images, layout_for
from inference.sr import ServiceIdentity
from medai.archive.synthetic import to_bytes

SERVICE = ServiceIdentity(vendor="Вектор ИИ", name="Lung Scan", version="2.4.1")


def build(sources: list[Dataset], outcome: Outcome, uids: list[str] | None = None) -> list[Dataset]:
    series = generate_uid()
    images = build_marked_images(sources=sources, outcome=outcome, service=SERVICE, series_instance_uid=series,
                                 sop_instance_uids=uids, series_number=9003)
    return [pydicom.dcmread(io.BytesIO(to_bytes(image))) for image in images]


def is_grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])


@pytest.fixture(scope="module")
def radiograph() -> tuple[Dataset, Outcome]:
    ds, truth = chest_radiograph(lesions=1, size=256, seed=6)
    box = truth.findings[0].box
    return ds, Outcome(probability=0.88, pathology=True, category="CXR-2",
                       marks=[Mark(str(ds.SOPInstanceUID), box, "Очаг 1")])


def test_marked_image_is_a_new_derived_series_of_the_same_study(radiograph):
    ds, outcome = radiograph
    before = to_bytes(ds)
    uid = generate_uid()
    [sc] = build([ds], outcome, [uid])
    assert to_bytes(ds) == before  # the original is never changed
    assert list(sc.ImageType[:2]) == ["DERIVED", "SECONDARY"] and sc.BurnedInAnnotation == "YES"
    assert sc.SOPInstanceUID == uid and sc.SeriesInstanceUID != ds.SeriesInstanceUID and sc.InstanceNumber == 1
    assert (sc.StudyInstanceUID, sc.PatientID, str(sc.PatientName)) == (ds.StudyInstanceUID, ds.PatientID,
                                                                        str(ds.PatientName))
    assert sc.OtherPatientIDsSequence[0].PatientID == ds.OtherPatientIDsSequence[0].PatientID
    [ref] = sc.SourceImageSequence
    assert (ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID) == (ds.SOPInstanceUID, ds.SOPClassUID)
    assert sc.ConversionType == "WSD" and sc.SpecificCharacterSet == "ISO_IR 192" and sc.Manufacturer == "Вектор ИИ"
    assert sc.SeriesDescription == "AI markings: Lung Scan" and "Lung Scan 2.4.1" in sc.DerivationDescription
    assert (sc.PhotometricInterpretation, sc.BitsAllocated, sc.SamplesPerPixel) == ("RGB", 8, 3)


def test_the_mark_is_a_coloured_frame_around_untouched_tissue(radiograph):
    ds, outcome = radiograph
    [sc] = build([ds], outcome)
    rgb, layout = sc.pixel_array, layout_for(ds.Rows, ds.Columns)
    top, left = layout.position(*outcome.marks[0].box[:2])
    bottom, right = layout.position(*outcome.marks[0].box[2:])
    assert tuple(rgb[top - 1, (left + right) // 2]) == PALETTE[0]  # the outline, just outside the box
    assert tuple(rgb[(top + bottom) // 2, right]) == PALETTE[0]
    assert is_grey(rgb[top:bottom, left:right]).all()  # the lesion itself is not painted over
    label_room = 3 * layout.font_px
    image_rows = np.r_[layout.top:top - label_room, bottom + label_room:layout.top + ds.Rows * layout.scale]
    assert is_grey(rgb[image_rows, layout.left:layout.left + ds.Columns * layout.scale]).all()


def test_grey_levels_follow_the_sources_window(radiograph):
    ds, outcome = radiograph
    [sc] = build([ds], outcome)
    layout = layout_for(ds.Rows, ds.Columns)
    lung = sc.pixel_array[layout.position(ds.Rows * 0.47, ds.Columns * 0.31)]  # stored ~900 of window 0..4096
    body = sc.pixel_array[layout.position(ds.Rows * 0.9, ds.Columns * 0.5)]  # ~2600
    assert lung[0] == pytest.approx(900 / 4096 * 255, abs=8) and body[0] == pytest.approx(2600 / 4096 * 255, abs=8)
    inverted = copy.deepcopy(ds)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    [negative] = build([inverted], outcome)
    assert negative.pixel_array[layout.position(ds.Rows * 0.47, ds.Columns * 0.31)][0] == pytest.approx(
        255 - lung[0], abs=2)


def test_warning_band_and_legend_are_burned_in_outside_the_image(radiograph):
    ds, outcome = radiograph
    [sc] = build([ds], outcome)
    rgb, layout = sc.pixel_array, layout_for(ds.Rows, ds.Columns)
    band = rgb[: layout.top].reshape(-1, 3)
    assert (band == WARNING_BAND).all(axis=1).mean() > 0.6  # a red band ...
    assert (band == 255).all(axis=1).sum() > 200  # ... with white text on it
    legend = rgb[layout.top + ds.Rows * layout.scale:].reshape(-1, 3)
    assert len(legend) and (legend == PALETTE[0]).all(axis=1).sum() > 50  # the label's colour swatch
    assert (legend == 220).all(axis=1).sum() > 100  # the legend's text
    assert sc.Columns >= 512  # a 256 px radiograph is enlarged so the text is legible


def test_ct_slice_is_windowed_in_hounsfield_units_whether_stored_signed_or_not():
    slices, _ = chest_ct(affected_share=0.0, slices=3, size=128, noise_hu=0, seed=1)
    ds = slices[1]
    signed = copy.deepcopy(ds)
    signed.PixelRepresentation, signed.BitsStored, signed.HighBit, signed.RescaleIntercept = 1, 16, 15, 0
    signed.PixelData = (ds.pixel_array.astype(np.int32) - 1024).astype(np.int16).tobytes()
    normal = Outcome(probability=0.05, pathology=False, category="CT-0")
    [unsigned_sc] = build([ds], normal)
    [signed_sc] = build([signed], normal)
    assert np.array_equal(unsigned_sc.pixel_array, signed_sc.pixel_array)
    layout = layout_for(ds.Rows, ds.Columns)
    assert layout.scale == 4 and unsigned_sc.Columns == 512
    lung = unsigned_sc.pixel_array[layout.position(ds.Rows * 0.48, ds.Columns * 0.3)]  # -850 HU in -600/1500
    assert lung[0] == pytest.approx(500 / 1500 * 255, abs=2)
    [series_sc] = build(slices, normal)  # a normal result still shows one image: the first
    assert series_sc.SourceImageSequence[0].ReferencedSOPInstanceUID == slices[0].SOPInstanceUID


def test_mammography_shows_the_marked_views_with_stable_uids():
    views, truth = mammography_study(masses=1, size=128, seed=3)
    before = [to_bytes(v) for v in views]
    marks = [Mark(str(v.SOPInstanceUID), m.box, "Образование") for v in views
             for m in truth.masses[(v.ImageLaterality, v.ViewPosition)]]
    outcome = Outcome(probability=0.9, pathology=True, category="BI-RADS 4", marks=marks)
    series = generate_uid()
    first, again = ([build_marked_images(sources=views, outcome=outcome, service=SERVICE, series_instance_uid=series,
                                         sop_instance_uids=None, series_number=9003) for _ in range(2)])
    assert [v for v in map(to_bytes, views)] == before
    marked = [v.SOPInstanceUID for v in views if truth.masses[(v.ImageLaterality, v.ViewPosition)]]
    assert [sc.SourceImageSequence[0].ReferencedSOPInstanceUID for sc in first] == marked
    assert [sc.InstanceNumber for sc in first] == [1, 2]
    assert [sc.SOPInstanceUID for sc in first] == [sc.SOPInstanceUID for sc in again]  # a rerun writes the same
    assert len({sc.SOPInstanceUID for sc in first}) == 2 and first[0].StudyInstanceUID == views[0].StudyInstanceUID


def test_key_images_choose_what_is_shown_and_must_be_sources(radiograph):
    ds, _ = radiograph
    other, _ = chest_radiograph(size=128, seed=9)
    chosen = Outcome(probability=0.4, pathology=False, key_images=[str(other.SOPInstanceUID)])
    [sc] = build([ds, other], chosen)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == other.SOPInstanceUID
    with pytest.raises(ValueError, match="not among the sources"):
        build([ds], chosen)
