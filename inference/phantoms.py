"""Synthetic studies with known ground truth, for the reference models' tests, demos and benchmarks.

Each phantom is drawn from simple shapes (ellipses, spheres) whose areas and volumes are counted
from the very masks that are drawn, so the truth is exact, not estimated. They are images a model
can be judged on, not anatomy: no patient, and no claim of realism beyond the grey levels of each
tissue (air, soft tissue, lung, ground glass, consolidation, fibroglandular tissue).
"""

from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from inference.lung_ct import severity_grade
from medai.archive.synthetic import Patient, make_instance

# Hounsfield units of the CT phantom's tissues.
AIR_HU, SOFT_TISSUE_HU, LUNG_HU, GROUND_GLASS_HU, CONSOLIDATION_HU = -1000, 40, -850, -500, 20
CT_OFFSET = 1024  # stored value = HU + 1024 (RescaleIntercept -1024)
PATIENT = Patient()
WOMAN = Patient(patient_id="SYN-0002", name="Ivanova^Maria", birth_date="19750312", sex="F")


def ct_severity(affected_share: float) -> str:
    """The Moscow COVID-19 CT scale as its label, CT-0..CT-4."""
    return f"CT-{severity_grade(affected_share)}"


def _ellipse(shape: tuple[int, int], center: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return ((rows - center[0]) / radii[0]) ** 2 + ((cols - center[1]) / radii[1]) ** 2 <= 1.0


@dataclass(frozen=True)
class Finding:
    """A lesion's bounding box in pixels (first row, first column, last row + 1, last column + 1)."""

    box: tuple[int, int, int, int]
    side: str  # "left" or "right" of the patient


@dataclass(frozen=True)
class ChestRadiographTruth:
    pathology: bool
    findings: list[Finding] = field(default_factory=list)


def chest_radiograph(
    *, lesions: int = 0, size: int = 512, seed: int = 0, modality: str = "DX", view: str = "PA",
    patient: Patient = PATIENT,
) -> tuple[Dataset, ChestRadiographTruth]:
    """A frontal chest radiograph: body, two lung fields, and `lesions` round opacities inside them."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 150.0)
    image[_ellipse(image.shape, (size * 0.5, size * 0.5), (size * 0.46, size * 0.42))] = 2600.0
    lungs = {  # the patient's right lung is on the image's left in a PA view
        "right": _ellipse(image.shape, (size * 0.47, size * 0.31), (size * 0.30, size * 0.14)),
        "left": _ellipse(image.shape, (size * 0.47, size * 0.69), (size * 0.30, size * 0.14)),
    }
    for mask in lungs.values():
        image[mask] = 900.0
    findings = []
    for _ in range(lesions):
        side = str(rng.choice(["right", "left"]))
        rows, cols = np.nonzero(lungs[side])
        radius = int(rng.integers(size // 40, size // 20))
        while True:  # a centre whose whole disc lies inside the lung
            pick = int(rng.integers(len(rows)))
            center = (int(rows[pick]), int(cols[pick]))
            disc = _ellipse(image.shape, center, (radius, radius))
            if not (disc & ~lungs[side]).any():
                break
        image[disc] += 1100.0
        findings.append(Finding((center[0] - radius, center[1] - radius, center[0] + radius + 1,
                                 center[1] + radius + 1), side))
    image += rng.normal(0, 25, image.shape)
    ds = make_instance(modality=modality, view_position=view, pixels=image.round(), patient=patient, seed=seed)
    return ds, ChestRadiographTruth(pathology=bool(findings), findings=findings)


@dataclass(frozen=True)
class ChestCTTruth:
    voxel_ml: float
    lung_ml: dict[str, float]
    ground_glass_ml: dict[str, float]
    consolidation_ml: dict[str, float]

    def affected_share(self, side: str | None = None) -> float:
        sides = [side] if side else list(self.lung_ml)
        lesions = sum(self.ground_glass_ml[s] + self.consolidation_ml[s] for s in sides)
        return lesions / sum(self.lung_ml[s] for s in sides)

    @property
    def severity(self) -> str:
        return ct_severity(self.affected_share())


def chest_ct(
    *, affected_share: float = 0.0, slices: int = 40, size: int = 128, spacing_mm: float = 2.5,
    consolidation_fraction: float = 0.3, noise_hu: float = 10.0, seed: int = 0,
    patient: Patient = PATIENT,
) -> tuple[list[Dataset], ChestCTTruth]:
    """A chest CT series: body, two lungs, and spherical lesions (ground glass or consolidation) placed
    inside the lungs until `affected_share` of the lung volume is reached."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:slices, :size, :size]
    body = ((y - size / 2) / (size * 0.42)) ** 2 + ((x - size / 2) / (size * 0.46)) ** 2 <= 1
    volume = np.where(body, SOFT_TISSUE_HU, AIR_HU).astype(np.float64) * np.ones((slices, 1, 1))
    lungs = {
        side: ((z - slices / 2) / (slices * 0.45)) ** 2 + ((y - size * 0.48) / (size * 0.28)) ** 2
        + ((x - size * center) / (size * 0.15)) ** 2 <= 1
        for side, center in (("right", 0.30), ("left", 0.70))
    }
    for mask in lungs.values():
        volume[mask] = LUNG_HU
    ggo = {side: np.zeros_like(mask) for side, mask in lungs.items()}
    consolidation = {side: np.zeros_like(mask) for side, mask in lungs.items()}
    total_lung = sum(int(m.sum()) for m in lungs.values())
    while sum(int((ggo[s] | consolidation[s]).sum()) for s in lungs) < affected_share * total_lung:
        side = str(rng.choice(list(lungs)))
        free = lungs[side] & ~ggo[side] & ~consolidation[side]
        points = np.argwhere(free)
        if not len(points):
            continue
        cz, cy, cx = points[rng.integers(len(points))]
        radius = rng.uniform(2, 6)
        sphere = ((z - cz) / (radius * 0.5)) ** 2 + ((y - cy) / radius) ** 2 + ((x - cx) / radius) ** 2 <= 1
        kind = consolidation if rng.random() < consolidation_fraction else ggo
        kind[side] |= sphere & free
    for side in lungs:
        volume[ggo[side]] = GROUND_GLASS_HU
        volume[consolidation[side]] = CONSOLIDATION_HU
    if noise_hu:
        volume += rng.normal(0, noise_hu, volume.shape)
    voxel_ml = spacing_mm**3 / 1000.0
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = [
        make_instance(modality="CT", study_uid=study_uid, series_uid=series_uid, instance_number=i + 1,
                      pixels=(volume[i] + CT_OFFSET).round(), slice_thickness=spacing_mm, pixel_spacing=spacing_mm,
                      patient=patient, seed=seed)
        for i in range(slices)
    ]
    truth = ChestCTTruth(
        voxel_ml=voxel_ml,
        lung_ml={side: float(mask.sum()) * voxel_ml for side, mask in lungs.items()},
        ground_glass_ml={side: float(mask.sum()) * voxel_ml for side, mask in ggo.items()},
        consolidation_ml={side: float(mask.sum()) * voxel_ml for side, mask in consolidation.items()},
    )
    return datasets, truth


# Breast density categories (ACR BI-RADS 5th ed. a-d) by the share of fibroglandular tissue drawn.
DENSITY_SHARE = {"A": 0.10, "B": 0.35, "C": 0.60, "D": 0.85}


@dataclass(frozen=True)
class MammographyTruth:
    density: str
    masses: dict[tuple[str, str], list[Finding]]  # (laterality, view) -> masses on that image

    @property
    def birads(self) -> int:
        """1 (negative) without a mass, 4 (suspicious) with one: the reference model's two outcomes."""
        return 4 if any(self.masses.values()) else 1


def mammography_study(
    *, density: str = "B", masses: int = 0, size: int = 256, seed: int = 0, patient: Patient = WOMAN,
) -> tuple[list[Dataset], MammographyTruth]:
    """The four standard views (CC and MLO of each breast), with `masses` masses in one breast,
    seen on both of its views."""
    rng = np.random.default_rng(seed)
    study_uid = generate_uid()
    mass_side = str(rng.choice(["L", "R"]))
    found: dict[tuple[str, str], list[Finding]] = {}
    datasets = []
    for laterality in ("R", "L"):
        series_uid = generate_uid()
        for number, view in enumerate(("CC", "MLO"), start=1):
            image = np.full((size, size), 100.0)
            chest_wall = 0 if laterality == "L" else size - 1  # the breast points away from the chest wall
            breast = _ellipse(image.shape, (size / 2, chest_wall), (size * 0.45, size * 0.8))
            image[breast] = 1200.0
            tissue = breast & (rng.random(image.shape) < DENSITY_SHARE[density])
            image[tissue] = 2000.0
            boxes = []
            if laterality == mass_side:
                for _ in range(masses):
                    rows, cols = np.nonzero(_ellipse(image.shape, (size / 2, chest_wall), (size * 0.3, size * 0.5)))
                    pick = int(rng.integers(len(rows)))
                    radius = size // 25
                    center = (int(rows[pick]), int(cols[pick]))
                    image[_ellipse(image.shape, center, (radius, radius)) & breast] = 3400.0
                    boxes.append(Finding((center[0] - radius, center[1] - radius, center[0] + radius + 1,
                                          center[1] + radius + 1), "left" if laterality == "L" else "right"))
            found[(laterality, view)] = boxes
            image += rng.normal(0, 20, image.shape)
            datasets.append(make_instance(modality="MG", study_uid=study_uid, series_uid=series_uid,
                                          instance_number=number, view_position=view, laterality=laterality,
                                          pixels=image.round(), patient=patient, seed=seed))
    return datasets, MammographyTruth(density=density, masses=found)
