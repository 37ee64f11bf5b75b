"""Technical testing before admission: the operator stores a labelled reference dataset, uploads its labels
as CSV, the service (on the real Triton) analyses every study, and the report's metrics equal
scikit-learn's on the same scores, with the ROC curve as PNG. Nothing of it is delivered or billed."""

import io

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from billing.models import BillableService
from inference.phantoms import chest_radiograph
from inference.records import Analysis
from medai.accounts.models import Role
from medai.archive.services import study_complete
from tests.inference.conftest import wait_for

pytestmark = pytest.mark.timeout(240)


def labels_file(rows: list[tuple[str, int]]) -> io.BytesIO:
    text = "study_instance_uid;label\n" + "".join(f"{uid};{label}\n" for uid, label in rows)
    upload = io.BytesIO(text.encode("utf-8-sig"))
    upload.name = "labels.csv"
    return upload


def test_a_labelled_dataset_gets_a_report_with_metrics_and_roc(
    tenant_factory, reference_services, archived_study, analysis_worker, api_client_for
):
    lab, _ = tenant_factory()  # the operator's testing organization: no service enabled for it
    service = reference_services()["ref-chest-xray"]
    service.enabled_regions.clear()
    rows = []
    for seed in range(16):
        dataset, truth = chest_radiograph(lesions=seed % 2 * (1 + seed % 3), size=192, seed=100 + seed)
        study = archived_study(lab, [dataset])
        study_complete(study=study)
        rows.append((study.study_instance_uid, int(truth.pathology)))
    admin = api_client_for(Role.PLATFORM_ADMIN)

    refused = admin.post("/api/v1/technical-tests", {"service": service.code, "organization": lab.oms_code,
                         "name": "x", "labels": labels_file([*rows, ("1.2.3.404", 1)])}, format="multipart")
    assert refused.status_code == 400 and "1.2.3.404" in refused.json()["labels"]
    assert api_client_for(Role.ORG_ADMIN, organization=lab).post("/api/v1/technical-tests", {}).status_code == 403

    started = admin.post("/api/v1/technical-tests", {"service": service.code, "organization": lab.oms_code,
                         "name": "Фантомы ОГК, 16 исследований", "labels": labels_file(rows)}, format="multipart")
    assert started.status_code == 201, started.json()
    url = f"/api/v1/technical-tests/{started.json()['id']}"
    report = wait_for(lambda: (body := admin.get(url).json())["status"] == "finished" and body, timeout=150)["report"]

    truth = dict(rows)
    analyses = Analysis.objects.filter(service=service, study__organization=lab)
    scored = [(truth[a.study.study_instance_uid], a.probability, a.pathology) for a in analyses]
    labels, scores, decisions = (np.array(column) for column in zip(*scored, strict=True))
    assert report["analysed"] == report["studies"] == 16 and report["not_analysed"] == []
    assert report["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert report["auroc_ci95"][0] <= report["auroc"] <= report["auroc_ci95"][1]
    tn, fp, fn, tp = confusion_matrix(labels, decisions.astype(int)).ravel()
    assert (report["tp"], report["fp"], report["tn"], report["fn"]) == (tp, fp, tn, fn)
    assert report["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert report["auroc"] >= 0.81  # the reference model is admitted on its own phantoms
    png = admin.get(f"{url}/roc.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert all(a.shadow for a in analyses)
    assert not BillableService.objects.filter(study__organization=lab).exists()
