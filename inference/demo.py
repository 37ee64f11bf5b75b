"""The reference AI services of `medai up` and the tests: one per reference model in Triton.

Each is labelled a reference model, not a medical device. They are enabled in every region; the chest
radiograph service is at the autonomous stage, with its autonomous threshold fixed on a validation
set of phantoms (sensitivity 1.0), and closes normals in the organizations given.
"""

import numpy as np

from inference.calibration import threshold_for_full_sensitivity
from inference.records import AIService, StudyKind
from tenants.models import MedicalOrganization, Region

VENDOR = "MedAI Platform (reference model, not a medical device)"
REFERENCE_SERVICES = [
    {
        "code": "ref-chest-xray", "name": "Chest radiograph: opacities", "version": "1.0",
        "study_kind": StudyKind.CHEST_XRAY, "profile": "chest_xray", "triton_model": "cxr_opacity",
        "modalities": ["CR", "DX"], "body_parts": ["CHEST"], "views": ["PA", "AP"],
        "pathology_threshold": 0.5, "stage": AIService.Stage.AUTONOMOUS,
        "outputs": ["probability of pathology", "opacity boxes"],
    },
    {
        "code": "ref-chest-ct", "name": "Chest CT: lung lesions, CT-0..CT-4", "version": "1.0",
        "study_kind": StudyKind.CHEST_CT, "profile": "chest_ct", "triton_model": "ct_lung_lesions",
        "modalities": ["CT"], "body_parts": ["CHEST"], "pathology_threshold": 0.5,
        "stage": AIService.Stage.CLINICAL,
        "outputs": ["lesion volumes per lung", "affected share", "severity CT-0..CT-4"],
    },
    {
        "code": "ref-mammography", "name": "Mammography: density and masses", "version": "1.0",
        "study_kind": StudyKind.MAMMOGRAPHY, "profile": "mammography", "triton_model": "mg_density_masses",
        "modalities": ["MG"], "body_parts": ["BREAST"], "views": ["CC", "MLO"], "pathology_threshold": 0.5,
        "stage": AIService.Stage.CLINICAL, "outputs": ["density ACR A-D", "masses", "BI-RADS-like category"],
    },
]


def chest_xray_validation_scores(count: int = 16) -> tuple[list[float], list[bool]]:
    """The reference chest-radiograph algorithm's scores on phantoms with and without lesions."""
    from inference.chest_xray import analyse
    from inference.phantoms import chest_radiograph

    scores, labels = [], []
    for seed in range(count):
        for lesions in (0, 1 + seed % 2):
            dataset, truth = chest_radiograph(lesions=lesions, size=256, seed=1000 + seed)
            scores.append(analyse(dataset.pixel_array.astype(np.float32)).probability)
            labels.append(truth.pathology)
    return scores, labels


def reference_services_load(*, autonomous_organizations: list[MedicalOrganization] = ()) -> list[AIService]:
    """Create the reference services if missing (a restart keeps their settings), enabled in every region."""
    services = []
    for spec in REFERENCE_SERVICES:
        service = AIService.objects.filter(code=spec["code"]).first()
        if service is None:
            service = AIService.objects.create(vendor=VENDOR, **spec)
            if service.study_kind == StudyKind.CHEST_XRAY:
                service.autonomous_threshold = threshold_for_full_sensitivity(*chest_xray_validation_scores())
                service.save(update_fields=["autonomous_threshold"])
        service.enabled_regions.add(*Region.objects.all())
        if service.stage == AIService.Stage.AUTONOMOUS:
            service.autonomous_organizations.add(*autonomous_organizations)
        services.append(service)
    return services


def demo_services_load() -> list[AIService]:
    """`medai up`: the reference services, closing normals autonomously in the first demo polyclinic."""
    from tenants.demo import ORGANIZATIONS

    first_polyclinic = MedicalOrganization.objects.filter(oms_code=ORGANIZATIONS[0][1])
    return reference_services_load(autonomous_organizations=list(first_polyclinic))
