"""Mammography (ММГ) on the `mg_density_masses` model: density, masses, a BI-RADS-like category.

Audit: MG, breast (or BodyPartExamined empty), and the standard views: CC and MLO of each side
(laterality from ImageLaterality, else Laterality). The first instance of each view is analysed, one
request per view (Triton's dynamic batcher joins views of one size).
Density: ACR A-D from the median fibroglandular share over the views (as mammography.study_density).
Category: the highest BI-RADS of the views. Probability of pathology: 0 without a mass; with one,
0.5 + 0.5 x the largest mass's side against a tenth of the image's side, capped at 1 (a larger mass is
more likely what it looks like). Not urgent: BI-RADS 4 calls for a biopsy, not for an emergency.
"""

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from inference.mammography import DENSITY_CATEGORIES
from inference.outcome import Mark, Measurement, Outcome
from inference.profiles.base import (
    Prepared,
    Profile,
    Refusal,
    body_part_ok,
    body_part_refusal,
    downsampled,
    image,
    in_threads,
    modality_refusal,
    number_ru,
    scaled,
    text,
)
from inference.triton import OutputSpec

SIDES_RU = {"R": "правой", "L": "левой"}


@dataclass(frozen=True)
class MammographyPrepared(Prepared):
    views: list[tuple[str, str]]  # (laterality, view) of each image, in the order of sop_instance_uids
    images: list[np.ndarray]  # as the model reads them: at most `max_side` pixels along the longer side
    scales: list[int]  # stored image pixels per model pixel, of each image


class Mammography(Profile):
    name = "mammography"
    model = "mg_density_masses"
    OUTPUTS = {
        "FIBROGLANDULAR_SHARE": OutputSpec(np.float32, (1, 1)), "BIRADS": OutputSpec(np.int32, (1, 1)),
        "MASSES": OutputSpec(np.int32, (1, 8, 4)),
    }
    DEFAULT_RULES = {"modalities": ["MG"], "body_parts": ["BREAST"], "views": ["CC", "MLO"], "max_side": 1024}

    def audit(self, headers: list[Dataset], rules: dict | None = None) -> list[Refusal]:
        rules = self.rules(rules)
        images = [h for h in headers if text(h, "Modality") in rules["modalities"]]
        if not images:
            return [modality_refusal(headers, rules["modalities"], "маммография")]
        breast = [h for h in images if body_part_ok(h, rules["body_parts"])]
        if not breast:
            return [body_part_refusal(images, rules["body_parts"], "молочных желёз")]
        found = _views(breast, rules)
        missing = [f"{view} {SIDES_RU[side]}" for side in SIDES_RU for view in rules["views"]
                   if (side, view) not in found]
        if missing:
            return [Refusal("missing_views", f"Нет стандартных проекций: {', '.join(missing)} молочной железы; "
                                             f"нужны {' и '.join(rules['views'])} каждой стороны.")]
        return []

    def select(self, headers: list[Dataset], rules: dict | None = None) -> list[str]:
        rules = self.rules(rules)
        breast = [h for h in headers if text(h, "Modality") in rules["modalities"]
                  and body_part_ok(h, rules["body_parts"])]
        return [str(h.SOPInstanceUID) for h in _views(breast, rules).values()]

    def prepare(self, datasets: list[Dataset], rules: dict | None = None) -> MammographyPrepared:
        max_side = self.rules(rules)["max_side"]
        pictures = in_threads(lambda ds: downsampled(image(ds), max_side), datasets)
        return MammographyPrepared([str(ds.SOPInstanceUID) for ds in datasets],
                                   [(_laterality(ds), text(ds, "ViewPosition")) for ds in datasets],
                                   [picture for picture, _ in pictures], [scale for _, scale in pictures])

    def requests(self, prepared: MammographyPrepared) -> list[dict[str, np.ndarray]]:
        return [{"IMAGE": view[None]} for view in prepared.images]

    def interpret(self, prepared: MammographyPrepared, answers: list[dict[str, np.ndarray]], *,
                  pathology_threshold: float) -> Outcome:
        shares = [float(a["FIBROGLANDULAR_SHARE"][0, 0]) for a in answers]
        birads = max(int(a["BIRADS"][0, 0]) for a in answers)
        density = DENSITY_CATEGORIES[min(3, int(float(np.median(shares)) / 0.25))]
        marks, largest, mass_sides = [], 0.0, {}
        for uid, (side, view), picture, scale, answer in zip(prepared.sop_instance_uids, prepared.views,
                                                             prepared.images, prepared.scales, answers, strict=True):
            boxes = [tuple(int(v) for v in box) for box in answer["MASSES"][0] if box[0] >= 0]
            marks += [Mark(uid, scaled(box, scale), f"Образование {i}") for i, box in enumerate(boxes, start=1)]
            for box in boxes:
                largest = max(largest, max(box[2] - box[0], box[3] - box[1]) / (max(picture.shape) / 10))
                mass_sides.setdefault(side, []).append(view)
        probability = 0.5 + 0.5 * min(1.0, largest) if marks else 0.0
        measurements = [
            Measurement(f"Fibroglandular tissue share, {side} {view}", f"Доля железистой ткани, {side} {view}",
                        round(share * 100, 1), "%")
            for (side, view), share in zip(prepared.views, shares, strict=True)
        ]
        key_images = list(dict.fromkeys(m.sop_instance_uid for m in marks)) or prepared.sop_instance_uids[:1]
        return Outcome(
            probability=probability, pathology=probability >= pathology_threshold, category=f"BI-RADS {birads}",
            measurements=measurements, marks=marks, key_images=key_images,
            conclusion_ru=_conclusion(density, mass_sides, birads, probability),
        )


def _laterality(ds: Dataset) -> str:
    return text(ds, "ImageLaterality") or text(ds, "Laterality")


def _views(headers: list[Dataset], rules: dict) -> dict[tuple[str, str], Dataset]:
    """The first instance of each standard (laterality, view)."""
    found: dict[tuple[str, str], Dataset] = {}
    for header in headers:
        key = (_laterality(header), text(header, "ViewPosition"))
        if key[0] in SIDES_RU and key[1] in rules["views"]:
            found.setdefault(key, header)
    return found


def _conclusion(density: str, mass_sides: dict[str, list[str]], birads: int, probability: float) -> str:
    if mass_sides:
        where = "; ".join(f"в {SIDES_RU[side]} молочной железе (проекции {', '.join(dict.fromkeys(views))})"
                          for side, views in mass_sides.items())
        finding = f"Образование {where}."
    else:
        finding = "Образований не выявлено."
    return (f"Маммография. Плотность ACR {density}. {finding} BI-RADS {birads}. "
            f"Вероятность патологии {number_ru(probability)}.")
