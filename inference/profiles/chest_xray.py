"""Chest radiograph / fluorography (РГ/ФЛГ ОГК) on the `cxr_opacity` model.

Audit: CR/DX, chest (or BodyPartExamined empty), a frontal view (PA/AP). An image without ViewPosition
is refused: analysing the wrong projection is a critical defect, and an unknown one cannot be ruled
out. Of several frontal images the first PA, else the first AP, is analysed.
Probability of pathology: the model's own. Boxes lie on the analysed image; a box whose centre is
in the image's left half is in the patient's right lung (PA and AP are displayed the same way)."""

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from inference.outcome import Mark, Measurement, Outcome
from inference.profiles.base import (
    Prepared,
    Profile,
    Refusal,
    body_part_ok,
    body_part_refusal,
    downsampled,
    image,
    modality_refusal,
    number_ru,
    scaled,
    text,
)
from inference.triton import OutputSpec


@dataclass(frozen=True)
class ChestXrayPrepared(Prepared):
    image: np.ndarray  # as the model reads it: at most `max_side` pixels along its longer side
    scale: int = 1  # stored image pixels per model pixel


class ChestXray(Profile):
    name = "chest_xray"
    model = "cxr_opacity"
    OUTPUTS = {"PROBABILITY": OutputSpec(np.float32, (1, 1)), "BOXES": OutputSpec(np.int32, (1, 8, 4))}
    DEFAULT_RULES = {"modalities": ["CR", "DX"], "body_parts": ["CHEST"], "views": ["PA", "AP"], "max_side": 1024}

    def audit(self, headers: list[Dataset], rules: dict | None = None) -> list[Refusal]:
        rules = self.rules(rules)
        images = [h for h in headers if text(h, "Modality") in rules["modalities"]]
        if not images:
            return [modality_refusal(headers, rules["modalities"], "рентгенография")]
        chest = [h for h in images if body_part_ok(h, rules["body_parts"])]
        if not chest:
            return [body_part_refusal(images, rules["body_parts"], "органов грудной клетки")]
        if not self.select(headers, rules):
            views = ", ".join(sorted({text(h, "ViewPosition") or "не указана" for h in chest}))
            return [Refusal("not_frontal", f"Рентгенограмма не во фронтальной проекции (ViewPosition {views}); "
                                           f"анализ возможен только для {'/'.join(rules['views'])}.")]
        return []

    def select(self, headers: list[Dataset], rules: dict | None = None) -> list[str]:
        rules = self.rules(rules)
        frontal = [h for h in headers if text(h, "Modality") in rules["modalities"]
                   and body_part_ok(h, rules["body_parts"]) and text(h, "ViewPosition") in rules["views"]]
        frontal.sort(key=lambda h: rules["views"].index(text(h, "ViewPosition")))
        return [str(frontal[0].SOPInstanceUID)] if frontal else []

    def prepare(self, datasets: list[Dataset], rules: dict | None = None) -> ChestXrayPrepared:
        [ds] = datasets
        picture, scale = downsampled(image(ds), self.rules(rules)["max_side"])
        return ChestXrayPrepared([str(ds.SOPInstanceUID)], picture, scale)

    def requests(self, prepared: ChestXrayPrepared) -> list[dict[str, np.ndarray]]:
        return [{"IMAGE": prepared.image[None]}]

    def interpret(self, prepared: ChestXrayPrepared, answers: list[dict[str, np.ndarray]], *,
                  pathology_threshold: float) -> Outcome:
        [answer] = answers
        probability = float(answer["PROBABILITY"][0, 0])
        boxes = [tuple(int(v) for v in box) for box in answer["BOXES"][0] if box[0] >= 0]
        uid = prepared.sop_instance_uids[0]
        marks = [Mark(uid, scaled(box, prepared.scale), f"Затемнение {i}") for i, box in enumerate(boxes, start=1)]
        midline = prepared.image.shape[1] / 2
        right = sum((box[1] + box[3]) / 2 < midline for box in boxes)
        pathology = probability >= pathology_threshold
        return Outcome(
            probability=probability, pathology=pathology, marks=marks, key_images=[uid],
            measurements=[Measurement("Number of opacities", "Число участков затемнения", len(boxes), "1")],
            conclusion_ru=_conclusion(pathology, right, len(boxes) - right, probability),
        )


def _conclusion(pathology: bool, right: int, left: int, probability: float) -> str:
    found = ", ".join(f"в {side} лёгком ({count})" for side, count in (("правом", right), ("левом", left)) if count)
    if pathology:
        finding = f"Выявлены участки затемнения {found}." if found else "Выявлены признаки патологии."
    else:
        finding = "Признаков патологии лёгочных полей не выявлено."
        if found:
            finding += f" Отмечены участки затемнения ниже порога патологии: {found}."
    return f"Рентгенография органов грудной клетки. {finding} Вероятность патологии {number_ru(probability)}."
