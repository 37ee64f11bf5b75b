"""Writes of billing: tariffs, charging analysed studies, releasing held services, reversals, periods.

Every write that touches the ledger runs in the caller's transaction and tenant scope. Charging runs
inside the transaction that records the end of an analysis (`inference.signals.analysis_finished`), so
the charge commits with the result or not at all.
"""

import datetime as dt
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import BillableService, BillingPeriod, Tariff, TariffRevision
from billing.signals import service_billed
from inference.records import Analysis
from medai.archive.patient import ENP_PATTERN, oms_policy_number
from tenants.models import Region

OTHER_PATIENT_IDS = "00101002"  # (0010,1002) Other Patient IDs Sequence, in DICOM JSON
TARIFF_FIELDS = ("study_kind", "service_code", "name", "price", "valid_from", "valid_to", "diagnosis_code",
                 "care_profile")
# Fields of a tariff that no longer change once a service was billed at it: end it and add a new one.
TARIFF_PRICE_FIELDS = {"study_kind", "service_code", "price", "valid_from"}


class BillingConflict(Exception):
    """A write the rules of billing refuse (overlapping tariffs, a closed period, a repeated reversal)."""


# ---------------------------------------------------------------------------------------------- tariffs


def _tariff_snapshot(tariff: Tariff) -> dict:
    return {field: str(value) if value is not None else None
            for field, value in ((f, getattr(tariff, f)) for f in TARIFF_FIELDS)}


def _tariff_save(tariff: Tariff) -> None:
    try:
        with transaction.atomic():
            tariff.full_clean(exclude=["region", "created_by"])
            tariff.save()
    except IntegrityError as error:
        raise BillingConflict(
            "Срок действия тарифа пересекается с другим тарифом этого региона на тот же вид исследования."
        ) from error


@transaction.atomic
def tariff_create(*, region: Region, created_by: str, action: str = "created", **fields) -> Tariff:
    """Add a tariff; overlapping validity with another of the region and kind is refused."""
    tariff = Tariff(region=region, created_by=created_by, **fields)
    _tariff_save(tariff)
    TariffRevision.objects.create(tariff=tariff, action=action, data=_tariff_snapshot(tariff), changed_by=created_by)
    billable_services_release(region_id=region.id, hold=BillableService.Hold.NO_TARIFF)
    return tariff


@transaction.atomic
def tariff_update(*, tariff: Tariff, changed_by: str, **fields) -> Tariff:
    """Change a tariff. Once a service was billed at it, only its name, register codes and end may change."""
    tariff = Tariff.objects.select_for_update().get(id=tariff.id)
    changed = {name for name, value in fields.items() if getattr(tariff, name) != value}
    if changed & TARIFF_PRICE_FIELDS and BillableService.objects.filter(tariff=tariff).exists():
        raise BillingConflict(
            "По тарифу уже выставлены услуги: его нельзя изменить, только завершить и добавить новый."
        )
    if tariff.valid_to != fields.get("valid_to", tariff.valid_to):
        last_billed = BillableService.objects.filter(tariff=tariff).order_by("-service_date").first()
        new_end = fields["valid_to"]
        if last_billed and new_end is not None and new_end < last_billed.service_date:
            raise BillingConflict(f"По тарифу выставлены услуги от {last_billed.service_date}: срок не может "
                                  "закончиться раньше.")
    for name, value in fields.items():
        setattr(tariff, name, value)
    _tariff_save(tariff)
    TariffRevision.objects.create(tariff=tariff, action="changed", data=_tariff_snapshot(tariff),
                                  changed_by=changed_by)
    billable_services_release(region_id=tariff.region_id, hold=BillableService.Hold.NO_TARIFF)
    return tariff


def tariff_in_force(*, region_id: int, study_kind: str, day: dt.date) -> Tariff | None:
    return (
        Tariff.objects.filter(region_id=region_id, study_kind=study_kind, valid_from__lte=day)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=day))
        .first()
    )


# ---------------------------------------------------------------------------------------------- periods


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def period_open_for(*, region_id: int, day: dt.date) -> int:
    """The id of the period a service of `day` goes to: its month's, or the next open one if that closed.

    The period is share-locked until the caller commits, so it cannot close under a service being added.
    """
    month = day.replace(day=1)
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, status FROM billing_billingperiod WHERE region_id = %s AND month = %s "
                           "FOR SHARE", [region_id, month])
            row = cursor.fetchone()
        if row is None:
            BillingPeriod.objects.get_or_create(region_id=region_id, month=month)
        elif row[1] == BillingPeriod.Status.OPEN:
            return row[0]
        else:
            month = _next_month(month)


@transaction.atomic
def period_close(*, period: BillingPeriod, closed_by: str) -> BillingPeriod:
    """Close a month: from now on nothing in it changes; later results go to the next open period."""
    period = BillingPeriod.objects.select_for_update(of=("self",)).select_related("region").get(id=period.id)
    if period.status != BillingPeriod.Status.OPEN:
        raise BillingConflict("Период уже закрыт.")
    if period.month >= timezone.localdate(timezone=ZoneInfo(period.region.time_zone)).replace(day=1):
        raise BillingConflict("Период закрывается после окончания месяца.")
    period.status = BillingPeriod.Status.CLOSED
    period.closed_by = closed_by
    period.closed_at = timezone.now()
    period.save(update_fields=["status", "closed_by", "closed_at"])
    return period


# ------------------------------------------------------------------------------------------- the ledger


def _delivered_complete(analysis: Analysis) -> bool:
    """Only a delivered result without a fundamental defect is billed: both SR and SC stored, the originals
    intact, and (checked with the rest, in SQL) no critical defect found by technological monitoring."""
    return (
        analysis.status == Analysis.Status.SUCCEEDED
        and not analysis.shadow
        and bool(analysis.originals_verified)
        and bool(analysis.sr_sop_instance_uid)
        and bool(analysis.sc_series_instance_uid)
    )


@dataclass(frozen=True)
class _Price:
    tariff: Tariff | None
    period_id: int | None
    hold: str

    @property
    def billable(self) -> bool:
        return not self.hold


def _price(*, region_id: int, study_kind: str, day: dt.date, policy_number: str) -> _Price:
    tariff = tariff_in_force(region_id=region_id, study_kind=study_kind, day=day)
    if not policy_number:
        return _Price(tariff, None, BillableService.Hold.NO_POLICY)
    if tariff is None:
        return _Price(None, None, BillableService.Hold.NO_TARIFF)
    return _Price(tariff, period_open_for(region_id=region_id, day=day), "")


# One call charges the study: billing_analysis_charge (billing migration 0003) has the rules. Its outcome
# names what only Python settles: a policy number SQL might read otherwise than oms_policy_number does, or
# a period to open (period_open_for); the call is then made again with it.
_CHARGE_SQL = """
SELECT * FROM billing_analysis_charge(%(analysis)s, %(organization)s, %(region)s, %(study)s, %(kind)s,
                                      %(finished)s, %(now)s, %(policy_number)s, %(period)s)
"""
_CHARGE_COLUMNS = ("id", "status", "hold", "service_date", "policy_number", "tariff_id", "amount", "period_id",
                   "released_at")


def analysis_bill(*, analysis: Analysis) -> BillableService | None:
    """Charge a study for a succeeded analysis: once per study and kind, whatever retries or second
    services of the same kind happen. A study without a policy number, or without a tariff in force, is
    held as *needs data*. Returns the new charge, or None when nothing was charged.

    Runs in every analysis's final transaction (<= 2 ms at p95, bench/billing.py), so it is one call of a
    PL/pgSQL function, whose plans the session keeps; that call also adds the billed amount to the daily
    statistics, hence `counted` on service_billed. The first charge of a month in a region, or a policy
    number only Python reads, takes a second call."""
    if not _delivered_complete(analysis):
        return None
    now = timezone.now()
    args = {"analysis": analysis.id, "organization": analysis.organization_id, "region": analysis.region_id,
            "study": analysis.study_id, "kind": analysis.service.study_kind, "finished": analysis.finished_at,
            "now": now, "policy_number": None, "period": None}
    with connection.cursor() as cursor:
        while True:  # each answer other than the last is settled once: at most three calls
            cursor.execute(_CHARGE_SQL, args)
            outcome, other_ids, *values = cursor.fetchone()
            row = dict(zip(_CHARGE_COLUMNS, values, strict=True))
            if outcome == "policy_unread":
                policy_number = oms_policy_number({OTHER_PATIENT_IDS: json.loads(other_ids)})
                args["policy_number"] = policy_number or ""
            elif outcome == "no_period":
                args["period"] = period_open_for(region_id=analysis.region_id, day=row["service_date"])
            else:
                break
    if outcome != "charged":
        return None  # defective, retried, or another service of the same kind charged the study first
    charge = BillableService(
        organization_id=analysis.organization_id, region_id=analysis.region_id, kind=BillableService.Kind.CHARGE,
        analysis=analysis, study_id=analysis.study_id, study_kind=args["kind"], reason="", created_at=now, **row)
    charge._state.adding, charge._state.db = False, connection.alias
    if charge.status == BillableService.Status.BILLABLE:
        service_billed.send(sender=BillableService, service=charge, counted=True)
    return charge


def _release(service: BillableService) -> bool:
    price = _price(region_id=service.region_id, study_kind=service.study_kind, day=service.service_date,
                   policy_number=service.policy_number)
    if not price.billable:
        if price.hold != service.hold:
            service.hold = price.hold
            service.save(update_fields=["hold"])
        return False
    service.tariff, service.amount, service.period_id = price.tariff, price.tariff.price, price.period_id
    service.status, service.hold, service.released_at = BillableService.Status.BILLABLE, "", timezone.now()
    service.save(update_fields=["tariff", "amount", "period", "status", "hold", "released_at"])
    service_billed.send(sender=BillableService, service=service)
    return True


@transaction.atomic
def billable_service_supply_policy(*, service: BillableService, policy_number: str) -> BillableService:
    """The clinic (or its RIS) supplies the missing OMS policy number of a held service; it is billed if
    a tariff is in force."""
    service = BillableService.objects.select_for_update().get(id=service.id)
    if service.status != BillableService.Status.NEEDS_DATA:
        raise BillingConflict("Услуга не ожидает данных: полис менять нельзя.")
    if not ENP_PATTERN.match(policy_number):
        raise ValueError("Единый номер полиса ОМС — 16 цифр.")
    service.policy_number = policy_number
    service.save(update_fields=["policy_number"])
    _release(service)
    return service


def billable_services_release(*, region_id: int, hold: str) -> int:
    """Bill the region's services held for `hold` whose data is now there (e.g. after a tariff was added)."""
    held = BillableService.objects.select_for_update().filter(
        region_id=region_id, status=BillableService.Status.NEEDS_DATA, hold=hold
    )
    return sum(_release(service) for service in held)


def analysis_charge_reverse(*, analysis: Analysis, reason: str) -> BillableService | None:
    """Withdraw the charge an analysis earned, if any and not yet reversed (a recall may run twice)."""
    charge = BillableService.objects.filter(analysis=analysis, kind=BillableService.Kind.CHARGE).first()
    if charge is None or charge.status == BillableService.Status.VOID or hasattr(charge, "reversed_by"):
        return None
    return billable_service_reverse(charge=charge, reason=reason)


@transaction.atomic
def billable_service_reverse(*, charge: BillableService, reason: str) -> BillableService | None:
    """Withdraw a charge: a billed one gets a reversal entry in the current open period (never an edit);
    a held one is voided. Returns the reversal, or None for a voided hold."""
    charge = BillableService.objects.select_for_update().get(id=charge.id)
    if charge.kind != BillableService.Kind.CHARGE:
        raise BillingConflict("Сторнировать можно только начисление.")
    if charge.status == BillableService.Status.NEEDS_DATA:
        charge.status = BillableService.Status.VOID
        charge.reason = reason[:500]
        charge.save(update_fields=["status", "reason"])
        return None
    if charge.status == BillableService.Status.VOID or BillableService.objects.filter(reverses=charge).exists():
        raise BillingConflict("Начисление уже сторнировано.")
    reversal = BillableService.objects.create(
        organization_id=charge.organization_id, region_id=charge.region_id, kind=BillableService.Kind.REVERSAL,
        status=BillableService.Status.BILLABLE, analysis_id=charge.analysis_id, study_id=charge.study_id,
        study_kind=charge.study_kind, service_date=charge.service_date, policy_number=charge.policy_number,
        tariff_id=charge.tariff_id, amount=-charge.amount, reverses=charge, reason=reason[:500],
        period_id=period_open_for(region_id=charge.region_id, day=charge.period.month),
        released_at=timezone.now(),
    )
    service_billed.send(sender=BillableService, service=reversal)
    return reversal
