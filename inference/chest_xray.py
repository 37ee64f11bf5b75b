"""The chest-radiograph reference algorithm (not a medical device): opacities inside the lung fields.

Classical image analysis with numpy alone, so it runs unchanged inside Triton's Python backend:
1. Inside the body (per row, between the first and last bright pixel), aerated lung is darker than
   halfway between the lung and soft-tissue levels (read from the image's histogram).
2. Each lung field (split at the midline) is closed by `closing_px`, which fills what opacities
   took from it; inside the fields, pixels brighter than that halfway level are opacities.
3. Opacities are grouped into 4-connected blobs; blobs under `min_area_px` are noise.
4. Probability of pathology = the largest blob's area against a small nodule's, capped at 1.
"""

from dataclasses import dataclass

import numpy as np

try:
    from inference.morphology import between_first_and_last, blobs, bounding_box, close
except ImportError:  # in a Triton model folder, where morphology.py lies beside this file
    from morphology import between_first_and_last, blobs, bounding_box, close

MAX_BOXES = 8


@dataclass(frozen=True)
class Opacities:
    probability: float
    boxes: list[tuple[int, int, int, int]]  # first row, first column, last row + 1, last column + 1


def analyse(image: np.ndarray, *, closing_px: int | None = None, min_area_px: int | None = None) -> Opacities:
    size = max(image.shape)
    closing_px = closing_px or max(2, size // 20)
    min_area_px = min_area_px or max(4, (size // 100) ** 2)
    background, tissue = np.percentile(image, [2, 90])
    inside = between_first_and_last(image > (background + tissue) / 2 * 0.5)
    lung_level = np.percentile(image[inside], 15)
    halfway = (lung_level + tissue) / 2
    aerated = inside & (image < halfway)
    midline = image.shape[1] // 2
    fields = np.zeros_like(aerated)
    fields[:, :midline] = close(aerated[:, :midline], closing_px)
    fields[:, midline:] = close(aerated[:, midline:], closing_px)
    opacity = fields & inside & (image >= halfway)
    found = [b for b in blobs(opacity) if len(b) >= min_area_px]
    found.sort(key=len, reverse=True)
    boxes = []
    for blob in found[:MAX_BOXES]:
        boxes.append(bounding_box(blob))
    nodule_area = np.pi * (size / 40) ** 2
    probability = min(1.0, len(found[0]) / nodule_area) if found else 0.0
    return Opacities(probability=float(probability), boxes=boxes)
