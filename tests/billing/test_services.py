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


def _sql_policy_numbers(values: list) -> list[str | None]:
    """What billing_analysis_charge reads as the policy number of each OtherPatientIDsSequence (None: unread)."""
    import json

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT billing_oms_policy_number(v) FROM unnest(%s::jsonb[]) WITH ORDINALITY AS u(v, k) "
                       "ORDER BY k", [[None if v is None else json.dumps(v) for v in values]])
        return [row[0] for row in cursor.fetchall()]


def _other_ids(*items) -> dict:
    return {"vr": "SQ", "Value": [
        {tag: {"vr": "LO", "Value": [value]} for tag, value in (("00100020", number), ("00100021", issuer))
         if value is not ...} for number, issuer in items]}


def test_sql_reads_the_policy_number_as_python_does_or_leaves_it_to_python(db):
    import random

    from medai.archive.patient import oms_policy_number

    cases = [  # (OtherPatientIDsSequence, what SQL reads: None where it leaves the sequence to Python)
        (None, ""),
        (_other_ids((POLICY, "ENP")), POLICY),
        (_other_ids((f" {POLICY}\x1c\n", " oms\t")), POLICY),
        (_other_ids(("123", "ENP"), ("7700000000000025", "OMS"), (POLICY, "ENP")), "7700000000000025"),
        (_other_ids((POLICY, "SNILS"), (POLICY[:-1], "ENP"), (POLICY + "1", "OMS"), (POLICY, ...)), ""),
        (_other_ids((None, "ENP"), (POLICY, None)), ""),
        ({"vr": "SQ"}, ""),
        ({"vr": "SQ", "Value": []}, ""),
        ({"vr": "SQ", "Value": [{}, {"00100020": {"vr": "LO"}}, {"00100020": {"vr": "LO", "Value": []}}]}, ""),
        (_other_ids((POLICY, "ОМС")), None),  # Cyrillic: Python's upper() and strip() are Unicode's
        (_other_ids(("７７００００００００００００００１７", "ENP")), None),
        (_other_ids((f"\u00a0{POLICY}", "ENP")), None),
        (_other_ids((int(POLICY), "ENP")), None),  # not a string
        ({"vr": "SQ", "Value": "x"}, None),  # malformed: Python raises
        ({"vr": "SQ", "Value": [None]}, None),
        ({"vr": "SQ", "Value": [{"00100020": None}]}, None),
        ([POLICY], None),
    ]
    rng = random.Random(7)
    numbers = [POLICY, "7700000000000025", "770000000000002", " ", "\t", "\n", "\x1c", "\x1f", "\x0b", '"', "0", ""]
    issuers = ["ENP", "enp", "OMS", "Oms", " ", "\r", "\x1e", "OMSX", ""]
    for _ in range(300):
        items = [("".join(rng.choices(numbers, k=rng.randint(0, 3))),
                  "".join(rng.choices(issuers, k=rng.randint(0, 2)))) for _ in range(rng.randint(0, 3))]
        cases.append((_other_ids(*items), oms_policy_number({"00101002": _other_ids(*items)}) or ""))
    read = _sql_policy_numbers([sequence for sequence, _ in cases])
    assert read == [expected for _, expected in cases]
    for (sequence, _), number in zip(cases[1:], read[1:], strict=True):
        if number is not None:
            assert number == (oms_policy_number({"00101002": sequence}) or "")


def test_a_policy_number_sql_cannot_read_is_read_in_python(clinic, analysed):
    from pydicom.dataset import Dataset

    from medai.archive.models import Instance

    dataset = radiograph()
    other = Dataset()
    other.PatientID = "12345"
    other.IssuerOfPatientID = "ФСС"  # not ASCII: SQL leaves the whole sequence to oms_policy_number
    dataset.OtherPatientIDsSequence = [other, *dataset.OtherPatientIDsSequence]
    [charge] = charges_of(analysed(clinic, dataset))
    assert (charge.status, charge.policy_number, charge.amount) == ("billable", POLICY, Decimal("150.00"))
    stored = Instance.objects.filter(study_id=charge.study_id).order_by("id").first().metadata["00101002"]
    assert _sql_policy_numbers([stored]) == [None]
