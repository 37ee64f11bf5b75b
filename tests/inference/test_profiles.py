"""Profiles refuse what their model must not read, with a reason in Russian, accept the phantoms, and,
through the real Triton, turn the phantoms into the truth: pathology, severity, BI-RADS, marks."""

import io
import itertools
import random

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset

from inference import triton as triton_client
from inference.outcome import Outcome
from inference.phantoms import ChestCTTruth, chest_ct, chest_radiograph, mammography_study
from inference.profiles import PROFILES, InputRejected, profile_for
from inference.sr import ServiceIdentity, build_report, report_text
from medai.archive.synthetic import to_bytes
from medai.dicomweb.dicomjson import dataset_metadata
from tests.inference.test_phantoms import hounsfield

# How far the CT lesion volumes may be from the phantom's truth, as fractions of the truth. Over: nothing but noise
# (consolidation at 20 +- 10 HU reaching 60 HU) can add a voxel, so any excess means a leak out of the lungs (chest
# wall at 40 HU reads as consolidation) or a wrong sum. Under: the reference model misses lesion voxels on the lung's
# rim, outside its closed envelope of aerated lung; 3-19 % per lung and type and 7-13 % in total on 128-pixel
# phantoms at CT-2 (10 seeds), so a band that any swap of sides or types, lost term or unit slip leaves.
VOLUME_OVER, VOLUME_UNDER, TOTAL_UNDER = 0.02, 0.25, 0.15
ROUNDING_ML = 0.05  # the measurements are rounded to 0.1 ml


def headers(datasets: list[Dataset]) -> list[Dataset]:
    """What the worker audits: the archive index's DICOM JSON without bulk data, as in pipeline._header."""
    return [Dataset.from_json({tag: value for tag, value in dataset_metadata(ds, has_pixel_data=True).items()
                               if "BulkDataURI" not in value}) for ds in datasets]


def codes(profile: str, datasets: list[Dataset], rules: dict | None = None) -> dict[str, str]:
    return {r.code: r.reason_ru for r in profile_for(profile).audit(headers(datasets), rules or {})}


def run(profile_name: str, datasets: list[Dataset], triton, threshold: float = 0.5):
    profile = profile_for(profile_name)
    prepared = profile.prepare(datasets, {})
    answers = [triton_client.infer(profile.model, inputs, profile.OUTPUTS, url=triton.url).outputs
               for inputs in profile.requests(prepared)]
    return prepared, profile.interpret(prepared, answers, pathology_threshold=threshold)


def centre(box) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def inside(point, box) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def test_the_registry_names_the_services_profiles():
    assert set(PROFILES) == {"chest_xray", "chest_ct", "mammography"}
    with pytest.raises(KeyError, match="knee_mri"):
        profile_for("knee_mri")


def test_a_lateral_radiograph_is_refused_and_a_frontal_one_chosen_beside_it():
    lateral, _ = chest_radiograph(size=64, view="LL")
    refused = codes("chest_xray", [lateral])
    assert list(refused) == ["not_frontal"] and "ViewPosition LL" in refused["not_frontal"]
    assert "фронтальной" in refused["not_frontal"]
    frontal, _ = chest_radiograph(size=64, view="AP", seed=1)
    assert codes("chest_xray", [lateral, frontal]) == {}
    assert profile_for("chest_xray").select(headers([lateral, frontal])) == [str(frontal.SOPInstanceUID)]


def test_wrong_modality_and_body_part_are_refused():
    views, _ = mammography_study(size=64)
    assert "MG" in codes("chest_xray", views)["wrong_modality"]
    radiograph, _ = chest_radiograph(size=64)
    assert "DX" in codes("chest_ct", [radiograph])["wrong_modality"]
    slices, _ = chest_ct(slices=32, size=32, noise_hu=0)
    for ds in slices:
        ds.BodyPartExamined = "HEAD"
    assert "HEAD" in codes("chest_ct", slices)["wrong_body_part"]
    for ds in slices:
        ds.BodyPartExamined = ""  # left empty by many PACS: accepted
    assert codes("chest_ct", slices) == {}


def test_a_ct_of_too_few_or_thick_slices_is_refused():
    few, _ = chest_ct(slices=8, size=32, noise_hu=0)
    assert list(codes("chest_ct", few)) == ["too_few_slices"]
    assert codes("chest_ct", few, {"min_slices": 8}) == {}
    thick, _ = chest_ct(slices=32, size=32, spacing_mm=5.0, noise_hu=0)
    refused = codes("chest_ct", thick)
    assert list(refused) == ["thick_slices"] and "5,0 мм" in refused["thick_slices"]
    for ds in few:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal
    assert "not_axial" in codes("chest_ct", few)


def test_a_mammogram_without_one_standard_view_is_refused_naming_it():
    views, _ = mammography_study(size=64)
    assert codes("mammography", views) == {}
    without = [ds for ds in views if (ds.ImageLaterality, ds.ViewPosition) != ("L", "MLO")]
    refused = codes("mammography", without)
    assert list(refused) == ["missing_views"] and "MLO левой" in refused["missing_views"]


def test_undecodable_pixels_are_rejected():
    ds, _ = chest_radiograph(size=64)
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(InputRejected) as rejected:
        profile_for("chest_xray").prepare([ds], {})
    assert rejected.value.code == "pixels_undecodable" and rejected.value.reason_ru


@pytest.mark.parametrize("lesions", [0, 2])
def test_a_chest_radiograph_reads_as_its_truth(triton, lesions):
    ds, truth = chest_radiograph(lesions=lesions, size=256, seed=3 + lesions)
    _, outcome = run("chest_xray", [ds], triton)
    assert outcome.pathology is truth.pathology
    assert outcome.key_images == [str(ds.SOPInstanceUID)]
    for finding in truth.findings:  # touching lesions may share one box
        assert any(inside(centre(finding.box), mark.box) for mark in outcome.marks)
    assert ("Выявлены участки затемнения" in outcome.conclusion_ru) is truth.pathology
    assert outcome.conclusion_ru.startswith("Рентгенография органов грудной клетки.")


def test_a_detector_sized_radiograph_is_read_at_the_models_size_and_marked_on_the_stored_image(triton):
    ds, truth = chest_radiograph(lesions=2, size=2600, seed=5)
    prepared, outcome = run("chest_xray", [ds], triton)
    assert max(prepared.image.shape) <= 1024 and prepared.scale == 3
    assert outcome.pathology is truth.pathology
    for finding in truth.findings:  # the marks are in the stored image's pixels, where the SC draws them
        assert any(inside(centre(finding.box), mark.box) for mark in outcome.marks)
    assert all(mark.box[2] <= ds.Rows and mark.box[3] <= ds.Columns for mark in outcome.marks)


@pytest.mark.parametrize("share", [0.0, 0.35, 0.6])
def test_a_chest_ct_reads_as_its_truth_from_slices_in_any_order(triton, share):
    datasets, truth = chest_ct(affected_share=share, slices=40, size=96, seed=5)
    shuffled = random.Random(1).sample(datasets, len(datasets))
    assert codes("chest_ct", shuffled) == {}
    prepared, outcome = run("chest_ct", shuffled, triton)
    np.testing.assert_array_equal(prepared.hu, hounsfield(datasets))
    assert prepared.spacing_mm == (2.5, 2.5, 2.5)
    assert outcome.category == truth.severity
    assert outcome.pathology is (share > 0) and outcome.urgent is (share >= 0.5)
    assert outcome.probability == (0.0 if share == 0 else pytest.approx(min(1.0, 0.5 + truth.affected_share()),
                                                                        abs=0.06))
    measured = {m.concept: m.value for m in outcome.measurements}
    assert measured["Affected lung share"] == pytest.approx(truth.affected_share() * 100, abs=6)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    sides = {"right": (0, 48), "left": (48, 96)}
    marked = {mark.label.split(", ")[1].split()[0]: mark for mark in outcome.marks}
    assert set(marked) == ({"правое", "левое"} if share else set())
    for side, name in (("right", "правое"), ("left", "левое")):
        if name in marked:
            assert sides[side][0] <= marked[name].box[1] < marked[name].box[3] <= sides[side][1]
            assert truth.ground_glass_ml[side] + truth.consolidation_ml[side] > 0
    assert outcome.key_images and all(uid in by_uid for uid in outcome.key_images)
    assert f"КТ-{truth.severity[-1]}" in outcome.conclusion_ru


def chest_ct_of_two(right: dict, left: dict, *, size: int, seed: int) -> tuple[list[Dataset], ChestCTTruth]:
    """A chest CT whose two lungs carry different lesions: the patient's right lung (the image's left half) from one
    phantom, the left lung from another of the same geometry. Lesions are clipped to their own lung, so each side's
    truth is exactly its phantom's. One phantom alone fills both lungs alike, and could not tell a side swap."""
    slices, right_truth = chest_ct(size=size, seed=seed, **right)
    others, left_truth = chest_ct(size=size, seed=seed + 1, **left)
    assert right_truth.lung_ml == left_truth.lung_ml  # the same body and lungs: only the lesions differ
    for ds, other in zip(slices, others, strict=True):
        stored = ds.pixel_array.copy()
        stored[:, size // 2:] = other.pixel_array[:, size // 2:]
        ds.PixelData = stored.tobytes()
    return slices, ChestCTTruth(
        voxel_ml=right_truth.voxel_ml, lung_ml=right_truth.lung_ml,
        ground_glass_ml={"right": right_truth.ground_glass_ml["right"], "left": left_truth.ground_glass_ml["left"]},
        consolidation_ml={"right": right_truth.consolidation_ml["right"],
                          "left": left_truth.consolidation_ml["left"]},
    )


def within(measured: float, true: float, under: float) -> bool:
    return true * (1 - under) - ROUNDING_ML <= measured <= true * (1 + VOLUME_OVER) + ROUNDING_ML


def test_a_chest_ct_measures_lesion_volumes_per_lung_and_in_total_as_placed(triton):
    """Ground glass and consolidation, per lung and in total, through Triton and the profile, against the volumes
    the phantom drew: mostly ground glass on the right (40 % of the lung), mostly consolidation on the left (20 %),
    so sides and types differ several-fold. The SR's TID 1500 group and its text carry the same totals."""
    datasets, truth = chest_ct_of_two({"affected_share": 0.4, "consolidation_fraction": 0.1},
                                      {"affected_share": 0.2, "consolidation_fraction": 0.7}, size=128, seed=1)
    compartments = {(side, kind): volumes[side] for side in ("right", "left")
                    for kind, volumes in (("Ground-glass", truth.ground_glass_ml),
                                          ("Consolidation", truth.consolidation_ml))}
    totals = {kind: sum(v for (_, k), v in compartments.items() if k == kind) for kind in ("Ground-glass",
                                                                                        "Consolidation")}
    # the bands are narrow enough to matter: a swapped side or type, or a total missing a lung or a type, falls out
    for (a, true_a), (b, true_b) in itertools.permutations(compartments.items(), 2):
        assert not within(true_b, true_a, VOLUME_UNDER), f"{b} would pass for {a}"
    for kind, total in totals.items():
        for (side, k), part in compartments.items():
            assert k != kind or not within(part, total, TOTAL_UNDER), f"{side} lung alone would pass for {kind}"
    for part in totals.values():
        assert not within(part, sum(totals.values()), TOTAL_UNDER)

    _, outcome = run("chest_ct", datasets, triton)
    measured = {m.concept: m.value for m in outcome.measurements}
    units = {m.concept: m.unit for m in outcome.measurements}
    for (side, kind), true in compartments.items():
        concept = f"{kind} volume, {side} lung"
        assert within(measured[concept], true, VOLUME_UNDER), (concept, measured[concept], true)
    for kind, true in {**totals, "Lesion": sum(totals.values())}.items():
        concept = f"Total {kind.lower()} volume"
        assert within(measured[concept], true, TOTAL_UNDER), (concept, measured[concept], true)
        assert units[concept] == "ml"
    rounded_thrice = 3 * ROUNDING_ML + 1e-9  # a sum and its two parts, each rounded on its own
    for side in ("right", "left"):  # the sums agree with their parts
        assert measured[f"Lesion volume, {side} lung"] == pytest.approx(
            measured[f"Ground-glass volume, {side} lung"] + measured[f"Consolidation volume, {side} lung"],
            abs=rounded_thrice)
    for kind in ("Ground-glass", "Consolidation", "Lesion"):
        assert measured[f"Total {kind.lower()} volume"] == pytest.approx(
            sum(measured[f"{kind} volume, {side} lung"] for side in ("right", "left")), abs=rounded_thrice)
    assert outcome.category == truth.severity == "CT-2"
    assert Outcome.from_json(outcome.as_json()) == outcome  # the JSON result carries the same measurements

    total = measured["Total lesion volume"]
    assert f"общий объём поражения {total:.0f} мл" in outcome.conclusion_ru
    service = ServiceIdentity(vendor="MedAI", name="Chest CT", version="1", model_name="ct_lung_lesions",
                              model_version="1")
    sr = build_report(sources=datasets, outcome=outcome, service=service, series_instance_uid=hd.UID(),
                      sop_instance_uid=hd.UID(), series_number=9002)
    [group] = hd.sr.srread(io.BytesIO(to_bytes(sr))).content.get_image_measurement_groups()
    in_sr = {(m.name.meaning, m.unit.value): m.value for m in group.get_measurements()}
    assert in_sr[("Total lesion volume", "ml")] == pytest.approx(total)
    assert in_sr[("Lesion volume, right lung", "ml")] == pytest.approx(measured["Lesion volume, right lung"])
    assert f"Общий объём поражения: {total:.4g} ml." in report_text(outcome, service, autonomous=False)


@pytest.mark.parametrize("size", [128, 2200])  # 2200: read at a third of its size, marked at full size
def test_a_mammogram_reads_as_its_truth(triton, size):
    views, truth = mammography_study(density="C", masses=1, size=size, seed=6)
    prepared, outcome = run("mammography", views, triton)
    assert all(max(picture.shape) <= 1024 for picture in prepared.images)
    assert outcome.category == "BI-RADS 4" and outcome.pathology
    position = dict(zip(prepared.sop_instance_uids, prepared.views, strict=True))
    marked_views = {position[mark.sop_instance_uid] for mark in outcome.marks}
    assert marked_views == {view for view, found in truth.masses.items() if found}
    for mark in outcome.marks:
        [expected] = truth.masses[position[mark.sop_instance_uid]]
        assert inside(centre(mark.box), expected.box)
    side = "левой" if next(iter(marked_views))[0] == "L" else "правой"
    assert f"в {side} молочной железе" in outcome.conclusion_ru and "ACR C" in outcome.conclusion_ru
    _, normal = run("mammography", mammography_study(density="B", size=128, seed=7)[0], triton)
    assert (normal.category, normal.pathology, normal.marks) == ("BI-RADS 1", False, [])


@pytest.mark.parametrize(("allocated", "stored", "signed", "transfer_syntax"), [
    (16, 12, 0, "1.2.840.10008.1.2.1"), (16, 16, 0, "1.2.840.10008.1.2"), (16, 12, 1, "1.2.840.10008.1.2.1"),
    (16, 16, 1, "1.2.840.10008.1.2.1"), (8, 8, 0, "1.2.840.10008.1.2.1"), (8, 6, 1, "1.2.840.10008.1.2"),
    (32, 20, 1, "1.2.840.10008.1.2.1"),
])
def test_uncompressed_pixels_are_read_as_pydicom_reads_them(allocated, stored, signed, transfer_syntax):
    """The fast path for uncompressed images gives pydicom's `pixel_array`, unused high bits included (set
    at random here: pydicom clears them, or sign-extends the stored bits)."""
    from pydicom.uid import UID

    from inference.profiles.base import pixels

    ds, _ = chest_radiograph(size=33)  # odd: 8-bit pixel data gets a padding byte
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, stored, stored - 1, signed
    raw = np.random.default_rng(allocated + stored + signed).integers(0, 2**allocated, size=33 * 33, dtype=np.uint64)
    data = raw.astype(f"<u{allocated // 8}").tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    fast = pixels(ds)
    assert fast.dtype == ds.pixel_array.dtype and fast.shape == (33, 33)
    np.testing.assert_array_equal(fast, ds.pixel_array)


def test_hounsfield_units_clip_to_int16_and_follow_the_rescale():
    from inference.profiles.chest_ct import hounsfield_units

    [ds], _ = chest_ct(slices=1, size=8)
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000  # up to 63000: beyond int16 once shifted
    ds.BitsStored = ds.HighBit = 16
    ds.PixelData = stored.tobytes()
    for slope, intercept in ((1, -1024), (1, 0), (1, -40000), (0.5, -1024.5)):
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        expected = np.clip(np.rint(stored * slope + intercept), -32768, 32767).astype(np.int16)
        out = np.full((8, 8), 7, dtype=np.int16)
        np.testing.assert_array_equal(hounsfield_units(ds), expected)
        assert hounsfield_units(ds, out=out) is out
        np.testing.assert_array_equal(out, expected)
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 50  # in range: the one-pass path
    ds.PixelData, ds.RescaleSlope, ds.RescaleIntercept = stored.tobytes(), 1, -1024
    np.testing.assert_array_equal(hounsfield_units(ds), stored.astype(np.int16) - 1024)
