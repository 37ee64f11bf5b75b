"""The live counts equal a recount from the source rows, after a random mix of events through the real
write functions: studies completed (some completion tasks re-run), routed or not, analyses ending every way,
reviews, charges held, released and reversed."""

import datetime as dt
import random

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import BillableService
from billing.services import billable_service_reverse, billable_service_supply_policy
from inference.quality.clinical import review_record
from medai.accounts.models import Role
from medai.accounts.principal import Principal
from medai.archive.services import study_complete
from medai.archive.tasks import study_completed
from medai.stats.models import DailyCount
from tests.billing.conftest import POLICY, analysis_end, radiograph


def table() -> list[tuple]:
    columns = ("organization_id", "day", "modality", "service_id", "stat")
    return list(DailyCount.objects.order_by(*columns).values_list(*columns, "value"))


def complete(study, *, runs: int = 1) -> list:
    """Complete a study as the quiet sweep does, and run its completion task here (routing it); a second
    run is the re-run after a worker crashed before acknowledging the task."""
    study_complete(study=study)
    for _ in range(runs):
        study_completed(study.id, study.organization_id)
    return list(study.analyses.order_by("id"))


def random_events(rng: random.Random, clinics, archived_study) -> int:
    studies = 0
    for n in range(14):
        organization = rng.choice(clinics)
        dataset = radiograph(policy=rng.choice([POLICY, POLICY, None]))
        if n == 0 or rng.random() < 0.2:
            dataset.Modality = "US"  # no service reads ultrasound: not routed
        analyses = complete(archived_study(organization, [dataset]), runs=2 if n % 3 == 0 else 1)
        studies += 1
        for analysis in analyses:
            if analysis.service_id is None:
                continue
            finished_at = timezone.now() - dt.timedelta(days=rng.randint(0, 3), minutes=rng.randint(0, 600))
            outcome = "failed" if n == 1 else rng.choice(["succeeded", "succeeded", "failed", "not_analysable"])
            if outcome == "succeeded":
                pathology = rng.random() < 0.4
                analysis = analysis_end(analysis, finished_at=finished_at, pathology=pathology,
                                        probability=0.9 if pathology else 0.1,
                                        autonomous=not pathology and rng.random() < 0.5)
            else:
                code = "bad_model_answer" if outcome == "failed" and rng.random() < 0.7 else ""
                analysis = analysis_end(analysis, status=outcome, code=code, finished_at=finished_at)
            if outcome == "succeeded" and rng.random() < 0.6:
                radiologist = Principal(subject="r", roles=frozenset({Role.RADIOLOGIST}),
                                        region_id=organization.region_id, organization_id=organization.id)
                truth = rng.random() < 0.5
                significance = None if truth == analysis.pathology else rng.choice(["minor", "significant"])
                review_record(analysis=analysis, principal=radiologist, true_pathology=truth, significance=significance)
    for charge in BillableService.objects.filter(kind="charge").order_by("id"):
        if charge.status == BillableService.Status.NEEDS_DATA and rng.random() < 0.6:
            billable_service_supply_policy(service=charge, policy_number=POLICY)
        elif charge.status == BillableService.Status.BILLABLE and rng.random() < 0.3:
            billable_service_reverse(charge=charge, reason="Ошибка в данных")
    return studies


@pytest.mark.parametrize("seed", [1, 2])
def test_live_counts_equal_a_rebuild(clinics, archived_study, seed):
    studies = random_events(random.Random(seed), clinics, archived_study)
    live = table()
    assert sum(value for *_, stat, value in live if stat == "studies_received") == studies
    assert {"studies_received", "analysed", "failed", "not_routed", "reviews", "billed_kopecks"} <= {
        row[4] for row in live}
    assert any(row[4].startswith("processing_time:") for row in live)
    today = timezone.localdate()
    date_from, date_to = today - dt.timedelta(days=10), today + dt.timedelta(days=1)
    call_command("stats_rebuild", "--from", str(date_from), "--to", str(date_to))
    assert table() == live


def test_a_rebuild_of_some_days_leaves_the_others(clinics, archived_study):
    random_events(random.Random(3), clinics, archived_study)
    live = table()
    DailyCount.objects.update(value=0)  # as if the counts were lost
    today = timezone.localdate()
    call_command("stats_rebuild", "--from", str(today), "--to", str(today))
    assert [row for row in table() if row[1] == today] == [row for row in live if row[1] == today]
    assert all(row[5] == 0 for row in table() if row[1] != today)
