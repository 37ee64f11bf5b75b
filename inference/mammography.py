"""The mammography reference algorithm (not a medical device): breast density and masses.

Classical image analysis with numpy alone, so it runs unchanged inside Triton's Python backend:
1. The breast is what is brighter than halfway between the background and the breast's fat.
2. Fibroglandular tissue is brighter than halfway between fat and dense tissue; its share of the
   breast gives the density category by the ACR quartiles (a < 25 %, b < 50 %, c < 75 %, d).
3. Masses are brighter than halfway between dense tissue and the brightest 0.1 %, grouped into
   blobs of at least `min_area_px`; a mass makes the image BI-RADS 4, none BI-RADS 1.
"""

from dataclasses import dataclass

import numpy as np

try:
    from inference.morphology import blobs, bounding_box
except ImportError:  # in a Triton model folder, where morphology.py lies beside this file
    from morphology import blobs, bounding_box

DENSITY_CATEGORIES = ("A", "B", "C", "D")
MAX_MASSES = 8


@dataclass(frozen=True)
class MammogramFindings:
    density: str
    fibroglandular_share: float
    masses: list[tuple[int, int, int, int]]

    @property
    def birads(self) -> int:
        return 4 if self.masses else 1


def analyse(image: np.ndarray, *, min_area_px: int | None = None) -> MammogramFindings:
    min_area_px = min_area_px or max(6, (max(image.shape) // 50) ** 2)
    background = np.percentile(image, 2)
    fat = np.percentile(image[image > background + (image.max() - background) * 0.2], 5)
    breast = image > (background + fat) / 2
    dense_level = np.percentile(image[breast], 90)
    tissue = breast & (image > (fat + dense_level) / 2)
    share = float(tissue.sum() / max(breast.sum(), 1))
    density = DENSITY_CATEGORIES[min(3, int(share / 0.25))]
    brightest = np.percentile(image[breast], 99.9)
    masses_mask = breast & (image > (dense_level + brightest) / 2)
    if brightest < dense_level * 1.3:  # nothing stands out of the dense tissue
        masses_mask[:] = False
    found = sorted((b for b in blobs(masses_mask) if len(b) >= min_area_px), key=len, reverse=True)
    return MammogramFindings(density=density, fibroglandular_share=share,
                             masses=[bounding_box(b) for b in found[:MAX_MASSES]])


def study_density(findings: list[MammogramFindings]) -> str:
    """One density for the study, from the median share over its views (one view can mislead)."""
    share = float(np.median([f.fibroglandular_share for f in findings]))
    return DENSITY_CATEGORIES[min(3, int(share / 0.25))]
