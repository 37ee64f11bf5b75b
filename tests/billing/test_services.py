"""A successful analysis becomes exactly one billable service at the tariff in force; nothing else is billed;
a study without a policy number waits for it; closed periods and billed services never change."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import services
from billing.models import BillableService, BillingPeriod, Tariff
from inference.records import StudyKind
from tests.billing.conftest import POLICY, analysis_end, last_month_noon, moscow_today, radiograph


def charges_of(analysis):
    return list(BillableService.objects.filter(study_id=analysis.study_id))


def test_a_succeeded_analysis_is_billed_once_at_the_region_tariff(clinic, analysed):
    analysis = analysed(clinic)
    [charge] = charges_of(analysis)
    assert charge.status == BillableService.Status.BILLABLE
    assert charge.kind == BillableService.Kind.CHARGE
    assert (charge.organization, charge.region_id) == (clinic, clinic.region_id)
    assert charge.study_kind == StudyKind.CHEST_XRAY
    assert charge.amount == Decimal("150.00")
    assert charge.tariff.service_code == "A06.09.006.AI"
    assert charge.policy_number == POLICY
    assert charge.service_date == moscow_today()
    assert charge.period.month == moscow_today().replace(day=1)


def test_the_same_study_finished_twice_bills_once(clinic, analysed):
    analysis = analysed(clinic)
    analysis_end(analysis)  # a rerun after a worker crash records the result again
    assert services.analysis_bill(analysis=analysis) is None
    assert len(charges_of(analysis)) == 1


@pytest.mark.parametrize("status,result", [
    ("failed", {}),
    ("not_analysable", {}),
    ("succeeded", {"originals_verified": False}),  # the original series changed: a fundamental defect
    ("succeeded", {"sc_series_instance_uid": ""}),  # no marked images
    ("succeeded", {"sr_sop_instance_uid": ""}),  # no draft report
])
def test_failures_and_defective_results_are_never_billed(clinic, analysed, status, result):
    analysis = analysed(clinic, status=status, **result)
    assert charges_of(analysis) == []


def test_a_study_no_service_matched_is_never_billed(clinic, analysed):
    dataset = radiograph()
    dataset.Modality = "MR"
    analysis = analysed(clinic, dataset, status="not_routed")
    assert analysis.service is None
    assert charges_of(analysis) == []


def test_a_study_without_policy_number_waits_for_it(clinic, analysed):
    analysis = analysed(clinic, radiograph(policy=None))
    [held] = charges_of(analysis)
    assert (held.status, held.hold, held.amount, held.period) == ("needs_data", "no_policy", None, None)
    with pytest.raises(ValueError):
        services.billable_service_supply_policy(service=held, policy_number="123")
    released = services.billable_service_supply_policy(service=held, policy_number=POLICY)
    assert (released.status, released.amount, released.policy_number) == ("billable", Decimal("150.00"), POLICY)
    assert released.period.status == BillingPeriod.Status.OPEN


def test_a_region_without_tariff_holds_its_services_until_one_is_added(tenant_factory, reference_services, analysed):
    organization, _ = tenant_factory(region_code="RU-KGD")
    reference_services()
    analysis = analysed(organization)
    [held] = charges_of(analysis)
    assert (held.status, held.hold) == ("needs_data", "no_tariff")
    services.tariff_create(region=organization.region, created_by="finance", study_kind=StudyKind.CHEST_XRAY,
                           service_code="X1", name="ИИ ФЛГ", price=Decimal("99.90"), valid_from=dt.date(2024, 1, 1))
    held.refresh_from_db()
    assert (held.status, held.amount) == ("billable", Decimal("99.90"))


def test_the_tariff_in_force_on_the_date_of_service_is_charged(clinic, analysed):
    today = moscow_today()
    old = Tariff.objects.get(region=clinic.region, study_kind=StudyKind.CHEST_XRAY)
    services.tariff_update(tariff=old, changed_by="finance", valid_to=today - dt.timedelta(days=1))
    services.tariff_create(region=clinic.region, created_by="finance", study_kind=StudyKind.CHEST_XRAY,
                           service_code="A06.09.006.AI", name="ИИ ФЛГ (новый тариф)", price=Decimal("175.50"),
                           valid_from=today)
    yesterday = analysed(clinic, finished_at=timezone.now() - dt.timedelta(days=1))
    now = analysed(clinic)
    assert charges_of(yesterday)[0].amount == Decimal("150.00")
    assert charges_of(now)[0].amount == Decimal("175.50")
    assert [r.action for r in old.revisions.all()] == ["created", "changed"]


def test_overlapping_tariffs_are_refused_by_the_service_and_the_database(clinic):
    with pytest.raises(services.BillingConflict):
        services.tariff_create(region=clinic.region, created_by="finance", study_kind=StudyKind.CHEST_XRAY,
                               service_code="X", name="X", price=Decimal("1.00"), valid_from=dt.date(2025, 6, 1))
    with pytest.raises(IntegrityError), transaction.atomic():
        Tariff.objects.create(region=clinic.region, study_kind=StudyKind.CHEST_XRAY, service_code="X", name="X",
                              price=Decimal("1.00"), valid_from=dt.date(2020, 1, 1), valid_to=dt.date(2023, 1, 1))


def test_a_billed_tariff_keeps_its_price(clinic, analysed):
    analysed(clinic)
    tariff = Tariff.objects.get(region=clinic.region, study_kind=StudyKind.CHEST_XRAY)
    with pytest.raises(services.BillingConflict):
        services.tariff_update(tariff=tariff, changed_by="finance", price=Decimal("1.00"))
    with pytest.raises(services.BillingConflict):
        services.tariff_update(tariff=tariff, changed_by="finance", valid_to=dt.date(2024, 1, 1))


def test_a_closed_period_is_immutable_and_late_results_go_to_the_next_one(clinic, analysed):
    last_month = analysed(clinic, finished_at=last_month_noon())
    [charge] = charges_of(last_month)
    period = charge.period
    assert period.month == last_month_noon().date().replace(day=1)
    services.period_close(period=period, closed_by="finance")
    with pytest.raises(services.BillingConflict):
        services.period_close(period=period, closed_by="finance")

    late = analysed(clinic, finished_at=last_month_noon())  # done last month, reported after the close
    [late_charge] = charges_of(late)
    assert late_charge.service_date == last_month_noon().date()
    assert late_charge.period.month == moscow_today().replace(day=1)

    for edit in (
        lambda: BillableService.objects.filter(id=charge.id).update(amount=Decimal("1.00")),
        lambda: BillableService.objects.filter(id=charge.id).delete(),
        lambda: BillingPeriod.objects.filter(id=period.id).update(status="open"),
        lambda: BillableService.objects.create(
            organization=clinic, region=clinic.region, analysis_id=late.id, study_id=late.study_id,
            study_kind=StudyKind.MAMMOGRAPHY, service_date=charge.service_date, status="billable",
            tariff=charge.tariff, amount=Decimal("5.00"), period=period, policy_number=POLICY),
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            edit()
    charge.refresh_from_db()
    assert charge.amount == Decimal("150.00")


def test_the_current_month_cannot_be_closed_yet(clinic, analysed):
    [charge] = charges_of(analysed(clinic))
    with pytest.raises(services.BillingConflict):
        services.period_close(period=charge.period, closed_by="finance")


def test_a_correction_is_a_reversal_entry_never_an_edit(clinic, analysed):
    [charge] = charges_of(analysed(clinic, finished_at=last_month_noon()))
    services.period_close(period=charge.period, closed_by="finance")
    reversal = services.billable_service_reverse(charge=charge, reason="Исследование выполнено повторно")
    assert reversal.amount == -charge.amount
    assert reversal.reverses == charge
    assert reversal.period.month == moscow_today().replace(day=1)  # the closed month stays as exported
    with pytest.raises(services.BillingConflict):
        services.billable_service_reverse(charge=charge, reason="again")
    charge.refresh_from_db()
    assert charge.amount == Decimal("150.00")


def test_reversing_a_held_service_voids_it(clinic, analysed):
    [held] = charges_of(analysed(clinic, radiograph(policy=None)))
    assert services.billable_service_reverse(charge=held, reason="recalled") is None
    held.refresh_from_db()
    assert held.status == BillableService.Status.VOID
    with pytest.raises(services.BillingConflict):
        services.billable_service_supply_policy(service=held, policy_number=POLICY)


@pytest.mark.timeout(180)
def test_a_study_analysed_by_the_worker_on_triton_is_billed_once(clinic, archived_study, analysis_worker):
    from inference.records import Analysis
    from inference.services import study_route
    from tests.inference.conftest import wait_for

    study = archived_study(clinic, [radiograph()])
    study_route(study_id=study.id)
    analysis = wait_for(lambda: Analysis.objects.filter(study=study, status__in=Analysis.FINAL).first(), timeout=120)
    assert analysis.status == Analysis.Status.SUCCEEDED, analysis.reason
    [charge] = BillableService.objects.filter(study=study)
    assert (charge.status, charge.amount, charge.analysis_id) == ("billable", Decimal("150.00"), analysis.id)
