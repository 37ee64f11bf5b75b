"""Clinical monitoring through the real database: results ended as the pipeline ends them (study_route, then
analysis_finish under the row lock), radiologists' verdicts through the API, the monthly recompute, and the
metrics checked against scikit-learn on the same data; the review sample, drift, and who sees what."""

import csv
import datetime as dt
import hashlib
import io
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from inference.quality.clinical import month_metrics_recompute, month_start, review_sample_draw
from inference.quality.clinical_tasks import draw_review_samples, recompute_metrics
from inference.quality.metrics import auc_confidence_interval
from inference.quality.records import QualityAlert, Review, ReviewSample, ServiceMonthMetrics, Severity
from inference.quality.services import defects_record
from inference.quality.technological import Finding
from inference.records import AIService, Analysis, WorklistEntry
from inference.services import study_route
from medai.accounts.models import Role
from tests.billing.conftest import analysis_end, radiograph

pytestmark = pytest.mark.timeout(300)

SERVICE = "ref-chest-xray"


def months_ago(count: int) -> dt.date:
    month = month_start(dt.datetime.now(dt.UTC).date())
    for _ in range(count):
        month = month_start(month - dt.timedelta(days=1))
    return month


def noon(month: dt.date, day: int) -> dt.datetime:
    return dt.datetime.combine(month + dt.timedelta(days=day % 28), dt.time(12), tzinfo=dt.UTC)


@pytest.fixture
def clinics(tenant_factory, reference_services):
    """A clinic in Moscow (its chest radiographs may be closed as normal by AI) and one in Saint Petersburg."""
    moscow, _ = tenant_factory(region_code="RU-MOW")
    petersburg, _ = tenant_factory(region_code="RU-SPE")
    reference_services(autonomous_organizations=[moscow])
    return moscow, petersburg


@pytest.fixture
def result(archived_study):
    """A chest radiograph of `organization` routed to the reference service and ended with a score; the
    decision is the service's (score >= its threshold 0.5)."""

    def make(organization, *, probability: float, finished_at: dt.datetime, autonomous: bool = False,
             status: str = "succeeded") -> Analysis:
        study = archived_study(organization, [radiograph()])
        [analysis] = study_route(study_id=study.id)
        if status != "succeeded":
            return analysis_end(analysis, status=status, finished_at=finished_at)
        return analysis_end(analysis, probability=probability, pathology=probability >= 0.5, autonomous=autonomous,
                            finished_at=finished_at)

    return make


def review(client, analysis: Analysis, **verdict):
    return client.post(f"/api/v1/results/{analysis.id}/review", verdict, format="json")


# --- verdicts ---------------------------------------------------------------------------------------------------


def test_a_radiologist_of_the_clinic_reviews_a_result_once(clinics, result, api_client_for):
    moscow, petersburg = clinics
    analysis = result(moscow, probability=0.2, finished_at=noon(months_ago(1), 3))
    radiologist = api_client_for(Role.RADIOLOGIST, organization=moscow)

    missing = review(radiologist, analysis, true_pathology=True)
    assert missing.status_code == 400 and "significance" in missing.json()
    contradicting = review(radiologist, analysis, true_pathology=True, agrees=True, significance="minor")
    assert contradicting.status_code == 400 and "agrees" in contradicting.json()
    no_marks = review(radiologist, analysis, true_pathology=False, localisation_correct=True)
    assert no_marks.status_code == 400 and "localisation_correct" in no_marks.json()

    created = review(radiologist, analysis, true_pathology=True, significance="significant", comment="Очаг справа")
    assert created.status_code == 201, created.json()
    assert created.json() | {"reviewed_at": None} == {
        "analysis_id": analysis.id, "study_instance_uid": analysis.study.study_instance_uid, "service": SERVICE,
        "reviewer": Review.objects.get().reviewer, "agrees": False, "true_pathology": True,
        "localisation_correct": None, "significance": "significant", "comment": "Очаг справа", "reviewed_at": None}
    again = review(radiologist, analysis, true_pathology=True, significance="minor")
    assert again.status_code == 409 and "уже оценён" in again.json()["detail"]

    path = f"/api/v1/results/{analysis.id}/review"
    for role, scope in ((Role.ORG_ADMIN, {"organization": moscow}), (Role.REGIONAL_ADMIN, {"region": moscow.region}),
                        (Role.MINISTRY_ANALYST, {})):
        assert api_client_for(role, **scope).get(path).json()["true_pathology"] is True, role
    assert api_client_for(Role.ORG_ADMIN, organization=moscow).post(path, {"true_pathology": True}).status_code == 403
    assert api_client_for(Role.UPLOADER, organization=moscow).get(path).status_code == 403
    outsider = api_client_for(Role.RADIOLOGIST, organization=petersburg)
    assert outsider.get(path).status_code == 404
    assert review(outsider, analysis, true_pathology=False).status_code == 404
    assert api_client_for(Role.REGIONAL_ADMIN, region=petersburg.region).get(path).status_code == 404


def test_only_a_succeeded_result_can_be_reviewed(clinics, result, api_client_for):
    moscow, _ = clinics
    failed = result(moscow, probability=0, finished_at=noon(months_ago(1), 1), status="failed")
    refused = review(api_client_for(Role.RADIOLOGIST, organization=moscow), failed, true_pathology=False)
    assert refused.status_code == 409 and "успешный" in refused.json()["detail"]
    assert not Review.objects.exists()


# --- the worklist and the sample ------------------------------------------------------------------------------


def test_a_reopened_autonomous_normal_is_ready_again_and_in_the_sample(clinics, result, api_client_for):
    moscow, petersburg = clinics
    normal = result(moscow, probability=0.01, finished_at=noon(months_ago(1), 2), autonomous=True)
    entry = WorklistEntry.objects.get(study=normal.study)
    assert entry.status == WorklistEntry.Status.CLOSED_BY_AI
    uid = normal.study.study_instance_uid

    assert api_client_for(Role.RADIOLOGIST, organization=petersburg).post(f"/api/v1/worklist/{uid}/reopen") \
        .status_code == 404
    radiologist = api_client_for(Role.RADIOLOGIST, organization=moscow)
    reopened = radiologist.post(f"/api/v1/worklist/{uid}/reopen")
    assert reopened.status_code == 200 and reopened.json()["status"] == "ready"
    assert radiologist.post(f"/api/v1/worklist/{uid}/reopen").status_code == 409
    assert ReviewSample.objects.get(analysis=normal).reason == ReviewSample.Reason.REOPENED


def test_disagreeing_with_an_autonomous_normal_reopens_it(clinics, result, api_client_for):
    moscow, _ = clinics
    normal = result(moscow, probability=0.02, finished_at=noon(months_ago(1), 4), autonomous=True)
    radiologist = api_client_for(Role.RADIOLOGIST, organization=moscow)
    assert review(radiologist, normal, true_pathology=True, significance="significant").status_code == 201
    assert WorklistEntry.objects.get(study=normal.study).status == WorklistEntry.Status.READY
    assert ReviewSample.objects.get(analysis=normal).reason == ReviewSample.Reason.REOPENED


def md5_order(seed: int, ids: list[int]) -> list[int]:
    return sorted(ids, key=lambda i: hashlib.md5(f"{seed}:{i}".encode()).hexdigest())


def test_the_sample_is_a_seeded_random_share_plus_every_disagreement_and_reopened_normal(
    clinics, result, api_client_for
):
    moscow, petersburg = clinics
    month = months_ago(1)
    scores = [0.1, 0.7, 0.3, 0.8, 0.2, 0.9, 0.4, 0.6, 0.05, 0.55, 0.35]
    analyses = [result(moscow if i % 3 else petersburg, probability=p, finished_at=noon(month, i))
                for i, p in enumerate(scores)]
    normal = result(moscow, probability=0.01, finished_at=noon(month, 20), autonomous=True)
    result(moscow, probability=0.9, finished_at=noon(months_ago(2), 5))  # another month
    radiologist = api_client_for(Role.RADIOLOGIST, organization=moscow)
    disagreed = [a for a in analyses if a.organization_id == moscow.id][:2]
    for analysis in disagreed:
        assert review(radiologist, analysis, true_pathology=not analysis.pathology, significance="minor") \
            .status_code == 201
    assert radiologist.post(f"/api/v1/worklist/{normal.study.study_instance_uid}/reopen").status_code == 200
    service = AIService.objects.get(code=SERVICE)

    sample = review_sample_draw(service=service, month=month, share=0.25, seed=7)
    month_ids = [a.id for a in [*analyses, normal]]
    random_ids = md5_order(7, month_ids)[:math.ceil(0.25 * len(month_ids))]
    reasons = {row.analysis_id: row.reason for row in sample}
    assert set(reasons) == {*random_ids, *(a.id for a in disagreed), normal.id}
    assert reasons[normal.id] == "reopened"
    assert all(reasons[a.id] in ("disagreement", "random") for a in disagreed)
    assert [row.id for row in review_sample_draw(service=service, month=month, share=0.25, seed=7)] == \
        [row.id for row in sample]  # drawing again changes nothing

    listed = radiologist.get(f"/api/v1/quality/review-sample?service={SERVICE}&month={month:%Y-%m}&limit=100")
    seen = {row["analysis_id"]: row for row in listed.json()["results"]}
    assert set(seen) == {row.analysis_id for row in sample if row.organization_id == moscow.id}
    assert all(seen[a.id]["reviewed"] for a in disagreed) and seen[normal.id]["reason"] == "reopened"
    assert api_client_for(Role.MINISTRY_ANALYST).get("/api/v1/quality/review-sample").status_code == 403


def test_the_periodic_tasks_cover_last_month_and_this_one(clinics, result, api_client_for):
    moscow, _ = clinics
    analyses = [result(moscow, probability=p, finished_at=noon(months_ago(1), i)) for i, p in enumerate([0.8, 0.3])]
    radiologist = api_client_for(Role.RADIOLOGIST, organization=moscow)
    assert review(radiologist, analyses[1], true_pathology=True, significance="minor").status_code == 201
    # QUALITY_REVIEW_SHARE (5 %) of two results is one, drawn with the default seed 0; and the disagreement.
    random_one = md5_order(0, [a.id for a in analyses])[0]
    assert draw_review_samples() == len({random_one, analyses[1].id})
    assert recompute_metrics() == 2  # Moscow and the nation, last month; nothing this month
    assert recompute_metrics(months_ago(2).isoformat()) == 0


# --- metrics ----------------------------------------------------------------------------------------------------


def verdict_set(rng: np.random.Generator, n: int) -> list[tuple[float, bool, bool | None]]:
    """(score, true label, localisation verdict) per result: scores that separate the labels imperfectly."""
    truth = rng.random(n) < 0.45
    scores = np.clip(0.5 + np.where(truth, 0.18, -0.18) + rng.normal(0, 0.2, n), 0, 1).round(3)
    localisation = [None if i % 4 == 3 else bool(i % 3) for i in range(n)]
    return list(zip(scores.tolist(), truth.tolist(), localisation, strict=True))


def expected_metrics(rows: list[tuple[float, bool, bool | None]]) -> dict:
    """The same metrics by scikit-learn (and DeLong's interval by our own function, which sklearn lacks)."""
    scores = np.array([s for s, _, _ in rows])
    truth = np.array([t for _, t, _ in rows], dtype=int)
    decisions = (scores >= 0.5).astype(int)
    localised = [loc for s, _, loc in rows if s >= 0.5 and loc is not None]
    low, high = auc_confidence_interval(truth, scores)
    return {
        "reviewed": len(rows), "reviewed_positive": int(truth.sum()), "auroc": roc_auc_score(truth, scores),
        "auroc_ci_low": low, "auroc_ci_high": high,
        "sensitivity": recall_score(truth, decisions), "specificity": recall_score(truth, decisions, pos_label=0),
        "ppv": precision_score(truth, decisions), "npv": precision_score(truth, decisions, pos_label=0),
        "accuracy": accuracy_score(truth, decisions), "localisation_accuracy": sum(localised) / len(localised),
    }


def assert_metrics(row: ServiceMonthMetrics, expected: dict) -> None:
    for name, value in expected.items():
        assert getattr(row, name) == pytest.approx(value, abs=1e-12), name


def test_metrics_per_region_and_nation_equal_scikit_learn(
    clinics, result, api_client_for, django_assert_max_num_queries
):
    moscow, petersburg = clinics
    month = months_ago(1)
    rng = np.random.default_rng(5)
    verdicts = {moscow: verdict_set(rng, 22), petersburg: verdict_set(rng, 14)}
    for organization, rows in verdicts.items():
        radiologist = api_client_for(Role.RADIOLOGIST, organization=organization)
        for i, (score, truth, localisation) in enumerate(rows):
            analysis = result(organization, probability=score, finished_at=noon(month, i))
            verdict = {"true_pathology": truth, "localisation_correct": localisation if score >= 0.5 else None}
            if truth != (score >= 0.5):
                verdict["significance"] = "minor"
            assert review(radiologist, analysis, **verdict).status_code == 201
        result(organization, probability=0.93, finished_at=noon(month, 27))  # not reviewed: counted, not judged
    result(moscow, probability=0.9, finished_at=noon(months_ago(2), 1))  # another month

    with django_assert_max_num_queries(12):
        rows = month_metrics_recompute(month=month)
    by_region = {row.region_id: row for row in rows}
    assert set(by_region) == {moscow.region_id, petersburg.region_id, None}
    for organization, reviewed in verdicts.items():
        assert_metrics(by_region[organization.region_id], expected_metrics(reviewed))
        assert by_region[organization.region_id].results == len(reviewed) + 1
    national = by_region[None]
    assert_metrics(national, expected_metrics(verdicts[moscow] + verdicts[petersburg]))
    assert (national.results, national.positives) == (38, sum(s >= 0.5 for rows in verdicts.values()
                                                              for s, _, _ in rows) + 2)
    assert national.histogram["bins"] == 1000 and sum(national.histogram["positives"]) == national.reviewed_positive

    assert len(month_metrics_recompute(month=month)) == 3  # upserted, not duplicated
    assert ServiceMonthMetrics.objects.filter(month=month).count() == 3


def test_too_few_verdicts_leave_auroc_empty(clinics, result, api_client_for):
    moscow, _ = clinics
    month = months_ago(1)
    radiologist = api_client_for(Role.RADIOLOGIST, organization=moscow)
    for i, score in enumerate([0.9, 0.2, 0.1]):
        analysis = result(moscow, probability=score, finished_at=noon(month, i))
        assert review(radiologist, analysis, true_pathology=score >= 0.5).status_code == 201
    row = next(r for r in month_metrics_recompute(month=month) if r.region_id is None)
    assert (row.reviewed, row.reviewed_positive, row.auroc, row.auroc_ci_low) == (3, 1, None, None)
    assert (row.sensitivity, row.specificity, row.localisation_accuracy) == (1.0, 1.0, None)


# --- drift ------------------------------------------------------------------------------------------------------


def test_a_jump_of_the_positive_rate_and_scores_is_a_drift_alerted_once(clinics, result, settings):
    settings.QUALITY_MIN_RESULTS = 12
    moscow, _ = clinics
    baseline, later = months_ago(2), months_ago(1)
    for i in range(12):
        result(moscow, probability=0.85 if i == 0 else 0.05 + 0.02 * i, finished_at=noon(baseline, i))
    for i in range(12):
        result(moscow, probability=0.25 if i < 3 else 0.6 + 0.03 * i, finished_at=noon(later, i))

    first = {row.region_id: row for row in month_metrics_recompute(month=baseline)}
    assert not any(row.positive_rate_drift or row.score_drift for row in first.values())  # it is the baseline
    rows = {row.region_id: row for row in month_metrics_recompute(month=later)}
    for row in rows.values():
        assert row.positive_rate_drift and row.score_drift and row.score_psi > 0.2
    month_metrics_recompute(month=later)
    alerts = QualityAlert.objects.filter(kind=QualityAlert.Kind.DRIFT, month=later)
    assert sorted(alerts.values_list("region_id", flat=True), key=str) == sorted([moscow.region_id, None], key=str)
    national = alerts.get(region=None)
    assert "75.0% против 8.3%" in national.message and f"{baseline:%m.%Y}" in national.message


# --- the API of aggregates ---------------------------------------------------------------------------------------


@pytest.fixture
def computed(clinics, result, api_client_for, settings):
    """A month of results in both regions, a few reviewed, recomputed; a drift alert in Moscow."""
    settings.QUALITY_MIN_RESULTS = 3
    moscow, petersburg = clinics
    month = months_ago(1)
    for organization in (moscow, petersburg):
        radiologist = api_client_for(Role.RADIOLOGIST, organization=organization)
        for i, score in enumerate([0.9, 0.7, 0.2, 0.1]):
            analysis = result(organization, probability=score, finished_at=noon(month, i))
            assert review(radiologist, analysis, true_pathology=score >= 0.5).status_code == 201
    rows = month_metrics_recompute(month=month)
    alert = QualityAlert.objects.create(service=rows[0].service, region=moscow.region, month=month,
                                        kind=QualityAlert.Kind.DRIFT, message="Дрейф")
    return moscow, petersburg, month, alert


def test_metrics_by_scope_and_as_csv(computed, api_client_for):
    moscow, petersburg, month, _ = computed

    def regions(client, query: str = "") -> list:
        response = client.get(f"/api/v1/quality/metrics{query}")
        assert response.status_code == 200, response.content
        return [row["region"] for row in response.json()["results"]]

    assert regions(api_client_for(Role.MINISTRY_ANALYST)) == [None, "RU-MOW", "RU-SPE"]
    assert regions(api_client_for(Role.PLATFORM_ADMIN), f"?service={SERVICE}&month_from={month:%Y-%m}"
                                                        f"&month_to={month:%Y-%m}&region=RU-SPE") == ["RU-SPE"]
    assert regions(api_client_for(Role.MINISTRY_ANALYST), f"?month_from={months_ago(0):%Y-%m}") == []
    assert regions(api_client_for(Role.REGIONAL_ADMIN, region=moscow.region)) == ["RU-MOW"]
    for role in (Role.RADIOLOGIST, Role.ORG_ADMIN, Role.FINANCE):
        assert api_client_for(role, organization=moscow).get("/api/v1/quality/metrics").status_code == 403

    download = api_client_for(Role.MINISTRY_ANALYST).get("/api/v1/quality/metrics?format=csv")
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    assert "attachment" in download["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig")), delimiter=";"))
    assert [(row["region"], row["results"], row["auroc"]) for row in table] == \
        [("", "8", "1,0000"), ("RU-MOW", "4", "1,0000"), ("RU-SPE", "4", "1,0000")]
    by_header = api_client_for(Role.REGIONAL_ADMIN, region=petersburg.region).get(
        "/api/v1/quality/metrics", HTTP_ACCEPT="text/csv")
    assert by_header.content.decode("utf-8-sig").splitlines()[1].startswith(f"{SERVICE};RU-SPE;{month:%Y-%m};4;")


def test_alerts_by_scope_and_acknowledged_by_the_operator(computed, api_client_for):
    moscow, petersburg, _, alert = computed
    assert [a["region"] for a in api_client_for(Role.MINISTRY_ANALYST).get("/api/v1/quality/alerts")
            .json()["results"]] == ["RU-MOW"]
    assert api_client_for(Role.REGIONAL_ADMIN, region=petersburg.region).get("/api/v1/quality/alerts") \
        .json()["results"] == []
    acknowledge = f"/api/v1/quality/alerts/{alert.id}/acknowledge"
    assert api_client_for(Role.REGIONAL_ADMIN, region=moscow.region).post(acknowledge).status_code == 403
    done = api_client_for(Role.PLATFORM_ADMIN).post(acknowledge)
    assert done.status_code == 200 and done.json()["acknowledged_at"] and done.json()["acknowledged_by"]
    pending = api_client_for(Role.REGIONAL_ADMIN, region=moscow.region).get("/api/v1/quality/alerts?acknowledged=false")
    assert pending.json()["results"] == []


def test_defect_rates_at_the_callers_scope(computed, api_client_for):
    moscow, petersburg, month, _ = computed
    analysis = Analysis.objects.filter(organization=moscow).order_by("id").first()
    defects_record(analysis=analysis, findings=[Finding("sr_no_text", Severity.MAJOR, "Нет текста")])
    query = f"/api/v1/quality/defects?month_from={month:%Y-%m}&month_to={month:%Y-%m}"
    [mine] = api_client_for(Role.ORG_ADMIN, organization=moscow).get(query).json()["rows"]
    assert mine == {"service": SERVICE, "region": "RU-MOW", "month": f"{month:%Y-%m}", "results": 4, "defective": 1,
                    "critical": 0, "major": 1, "minor": 0, "defect_rate": 0.25}
    assert api_client_for(Role.ORG_ADMIN, organization=petersburg).get(query).json()["rows"][0]["defective"] == 0
    national = api_client_for(Role.MINISTRY_ANALYST).get(query).json()["rows"]
    assert [(row["region"], row["defective"]) for row in national] == [("RU-MOW", 1), ("RU-SPE", 0)]
    assert api_client_for(Role.RADIOLOGIST, organization=moscow).get(query).status_code == 403
