"""Demo studies for `medai up`: phantoms sent the way a clinic's PACS sends them, so that a first look at the
worklist, the AI results, billing and the dashboards finds something there.

Each demo uploader (a PACS credential of a demo polyclinic) stores its studies over STOW-RS with its own
token and completes them through the API; the worker then routes and analyses them like any study. They
are sent once, into an empty archive: a restart sends nothing again. The patients are invented, and
every image is a phantom with a known truth (`inference.phantoms`), not a person's.
"""

from collections.abc import Callable

import requests
from pydicom import Dataset

from inference.phantoms import chest_ct, chest_radiograph, mammography_study
from medai.archive.models import Study
from medai.archive.synthetic import Patient, to_bytes
from medai.dicomweb import multipart_writer
from tenants.scope import dangerously_unscoped

DICOM = "application/dicom"
# Invented patients, a different one per study: (name, sex, birth date)
PATIENTS = [("Petrov^Sergei", "M", "19610314"), ("Smirnova^Olga", "F", "19750822"),
            ("Kuznetsov^Andrei", "M", "19580105"), ("Volkova^Irina", "F", "19690411"),
            ("Sokolov^Dmitri", "M", "19820927"), ("Lebedeva^Anna", "F", "19711230"),
            ("Kozlov^Pavel", "M", "19660618"), ("Novikova^Elena", "F", "19790203")]


def demo_study_makers() -> list[Callable[[Patient, int], list[Dataset]]]:
    """What one polyclinic sends: chest radiographs, normal and not, a screening mammography and a chest CT."""
    return [
        lambda patient, seed: [chest_radiograph(size=512, seed=seed, patient=patient)[0]],
        lambda patient, seed: [chest_radiograph(size=512, seed=seed, patient=patient)[0]],
        lambda patient, seed: [chest_radiograph(lesions=2, size=512, seed=seed, patient=patient)[0]],
        lambda patient, seed: mammography_study(size=256, seed=seed, patient=patient)[0],
        lambda patient, seed: chest_ct(affected_share=0.3, slices=40, size=128, seed=seed, patient=patient)[0],
    ]


def demo_studies_send(credentials: dict, *, timeout: float = 60) -> int:
    """Store and complete the demo studies of every demo uploader; returns how many were sent."""
    uploaders = [user for user in credentials["users"] if user["role"] == "uploader"]
    sent = 0
    with requests.Session() as session:
        for clinic, uploader in enumerate(uploaders):
            session.headers["Authorization"] = f"Bearer {uploader['token']}"
            for number, make in enumerate(demo_study_makers()):
                seed = 100 * clinic + number
                name, sex, birth_date = PATIENTS[seed % len(PATIENTS)]
                patient = Patient(patient_id=f"DEMO-{seed:04d}", name=name, sex=sex, birth_date=birth_date,
                                  oms_policy=f"{7700000000000000 + seed:016d}")
                datasets = make(patient, seed)
                _store(session, credentials["dicomweb_url"], datasets, timeout=timeout)
                study_uid = datasets[0].StudyInstanceUID
                session.post(f"{credentials['base_url']}/api/v1/studies/{study_uid}/complete",
                             timeout=timeout).raise_for_status()
                sent += 1
    return sent


def _store(session: requests.Session, dicomweb_url: str, datasets: list[Dataset], *, timeout: float) -> None:
    files = [to_bytes(ds) for ds in datasets]
    boundary = multipart_writer.new_boundary()
    body = b"".join(multipart_writer.stream(boundary, [multipart_writer.OutgoingPart(DICOM, len(f), [f])
                                                       for f in files]))
    response = session.post(f"{dicomweb_url}/studies", data=body, timeout=timeout,
                            headers={"Content-Type": multipart_writer.content_type(DICOM, boundary)})
    response.raise_for_status()


def archive_is_empty() -> bool:
    """Whether no clinic has stored anything yet: a new home, or one whose studies were all removed."""
    with dangerously_unscoped():
        return not Study.objects.exists()

