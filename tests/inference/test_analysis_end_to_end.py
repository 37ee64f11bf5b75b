"""On the live stack: a clinic STOWs a chest radiograph, a chest CT and a mammogram, completes them,
and gets back an SR and a marked SC series in each study, readable over QIDO and WADO, the same result
as JSON, and a worklist in the order of the probabilities, with the normal closed by AI."""

import hashlib
import hmac
import io
import json

import pytest
import requests
from pydicom import dcmread

from inference.phantoms import chest_ct, chest_radiograph, mammography_study
from inference.records import Analysis
from medai.archive.synthetic import to_bytes
from tests.dicomweb.stow_client import multipart, stow
from tests.inference.conftest import wait_for

pytestmark = pytest.mark.timeout(240)


def send_and_complete(base_url: str, token: str, datasets) -> str:
    assert stow(base_url, token, multipart([to_bytes(ds) for ds in datasets])).status_code == 200
    study_uid = str(datasets[0].StudyInstanceUID)
    response = requests.post(f"{base_url}/api/v1/studies/{study_uid}/complete",
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200
    return study_uid


def results_when_done(base_url: str, token: str, study_uid: str) -> dict:
    def done():
        body = requests.get(f"{base_url}/api/v1/studies/{study_uid}/results",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        finals = {"succeeded", "failed", "not_analysable", "not_routed"}
        analyses = body.get("analyses", [])
        ready = analyses and all(a["status"] in finals and a["sr"] for a in analyses)
        return body if ready else None

    return wait_for(done, timeout=120)


def wado_instance(url: str, token: str):
    response = requests.get(url, headers={"Authorization": f"Bearer {token}",
                                          "Accept": 'multipart/related; type="application/dicom"'}, timeout=30)
    assert response.status_code == 200
    body = response.content
    start = body.index(b"\r\n\r\n") + 4
    end = body.rindex(b"\r\n--")
    return dcmread(io.BytesIO(body[start:end]))


def qido_series(base_url: str, token: str, study_uid: str) -> dict[str, str]:
    response = requests.get(f"{base_url}/dicomweb/studies/{study_uid}/series",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return {item["0020000E"]["Value"][0]: item["00080060"]["Value"][0] for item in response.json()}


def test_results_come_back_as_dicom_and_sort_the_worklist(
    live_platform, tenant_factory, api_client_for, reference_services, analysis_worker
):
    from medai.accounts.models import Role

    organization, token = tenant_factory()
    reference_services(autonomous_organizations=[organization])
    sick_xray, _ = chest_radiograph(lesions=2, size=256, seed=3)
    normal_xray, _ = chest_radiograph(lesions=0, size=256, seed=4)
    ct, ct_truth = chest_ct(affected_share=0.35, seed=5)
    mg, _ = mammography_study(density="C", masses=1, size=128, seed=6)
    sent = {"sick": [sick_xray], "normal": [normal_xray], "ct": ct, "mg": mg}
    uids = {name: send_and_complete(live_platform, token, datasets) for name, datasets in sent.items()}
    results = {name: results_when_done(live_platform, token, uid) for name, uid in uids.items()}

    for name, body in results.items():
        [analysis] = body["analyses"]
        assert analysis["status"] == "succeeded", (name, analysis["reason"])
        assert analysis["originals_verified"] is True
        assert analysis["defects"] == [], name  # the reference services pass technological monitoring
        report = wado_instance(analysis["sr"]["url"], token)
        assert report.Modality == "SR"
        assert report.StudyInstanceUID == uids[name]
        series = qido_series(live_platform, token, uids[name])
        assert series[analysis["sr"]["series_instance_uid"]] == "SR"
        assert analysis["sc"]["series_instance_uid"] in series
        original_uids = {str(ds.SeriesInstanceUID) for ds in sent[name]}
        assert analysis["sc"]["series_instance_uid"] not in original_uids

    assert results["sick"]["analyses"][0]["pathology"] is True
    assert results["normal"]["analyses"][0]["pathology"] is False
    assert results["ct"]["analyses"][0]["category"] == ct_truth.severity.replace("CT-", "CT-")
    assert "4" in results["mg"]["analyses"][0]["category"]

    # The normal chest radiograph was closed by AI (autonomous stage, enabled here); the rest wait, in order.
    assert results["normal"]["worklist_status"] == "closed_by_ai"
    assert results["normal"]["analyses"][0]["autonomous"] is True
    radiologist = api_client_for(Role.RADIOLOGIST, organization=organization)
    worklist = radiologist.get("/api/v1/worklist").json()["results"]
    listed = [entry["study_instance_uid"] for entry in worklist]
    assert uids["normal"] not in listed
    probabilities = [entry["ai_probability"] for entry in worklist]
    assert probabilities == sorted(probabilities, reverse=True)
    assert set(listed) == {uids["sick"], uids["ct"], uids["mg"]}

    # The originals are byte for byte what the clinic sent.
    for name, datasets in sent.items():
        for dataset in datasets[:2]:
            url = (f"{live_platform}/dicomweb/studies/{uids[name]}/series/{dataset.SeriesInstanceUID}"
                   f"/instances/{dataset.SOPInstanceUID}")
            assert wado_instance(url, token).PixelData == dataset.PixelData
    assert Analysis.objects.filter(organization=organization).count() == 4


def test_a_lateral_radiograph_gets_a_not_analysable_answer_and_the_ris_hears_of_it(
    live_platform, tenant_factory, api_client_for, reference_services, analysis_worker, receiver
):
    from medai.accounts.models import Role

    organization, token = tenant_factory()
    reference_services()
    hook = api_client_for(Role.ORG_ADMIN, organization=organization).put(
        "/api/v1/webhook", {"url": receiver.url}, format="json").json()
    lateral, _ = chest_radiograph(lesions=1, size=128, view="LL")
    uid = send_and_complete(live_platform, token, [lateral])
    [analysis] = results_when_done(live_platform, token, uid)["analyses"]
    assert (analysis["status"], analysis["reason_code"]) == ("not_analysable", "not_frontal")
    report = wado_instance(analysis["sr"]["url"], token)
    assert report.Modality == "SR"
    assert analysis["reason"] in " ".join(sr_texts(report))

    wait_for(receiver.count, timeout=30)
    [call] = receiver.requests
    headers = {k.lower(): v for k, v in call["headers"].items()}
    signed = hmac.new(hook["secret"].encode(), f"{headers['x-medai-timestamp']}.".encode() + call["body"],
                      hashlib.sha256).hexdigest()
    assert headers["x-medai-signature"] == f"sha256={signed}"
    event = json.loads(call["body"])
    assert (event["study_instance_uid"], event["status"]) == (uid, "not_analysable")
    assert lateral.PatientName.family_name not in call["body"].decode()


def sr_texts(dataset) -> list[str]:
    """Every TEXT value of an SR content tree."""
    texts = []
    for item in dataset.get("ContentSequence", []):
        if "TextValue" in item:
            texts.append(str(item.TextValue))
        texts += sr_texts(item)
    return texts
