"""The maturity matrix: each service's stage, the criteria of each stage measured on its reviewed results and
defects, the recommendation to promote or demote, as a page and as CSV for the ministry."""

import csv
import io

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

from inference.quality.clinical import month_metrics_recompute, review_record
from inference.quality.maturity import maturity_row
from inference.records import AIService
from inference.services import study_route
from medai.accounts.models import Role
from medai.accounts.principal import Principal
from medai.accounts.services import user_ensure
from tests.billing.conftest import analysis_end, radiograph

RADIOLOGIST = Principal(subject="dr-reviewer", roles=frozenset({Role.RADIOLOGIST}))


@pytest.fixture
def reviewed(tenant_factory, reference_services, archived_study, settings):
    """Analyses of the reference chest radiograph service with the given scores, each reviewed with its label."""
    settings.QUALITY_MIN_REVIEWED, settings.QUALITY_MIN_CLASS_SHARE = 20, 0.10
    organization, _ = tenant_factory()
    service = reference_services()["ref-chest-xray"]

    def review(scores: list[float], labels: list[int]) -> AIService:
        for score, label in zip(scores, labels, strict=True):
            study = archived_study(organization, [radiograph()])
            [analysis] = study_route(study_id=study.id)
            flagged = score >= service.pathology_threshold
            analysis = analysis_end(analysis, probability=score, pathology=flagged)
            review_record(analysis=analysis, principal=RADIOLOGIST, true_pathology=bool(label),
                          localisation_correct=True if label and flagged else None,
                          significance=None if flagged == bool(label) else "minor")
        month_metrics_recompute(month=timezone.localdate())
        service.refresh_from_db()
        return service

    return review


def test_a_service_that_meets_the_criteria_is_recommended_for_promotion(reviewed):
    rng = np.random.default_rng(1)
    labels = [1] * 10 + [0] * 14
    scores = [round(float(rng.uniform(0.7, 0.99)), 3) for _ in range(10)] + \
             [round(float(rng.uniform(0.01, 0.3)), 3) for _ in range(14)]
    service = reviewed(scores, labels)
    service.stage = AIService.Stage.TESTING
    row = maturity_row(service, today=timezone.localdate())
    assert row.reviewed == 24 and row.auroc == pytest.approx(1.0)
    assert {c.name: c.passed for c in row.criteria}["AUROC"] is True
    assert row.eligible_stage == AIService.Stage.AUTONOMOUS  # every positive scores above its autonomous threshold
    assert row.recommendation.startswith("повысить")


def test_a_service_that_fails_auroc_is_recommended_for_demotion(reviewed):
    labels = [1, 0] * 12
    scores = [0.4 if label else 0.6 for label in labels]  # worse than chance
    service = reviewed(scores, labels)
    row = maturity_row(service, today=timezone.localdate())
    assert row.auroc == pytest.approx(0.0)
    assert row.eligible_stage == AIService.Stage.TESTING
    assert service.stage == AIService.Stage.AUTONOMOUS and row.recommendation.startswith("понизить")


def test_the_matrix_page_and_csv_are_for_the_ministry(reviewed, transactional_db):
    reviewed([0.9, 0.1, 0.8, 0.2] * 6, [1, 0, 1, 0] * 6)
    ministry = Client()
    ministry.force_login(user_ensure(username="minzdrav", role=Role.MINISTRY_ANALYST))
    page = ministry.get("/quality/maturity")
    assert page.status_code == 200
    assert 'data-service="ref-chest-xray"' in page.content.decode()
    table = ministry.get("/quality/maturity.csv").content.decode("utf-8-sig")
    rows = {row["Сервис"]: row for row in csv.DictReader(io.StringIO(table), delimiter=";")}
    assert rows["ref-chest-xray"]["Проверено"] == "24"
    assert rows["ref-chest-xray"]["AUROC"] == "1.00"
    radiologist = Client()
    radiologist.force_login(user_ensure(username="dr", role=Role.RADIOLOGIST))
    assert radiologist.get("/quality/maturity").status_code == 403
    assert Client().get("/quality/maturity").status_code == 302  # to sign in
