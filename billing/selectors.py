"""Reads of billing through the caller's scope, and the lines of a register."""

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from billing.models import BillableService, BillingPeriod, RegisterExport, Tariff
from billing.register import RegisterLine
from medai.accounts.principal import Principal, Scope

TOTAL_GROUPS = {"organization": "organization__oms_code", "region": "region__code", "study_kind": "study_kind",
                "month": "period__month"}


def _by_region(principal: Principal, queryset: QuerySet) -> QuerySet:
    """Regional reference data (tariffs, periods): an organization sees its region's."""
    if principal.scope is Scope.NATIONAL:
        return queryset
    return queryset.filter(region_id=principal.region_id)


def tariffs_visible(*, principal: Principal) -> QuerySet[Tariff]:
    return _by_region(principal, Tariff.objects.select_related("region"))


def periods_visible(*, principal: Principal) -> QuerySet[BillingPeriod]:
    return _by_region(principal, BillingPeriod.objects.select_related("region"))


def services_visible(*, principal: Principal) -> QuerySet[BillableService]:
    return principal.scoped(
        BillableService.objects.select_related("organization", "region", "study", "tariff", "period")
    ).order_by("id")


def exports_visible(*, principal: Principal) -> QuerySet[RegisterExport]:
    return principal.scoped(RegisterExport.objects.select_related("organization", "period__region"))


def billed(queryset: QuerySet[BillableService]) -> QuerySet[BillableService]:
    """What counts towards money: billable charges and reversals (not held, not voided)."""
    return queryset.filter(status=BillableService.Status.BILLABLE)


def service_totals(*, queryset: QuerySet[BillableService], group_by: list[str]) -> list[dict]:
    """Sums and counts of billed services, grouped by any of TOTAL_GROUPS (none: one grand total)."""
    columns = {name: TOTAL_GROUPS[name] for name in group_by}
    sums = {"amount": Coalesce(Sum("amount"), Decimal("0.00")), "charges": Count("id", filter=Q(kind="charge")),
            "reversals": Count("id", filter=Q(kind="reversal"))}
    if not columns:
        return [billed(queryset).aggregate(**sums)]
    rows = billed(queryset).order_by().values(*columns.values()).annotate(**sums).order_by(*columns.values())
    return [{**{name: row[column] for name, column in columns.items()},
             "amount": row["amount"], "charges": row["charges"], "reversals": row["reversals"]} for row in rows]


def register_services(*, period: BillingPeriod, organization_id: int) -> QuerySet[BillableService]:
    """What an organization's register of a period holds: its billed services there, except a charge
    reversed in the same period together with that reversal (they cancel out); a reversal of an earlier
    period's charge is a correction line."""
    return billed(BillableService.objects.filter(period=period, organization_id=organization_id)).exclude(
        Q(reversed_by__period=period) | Q(reverses__period=period)
    )


def _birth_date(value: str) -> dt.date | None:
    """DICOM DA (YYYYMMDD); anything else is left out of the register rather than guessed."""
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:8])) if len(value) == 8 else None
    except ValueError:
        return None


def _name_parts(patient_name: str) -> list[str]:
    """DICOM PN: family^given^middle (the alphabetic group, before any '=')."""
    return ([part.strip() for part in patient_name.split("=")[0].split("^")] + ["", "", ""])[:3]


def register_lines(services: QuerySet[BillableService]) -> Iterator[RegisterLine]:
    """The register's lines with the patient's data, streamed from a server-side cursor (needs a transaction)."""
    rows = services.order_by("id").values_list(
        "id", "policy_number", "service_date", "tariff__service_code", "study_kind", "tariff__diagnosis_code",
        "tariff__care_profile", "tariff__price", "amount", "kind", "study__patient_name", "study__patient_sex",
        "study__patient_birth_date",
    )
    for (service_id, policy, day, code, kind, diagnosis, profile, price, amount, entry_kind, name, sex,
         birth) in rows.iterator(chunk_size=5000):
        family, given, middle = _name_parts(name)
        yield RegisterLine(
            service_id=service_id, policy_number=policy, insurer_code="", service_date=day, service_code=code,
            study_kind=kind, diagnosis_code=diagnosis, care_profile=profile, tariff=price, amount=amount,
            correction=entry_kind == BillableService.Kind.REVERSAL, family_name=family, given_name=given,
            middle_name=middle, sex=sex if sex in ("M", "F") else "", birth_date=_birth_date(birth),
        )
