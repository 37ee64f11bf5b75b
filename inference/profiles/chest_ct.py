"""Chest CT (КТ ОГК) on the `ct_lung_lesions` model: lesion volumes per lung and CT-0..CT-4 severity.

Audit: CT, chest (or BodyPartExamined empty), and one series of thin axial slices: at least
`min_slices` (default 32: the phantoms have 40; a real service sets ~100 or more in its rules) of
SliceThickness <= `max_slice_thickness_mm` (3.0), all of one Rows x Columns. The series with the most
such slices is analysed.
Probability of pathology: 0 for CT-0 (no lesion voxel); with any lesion 0.5 + the affected share,
capped at 1 (CT-1 0.5-0.75, CT-2 0.75-1, CT-3 and CT-4 1). Urgent: CT-3 and CT-4.
Marks: for each lung with lesions, the model's box around them on the slice where they are largest.
Measurements: the affected share; per lung its volume and its ground-glass, consolidation and lesion (both
together) volumes; and the totals of the three over both lungs, which the SR's TID 1500 group, the JSON result
and the conclusion text all take from this one list.
"""

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from inference.outcome import Mark, Measurement, Outcome
from inference.profiles.base import (
    InputRejected,
    Prepared,
    Profile,
    Refusal,
    body_part_ok,
    body_part_refusal,
    in_threads,
    modality_refusal,
    number_ru,
    pixels,
    text,
)
from inference.triton import OutputSpec

SIDES = (("right", "правое", "правом"), ("left", "левое", "левом"))  # image left = patient's right


@dataclass(frozen=True)
class ChestCTPrepared(Prepared):
    hu: np.ndarray  # int16 (slices, rows, columns), slices in the order of sop_instance_uids, along the normal
    spacing_mm: tuple[float, float, float]  # (between slices, between rows, between columns)


class ChestCT(Profile):
    name = "chest_ct"
    model = "ct_lung_lesions"
    OUTPUTS = {  # a batch of one volume
        "LUNG_ML": OutputSpec(np.float32, (1, 2)), "GROUND_GLASS_ML": OutputSpec(np.float32, (1, 2)),
        "CONSOLIDATION_ML": OutputSpec(np.float32, (1, 2)), "AFFECTED_SHARE": OutputSpec(np.float32, (1, 1)),
        "SEVERITY": OutputSpec(np.int32, (1, 1)), "KEY_SLICE": OutputSpec(np.int32, (1, 2)),
        "LESION_BOX": OutputSpec(np.int32, (1, 2, 4)),
    }
    DEFAULT_RULES = {"modalities": ["CT"], "body_parts": ["CHEST"], "min_slices": 32, "max_slice_thickness_mm": 3.0}

    def audit(self, headers: list[Dataset], rules: dict | None = None) -> list[Refusal]:
        rules = self.rules(rules)
        images = [h for h in headers if text(h, "Modality") in rules["modalities"]]
        if not images:
            return [modality_refusal(headers, rules["modalities"], "компьютерная томография")]
        chest = [h for h in images if body_part_ok(h, rules["body_parts"])]
        if not chest:
            return [body_part_refusal(images, rules["body_parts"], "органов грудной клетки")]
        if self.select(headers, rules):
            return []
        largest = max(_series(chest).values(), key=len)
        return _series_refusals(largest, rules)

    def select(self, headers: list[Dataset], rules: dict | None = None) -> list[str]:
        rules = self.rules(rules)
        chest = [h for h in headers if text(h, "Modality") in rules["modalities"]
                 and body_part_ok(h, rules["body_parts"])]
        usable = [s for s in _series(chest).values() if not _series_refusals(s, rules)]
        return [str(h.SOPInstanceUID) for h in max(usable, key=len)] if usable else []

    def prepare(self, datasets: list[Dataset], rules: dict | None = None) -> ChestCTPrepared:
        normal = _normal(datasets[0])
        placed = sorted(((float(np.dot(_position(ds), normal)), i) for i, ds in enumerate(datasets)))
        ordered = [datasets[i] for _, i in placed]
        steps = np.diff([along for along, _ in placed])
        if not len(steps) or np.median(steps) <= 0:
            raise InputRejected("slice_positions", "Срезы серии не упорядочены по положению "
                                                   "(ImagePositionPatient совпадают или отсутствуют).")
        rows_mm, columns_mm = (float(v) for v in ordered[0].PixelSpacing)
        hu = np.empty((len(ordered), *pixels(ordered[0]).shape), dtype=np.int16)  # each slice written in place
        in_threads(lambda index: hounsfield_units(ordered[index], out=hu[index]), range(len(ordered)))
        return ChestCTPrepared([str(ds.SOPInstanceUID) for ds in ordered], hu,
                               (float(np.median(steps)), rows_mm, columns_mm))

    def requests(self, prepared: ChestCTPrepared) -> list[dict[str, np.ndarray]]:
        return [{"HU": prepared.hu[None], "SPACING_MM": np.array([prepared.spacing_mm], dtype=np.float32)}]

    def interpret(self, prepared: ChestCTPrepared, answers: list[dict[str, np.ndarray]], *,
                  pathology_threshold: float) -> Outcome:
        answer = {name: tensor[0] for name, tensor in answers[0].items()}  # the batch of one
        severity, share = int(answer["SEVERITY"][0]), float(answer["AFFECTED_SHARE"][0])
        # float64 before adding, so a total is the sum of the model's values, not of float32 roundings
        ground_glass = answer["GROUND_GLASS_ML"].astype(np.float64)
        consolidation = answer["CONSOLIDATION_ML"].astype(np.float64)
        lesions_ml = ground_glass + consolidation
        probability = 0.0 if severity == 0 else min(1.0, 0.5 + share)
        measurements = [Measurement("Affected lung share", "Доля поражения лёгких", round(share * 100, 1), "%")]
        for i, (side, side_ru, _) in enumerate(SIDES):
            measurements += [
                Measurement(f"Lung volume, {side} lung", f"Объём лёгкого, {side_ru}", _ml(answer["LUNG_ML"][i]), "ml"),
                Measurement(f"Ground-glass volume, {side} lung", f"Объём матового стекла, {side_ru} лёгкое",
                            _ml(ground_glass[i]), "ml"),
                Measurement(f"Consolidation volume, {side} lung", f"Объём консолидации, {side_ru} лёгкое",
                            _ml(consolidation[i]), "ml"),
                Measurement(f"Lesion volume, {side} lung", f"Объём поражения, {side_ru} лёгкое",
                            _ml(lesions_ml[i]), "ml"),
            ]
        measurements += _totals(ground_glass, consolidation)
        marks = _key_slice_marks(prepared, answer["KEY_SLICE"], answer["LESION_BOX"])
        key_images = list(dict.fromkeys(m.sop_instance_uid for m in marks))
        return Outcome(
            probability=probability, pathology=probability >= pathology_threshold, category=f"CT-{severity}",
            urgent=severity >= 3, measurements=measurements, marks=marks,
            key_images=key_images or [prepared.sop_instance_uids[len(prepared.sop_instance_uids) // 2]],
            conclusion_ru=_conclusion(severity, share, ground_glass, consolidation, probability),
        )


def _series(headers: list[Dataset]) -> dict[str, list[Dataset]]:
    series = defaultdict(list)
    for header in headers:
        series[str(header.get("SeriesInstanceUID", ""))].append(header)
    return series


def _series_refusals(series: list[Dataset], rules: dict) -> list[Refusal]:
    refusals = []
    if len(series) < rules["min_slices"]:
        refusals.append(Refusal("too_few_slices", f"В серии {len(series)} срезов; для анализа нужна серия "
                                                  f"не менее чем из {rules['min_slices']} срезов."))
    thickness = [float(h.SliceThickness) if h.get("SliceThickness") else None for h in series]
    if any(t is None or t > rules["max_slice_thickness_mm"] for t in thickness):
        known = [t for t in thickness if t is not None]
        found = f"{number_ru(max(known), 1)} мм" if known else "не указана"
        refusals.append(Refusal("thick_slices", f"Толщина среза {found}; для анализа нужны тонкие срезы "
                                                f"(не более {number_ru(rules['max_slice_thickness_mm'], 1)} мм)."))
    if not all(h.get("ImageOrientationPatient") and abs(_normal(h)[2]) >= 0.9 for h in series):
        refusals.append(Refusal("not_axial", "Серия не в аксиальной плоскости (ImageOrientationPatient); "
                                             "анализ возможен только для аксиальных срезов."))
    if len({(h.get("Rows"), h.get("Columns")) for h in series}) > 1:
        refusals.append(Refusal("inconsistent_size", "Срезы серии разного размера (Rows/Columns)."))
    return refusals


def hounsfield_units(ds: Dataset, out: np.ndarray | None = None) -> np.ndarray:
    """A slice in whole Hounsfield units as int16 (clipped to its range), into `out` when given: half the
    bytes of float32 on the wire (160 MB for a 300-slice CT), and integer arithmetic for the usual slope of 1."""
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    stored = pixels(ds)
    out = np.empty(stored.shape, dtype=np.int16) if out is None else out
    integral = slope == 1 and intercept.is_integer()
    if integral and stored.dtype.kind in "ui" and stored.dtype.itemsize <= 2 and stored.size:
        shift = int(intercept)
        if int(stored.min()) + shift >= -32768 and int(stored.max()) + shift <= 32767:  # nothing to clip: one pass
            return np.add(stored, shift, out=out, dtype=np.int32, casting="unsafe")
    hu = stored.astype(np.int32) + int(intercept) if integral else np.rint(stored * slope + intercept)
    out[...] = np.clip(hu, -32768, 32767)
    return out


def _normal(ds: Dataset) -> np.ndarray:
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(orientation[:3], orientation[3:])


def _position(ds: Dataset) -> np.ndarray:
    if not ds.get("ImagePositionPatient"):
        raise InputRejected("slice_positions", "У срезов серии нет положения (ImagePositionPatient).")
    return np.array([float(v) for v in ds.ImagePositionPatient])


def _key_slice_marks(prepared: ChestCTPrepared, key_slices: np.ndarray, boxes: np.ndarray) -> list[Mark]:
    """One box per lung with lesions, on its key slice (as the model found them)."""
    return [
        Mark(prepared.sop_instance_uids[int(key)], tuple(int(v) for v in box), f"Поражение, {side_ru} лёгкое")
        for (_, side_ru, _), key, box in zip(SIDES, key_slices, boxes, strict=True)
        if 0 <= key < len(prepared.sop_instance_uids)
    ]


def _ml(value: float) -> float:
    return round(float(value), 1)


def _totals(ground_glass: np.ndarray, consolidation: np.ndarray) -> list[Measurement]:
    """Both lungs together: the CT-0..CT-4 grade is of the whole lung, and a radiologist follows the total
    lesion volume between studies. Each total is rounded once, from the unrounded per-lung values."""
    return [
        Measurement("Total ground-glass volume", "Общий объём матового стекла", _ml(ground_glass.sum()), "ml"),
        Measurement("Total consolidation volume", "Общий объём консолидации", _ml(consolidation.sum()), "ml"),
        Measurement("Total lesion volume", "Общий объём поражения", _ml(ground_glass.sum() + consolidation.sum()),
                    "ml"),
    ]


def _conclusion(severity: int, share: float, ground_glass: np.ndarray, consolidation: np.ndarray,
                probability: float) -> str:
    """The draft text: where the lesions are and how much, in ml per lung and in total (split by type, as the
    radiologist describes ground glass and consolidation apart), then the share and the CT grade."""
    if severity == 0:
        finding = "Признаков поражения лёгочной ткани не выявлено (КТ-0)."
    else:
        lesions_ml = ground_glass + consolidation
        sides = ", ".join(f"в {where} лёгком {number_ru(float(ml), 0)} мл"
                          for (_, _, where), ml in zip(SIDES, lesions_ml, strict=True) if ml > 0)
        finding = (f"Признаки поражения лёгочной ткани (матовое стекло, консолидация): {sides}; "
                   f"общий объём поражения {number_ru(float(lesions_ml.sum()), 0)} мл "
                   f"(матовое стекло {number_ru(float(ground_glass.sum()), 0)} мл, "
                   f"консолидация {number_ru(float(consolidation.sum()), 0)} мл), "
                   f"{number_ru(share * 100, 0)} % объёма лёгких (КТ-{severity}).")
    return f"КТ органов грудной клетки. {finding} Вероятность патологии {number_ru(probability)}."
