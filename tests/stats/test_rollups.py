"""The live counts equal a recount from the source rows, after a random mix of events through the real
write functions: studies completed (some completion tasks re-run), routed or not, analyses ending every way,
reviews, charges held, released and reversed."""

import datetime as dt
import random

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.models import BillableService
from billing.services import billable_service_reverse, billable_service_supply_policy
from inference.quality.clinical import review_record
from medai.accounts.models import Role
from medai.accounts.principal import Principal
from medai.archive.services import study_complete
from medai.archive.tasks import study_completed
from medai.stats.models import DailyCount
from medai.stats.rollups import rolled_up_through, rollups_advance
from medai.stats.selectors import STATS, slice_visible, stats_table
from medai.stats.tasks import nightly
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


def sums_by(level: str) -> list[tuple]:
    """The region (or national) sums as stored, and as summed from the organization counts, of the days
    rolled up."""
    columns = "region_id, day, modality, service_id, stat" if level == "region" else "day, modality, service_id, stat"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns}, value FROM stats_{level}dailycount ORDER BY {columns}")
        stored = cursor.fetchall()
        cursor.execute(f"""SELECT {columns}, sum(value) FROM stats_dailycount
                           WHERE day <= (SELECT rolled_up_through FROM stats_rollupstate)
                           GROUP BY {columns} HAVING sum(value) <> 0 ORDER BY {columns}""")
        return [stored, cursor.fetchall()]


def test_region_and_national_sums_follow_the_organization_counts(clinics, archived_study):
    """Rolled up to yesterday, then late events land on rolled-up days, a charge is reversed and a range is
    rebuilt: the sums stay equal to the organization counts, and the API reads the same from either."""
    random_events(random.Random(4), clinics, archived_study)
    today = timezone.localdate()
    assert rollups_advance(through=today - dt.timedelta(days=1)) > 0
    for level in ("region", "national"):
        stored, summed = sums_by(level)
        assert stored == summed and stored
    random_events(random.Random(5), clinics, archived_study)  # results finished up to 3 days ago
    call_command("stats_rebuild", "--from", str(today - dt.timedelta(days=2)), "--to", str(today))
    for level in ("region", "national"):
        stored, summed = sums_by(level)
        assert stored == summed

    ministry = Principal(subject="m", roles=frozenset({Role.MINISTRY_ANALYST}))
    window = {"date_from": today - dt.timedelta(days=10), "date_to": today, "suppress_below": None,
              "stats": list(STATS)}
    from_sums = stats_table(part=slice_visible(principal=ministry, level="national"), group_by=["day"], **window)
    by_organization = stats_table(part=slice_visible(principal=ministry, level="national"),
                                  group_by=["day", "organization"], **window)
    assert sum(row["studies_received"] for row in from_sums) == sum(
        row["studies_received"] for row in by_organization) > 0
    assert [row["analysed"] for row in from_sums] == [
        sum(other["analysed"] for other in by_organization if other["day"] == row["day"]) for row in from_sums]


def test_the_nightly_task_corrects_wrong_counts_and_rolls_up_final_days(clinics, archived_study):
    random_events(random.Random(6), clinics, archived_study)
    live = table()
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    wrong = DailyCount.objects.filter(day=yesterday, stat="studies_received").first() or DailyCount.objects.filter(
        day=yesterday).first()
    DailyCount.objects.filter(id=wrong.id).update(value=wrong.value + 5)  # a count the live path got wrong
    assert nightly() == 1
    assert table() == live
    assert rolled_up_through() == timezone.localdate() - dt.timedelta(days=1)
    assert nightly() == 0
