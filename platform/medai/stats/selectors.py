"""Reads of statistics: which counts a caller may see at a level, and the table they ask for.

Every level reads the organization-level table: a region or the nation is a GROUP BY over its
(region, day) or (day) index. Above the organization level, small cells are suppressed so that no
patient can be singled out: a count under STATS_SMALL_CELL shows as "<N", and values derived from few
results (billed amount, processing time) are suppressed with it.
"""

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.http import Http404

from medai.accounts.principal import Principal, Scope
from medai.stats.counts import COUNTED, HISTOGRAM_BUCKETS, PROCESSING_TIME, bucket_upper_seconds
from medai.stats.models import DailyCount
from tenants.models import MedicalOrganization, Region

LEVELS = ("national", "region", "organization")
GROUPS = {"day": F("day"), "month": TruncMonth("day"), "modality": F("modality"), "service": F("service__code"),
          "region": F("region__code"), "organization": F("organization__oms_code")}
DERIVED = ("billed_amount", "processing_p50_s", "processing_p95_s")
STATS = COUNTED + DERIVED


def small_cell() -> int:
    return getattr(settings, "STATS_SMALL_CELL", 5)


def counts_visible(*, principal: Principal, level: str, region_code: str = "", organization_code: str = ""
                   ) -> QuerySet[DailyCount]:
    """The counts of one level the caller asked for: the nation, a region or an organization. A level
    above the caller's scope is refused; a region or organization outside it does not exist (404)."""
    counts = principal.scoped(DailyCount.objects.all())
    if level == "national":
        if principal.scope is not Scope.NATIONAL:
            raise PermissionDenied("Статистика по стране доступна министерству и администратору платформы.")
        return counts
    if level == "region":
        if principal.scope is Scope.ORGANIZATION:
            raise PermissionDenied("Статистика по региону доступна сотрудникам региона и министерства.")
        code = {"code": region_code} if region_code else {}
        if principal.scope is Scope.REGION:
            regions = Region.objects.filter(id=principal.region_id, **code)
        else:
            regions = Region.objects.filter(**code) if code else Region.objects.none()
        region = regions.first()
        if region is None:
            raise Http404("Нет такого региона.")
        return counts.filter(region_id=region.id)
    code = {"oms_code": organization_code} if organization_code else {}
    if principal.scope is Scope.ORGANIZATION:
        organizations = MedicalOrganization.objects.filter(id=principal.organization_id, **code)
    elif principal.scope is Scope.REGION:
        organizations = MedicalOrganization.objects.filter(region_id=principal.region_id, **code)
    else:
        organizations = MedicalOrganization.objects.filter(**code) if code else MedicalOrganization.objects.none()
    organization = organizations.first()
    if organization is None:
        raise Http404("Нет такой медицинской организации.")
    return counts.filter(organization_id=organization.id)


def stats_table(*, counts: QuerySet[DailyCount], date_from: dt.date, date_to: dt.date, group_by: list[str],
                stats: list[str], suppress_below: int | None) -> list[dict]:
    """Sums of the counts of `date_from`..`date_to`, one row per combination of `group_by` (in one query),
    with the requested stats; cells under `suppress_below` studies shown as "<N"."""
    aliases = {f"by_{name}": GROUPS[name] for name in group_by}
    rows = (counts.filter(day__range=(date_from, date_to)).annotate(**aliases).values(*aliases, "stat")
            .annotate(total=Sum("value")).order_by(*aliases, "stat"))
    cells: dict[tuple, dict[str, int]] = defaultdict(dict)
    for row in rows:
        cells[tuple(row[alias] for alias in aliases)][row["stat"]] = row["total"]
    return [{**{name: _shown(name, value) for name, value in zip(group_by, key, strict=True)},
             **_stat_values(values, stats, suppress_below)} for key, values in cells.items()]


def _shown(group: str, value):
    if group == "month":
        return value.strftime("%Y-%m")
    return value.isoformat() if group == "day" else value


def _stat_values(values: dict[str, int], stats: list[str], suppress_below: int | None) -> dict:
    histogram = [values.get(f"{PROCESSING_TIME}:{bucket:02d}", 0) for bucket in range(HISTOGRAM_BUCKETS)]
    kopecks = values.get("billed_kopecks")
    derived = {"billed_amount": f"{Decimal(kopecks) / 100:.2f}" if kopecks is not None else None,
               "processing_p50_s": _percentile(histogram, 0.5), "processing_p95_s": _percentile(histogram, 0.95)}
    few = suppress_below is not None and values.get("analysed", 0) < suppress_below
    shown = {}
    for stat in stats:
        if stat in derived:
            shown[stat] = f"<{suppress_below}" if few and derived[stat] is not None else derived[stat]
        else:
            value = values.get(stat, 0)
            shown[stat] = f"<{suppress_below}" if suppress_below is not None and 0 < value < suppress_below else value
    return shown


def _percentile(histogram: list[int], quantile: float) -> float | None:
    """The upper bound of the bucket where the quantile falls: an estimate within one bucket (about 41%)."""
    total, running = sum(histogram), 0
    for bucket, count in enumerate(histogram):
        running += count
        if total and running >= quantile * total:
            return round(bucket_upper_seconds(bucket), 1)
    return None
