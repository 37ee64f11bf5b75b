"""The chest-CT reference algorithm (not a medical device): lungs by HU thresholds, lesions inside them.

Classical image analysis with numpy alone, so it runs unchanged inside Triton's Python backend:
1. Inside the body (per row, between the first and last non-air pixel) aerated lung is HU < -600.
2. The body's midline splits right from left; each lung's envelope is its aerated region closed
   (dilated, then eroded) by `closing_mm`, which fills lesions that replaced aerated tissue. Each
   side is closed on its own, so the mediastinum is never bridged.
3. Inside the envelopes, ground glass is -700 <= HU < -300 and consolidation -300 <= HU < 60.
4. Affected share = lesions / envelope; severity on the Moscow CT-0..CT-4 scale.
5. Per lung, the key slice is the one where its lesions are largest, with their bounding box there:
   what the result's marked images show.
"""

from dataclasses import dataclass

import numpy as np

try:
    from inference.morphology import between_first_and_last, close
except ImportError:  # in a Triton model folder, where morphology.py lies beside this file
    from morphology import between_first_and_last, close

AERATED_MAX_HU = -600
GROUND_GLASS_HU = (-700, -300)
CONSOLIDATION_HU = (-300, 60)
BODY_MIN_HU = -300
SEVERITY_LIMITS = (0.25, 0.50, 0.75)


@dataclass(frozen=True)
class LungFindings:
    lung_ml: tuple[float, float]  # patient's right, left
    ground_glass_ml: tuple[float, float]
    consolidation_ml: tuple[float, float]
    key_slice: tuple[int, int] = (-1, -1)  # per lung, the slice with the most lesion; -1 without lesions
    lesion_box: tuple[tuple[int, int, int, int], ...] = ((-1, -1, -1, -1),) * 2  # rows and columns on it

    @property
    def affected_share(self) -> float:
        lesions = sum(self.ground_glass_ml) + sum(self.consolidation_ml)
        return lesions / sum(self.lung_ml) if sum(self.lung_ml) else 0.0

    @property
    def severity(self) -> int:
        """0..4 for CT-0..CT-4."""
        return severity_grade(self.affected_share)


def severity_grade(affected_share: float) -> int:
    """The Moscow COVID-19 CT scale as 0..4: CT-0 none, CT-1 < 25 %, CT-2 25-50 %, CT-3 50-75 %, CT-4."""
    if affected_share <= 0:
        return 0
    return 1 + sum(affected_share >= limit for limit in SEVERITY_LIMITS)


def analyse(hu: np.ndarray, spacing_mm: tuple[float, float, float], closing_mm: float = 30.0) -> LungFindings:
    """`hu`: a (slices, rows, columns) volume in Hounsfield units; `spacing_mm`: (z, y, x)."""
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    inside = between_first_and_last(hu > BODY_MIN_HU)
    aerated = inside & (hu < AERATED_MAX_HU)
    midline = hu.shape[2] // 2  # image left = patient's right
    sides = (np.s_[..., :midline], np.s_[..., midline:])
    radius = max(1, round(closing_mm / spacing_mm[2]))
    envelope = np.zeros_like(aerated)
    for side in sides:
        envelope[side] = close(aerated[side], radius)
    envelope &= inside
    ground_glass = envelope & (hu >= GROUND_GLASS_HU[0]) & (hu < GROUND_GLASS_HU[1])
    consolidation = envelope & (hu >= CONSOLIDATION_HU[0]) & (hu < CONSOLIDATION_HU[1])
    key_slices, boxes = zip(*(_key_slice(ground_glass | consolidation, side, offset)
                              for side, offset in zip(sides, (0, midline), strict=True)), strict=True)
    return LungFindings(
        lung_ml=tuple(float(envelope[s].sum()) * voxel_ml for s in sides),
        ground_glass_ml=tuple(float(ground_glass[s].sum()) * voxel_ml for s in sides),
        consolidation_ml=tuple(float(consolidation[s].sum()) * voxel_ml for s in sides),
        key_slice=key_slices,
        lesion_box=boxes,
    )


def _key_slice(lesion: np.ndarray, side, column_offset: int) -> tuple[int, tuple[int, int, int, int]]:
    """The slice where one lung's lesions are largest, and their box there (first row, first column,
    last row + 1, last column + 1, in the whole image's columns)."""
    lesion = lesion[side]
    per_slice = lesion.sum(axis=(1, 2))
    if not per_slice.any():
        return -1, (-1, -1, -1, -1)
    key = int(per_slice.argmax())
    rows, columns = np.nonzero(lesion[key])
    return key, (int(rows.min()), int(columns.min()) + column_offset, int(rows.max()) + 1,
                 int(columns.max()) + 1 + column_offset)
