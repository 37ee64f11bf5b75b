"""The chest-radiograph reference algorithm (not a medical device): opacities inside the lung fields.

Classical image analysis with numpy alone, so it runs unchanged inside Triton's Python backend:
1. Inside the body (per row, between the first and last bright pixel), aerated lung is darker than
   halfway between the lung and soft-tissue levels (read from the image's histogram).
2. Each lung field (split at the midline) is closed by `closing_px`, which fills what opacities
   took from it; inside the fields, pixels brighter than that halfway level are opacities.
3. Opacities are grouped into 4-connected blobs; blobs under `min_area_px` are noise.
4. Probability of pathology = the largest blob's area against a small nodule's, capped at 1.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

MAX_BOXES = 8


@dataclass(frozen=True)
class Opacities:
    probability: float
    boxes: list[tuple[int, int, int, int]]  # first row, first column, last row + 1, last column + 1


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        for step in range(1, radius + 1):
            grown |= np.roll(out, step, axis) | np.roll(out, -step, axis)
        out = grown
    return out


def _close(mask: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(mask, radius)
    closed = ~_dilate(~_dilate(padded, radius), radius)
    return closed[radius:-radius, radius:-radius]


def _blobs(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    seen = np.zeros_like(mask)
    blobs = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, blob = deque([start]), []
        while queue:
            r, c = queue.popleft()
            blob.append((r, c))
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        blobs.append(blob)
    return blobs


def analyse(image: np.ndarray, *, closing_px: int | None = None, min_area_px: int | None = None) -> Opacities:
    size = max(image.shape)
    closing_px = closing_px or max(2, size // 20)
    min_area_px = min_area_px or max(4, (size // 100) ** 2)
    background, tissue = np.percentile(image, [2, 90])
    body = image > (background + tissue) / 2 * 0.5
    columns = np.arange(image.shape[1])
    has = body.any(axis=1, keepdims=True)
    first = np.where(has, body.argmax(axis=1)[:, None], image.shape[1])
    last = np.where(has, image.shape[1] - 1 - body[:, ::-1].argmax(axis=1)[:, None], -1)
    inside = (columns >= first) & (columns <= last)
    lung_level = np.percentile(image[inside], 15)
    halfway = (lung_level + tissue) / 2
    aerated = inside & (image < halfway)
    midline = image.shape[1] // 2
    fields = np.zeros_like(aerated)
    fields[:, :midline] = _close(aerated[:, :midline], closing_px)
    fields[:, midline:] = _close(aerated[:, midline:], closing_px)
    opacity = fields & inside & (image >= halfway)
    blobs = [b for b in _blobs(opacity) if len(b) >= min_area_px]
    blobs.sort(key=len, reverse=True)
    boxes = []
    for blob in blobs[:MAX_BOXES]:
        rows, cols = zip(*blob, strict=True)
        boxes.append((min(rows), min(cols), max(rows) + 1, max(cols) + 1))
    nodule_area = np.pi * (size / 40) ** 2
    probability = min(1.0, len(blobs[0]) / nodule_area) if blobs else 0.0
    return Opacities(probability=float(probability), boxes=boxes)
