"""Reads of statistics: which counts a caller may see at a level, and the table they ask for.

A table is read from the coarsest level that still has its grouping: the national sums, the region sums,
or the organization counts, for the days rolled up; the organization counts of the later days are
added (see medai.stats.models). Above the organization level, small cells are suppressed so that no
patient can be singled out: a count under STATS_SMALL_CELL shows as "<N", and values derived from few
results (billed amount, processing time) are suppressed with it. Where a column would have a single
suppressed cell, the smallest other one is hidden too ("*"), or the total would give it away.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.http import Http404
from django.utils import timezone

from inference.records import AIService
from medai.accounts.principal import Principal, Scope
from medai.stats.counts import COUNTED, HISTOGRAM_BUCKETS, PROCESSING_TIME, bucket_upper_seconds
from medai.stats.models import DailyCount, NationalDailyCount, RegionDailyCount
from medai.stats.rollups import rolled_up_through
from tenants.models import MedicalOrganization, Region

LEVELS = ("national", "region", "organization")
# Grouped by the counts' own columns, with no join: the codes are looked up for the few groups afterwards.
GROUPS = {"day": F("day"), "month": TruncMonth("day"), "modality": F("modality"), "service": F("service_id"),
          "region": F("region_id"), "organization": F("organization_id")}
CODES = {"service": (AIService, "code"), "region": (Region, "code"), "organization": (MedicalOrganization, "oms_code")}
DERIVED = ("billed_amount", "processing_p50_s", "processing_p95_s")
STATS = COUNTED + DERIVED
HIDDEN = "*"


def small_cell() -> int:
    return settings.STATS_SMALL_CELL


def latest_local_day() -> dt.date:
    """Today in the easternmost region: counts are kept by each region's own day, and every region lies
    east of UTC (up to UTC+12), so a default range ending on UTC's today would miss Kamchatka's from noon."""
    zones = Region.objects.values_list("time_zone", flat=True).distinct()
    return max((timezone.localdate(timezone=ZoneInfo(zone)) for zone in zones), default=timezone.localdate())


@dataclass(frozen=True)
class Slice:
    """The part of the nation a table covers: all of it, a region, or an organization."""

    level: str
    region: Region | None = None
    organization: MedicalOrganization | None = None


def slice_visible(*, principal: Principal, level: str, region_code: str = "", organization_code: str = "") -> Slice:
    """The level the caller asked for: the nation, a region or an organization. A level above the caller's
    scope is refused; a region or organization outside it does not exist (404)."""
    if level == "national":
        if principal.scope is not Scope.NATIONAL:
            raise PermissionDenied("Статистика по стране доступна министерству и администратору платформы.")
        return Slice(level)
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
        return Slice(level, region=region)
    code = {"oms_code": organization_code} if organization_code else {}
    if principal.scope is Scope.ORGANIZATION:
        organizations = MedicalOrganization.objects.filter(id=principal.organization_id, **code)
    elif principal.scope is Scope.REGION:
        organizations = MedicalOrganization.objects.filter(region_id=principal.region_id, **code)
    else:
        organizations = MedicalOrganization.objects.filter(**code) if code else MedicalOrganization.objects.none()
    organization = organizations.select_related("region").first()
    if organization is None:
        raise Http404("Нет такой медицинской организации.")
    return Slice(level, region=organization.region, organization=organization)


def _sources(part: Slice, group_by: list[str], date_from: dt.date, date_to: dt.date) -> list[QuerySet]:
    """The rows to sum: the coarsest table with the grouping for the rolled-up days, the organization
    counts for the days after them."""
    counts = DailyCount.objects.all()
    if part.organization is not None:
        return [counts.filter(organization=part.organization, day__range=(date_from, date_to))]
    if part.region is not None:
        counts = counts.filter(region=part.region)
    if "organization" in group_by:
        return [counts.filter(day__range=(date_from, date_to))]
    if part.region is not None or "region" in group_by:
        sums = RegionDailyCount.objects.filter(**({"region": part.region} if part.region else {}))
    else:
        sums = NationalDailyCount.objects.all()
    through = rolled_up_through()
    if through is None or through < date_from:
        return [counts.filter(day__range=(date_from, date_to))]
    if through >= date_to:
        return [sums.filter(day__range=(date_from, date_to))]
    return [sums.filter(day__range=(date_from, through)),
            counts.filter(day__range=(through + dt.timedelta(days=1), date_to))]


def stats_table(*, part: Slice, date_from: dt.date, date_to: dt.date, group_by: list[str], stats: list[str],
                suppress_below: int | None, modalities: list[str] | None = None) -> list[dict]:
    """Sums of the counts of `date_from`..`date_to` (of some modalities only, if given), one row per
    combination of `group_by`, with the requested stats; cells under `suppress_below` studies shown as "<N"."""
    aliases = {f"by_{name}": GROUPS[name] for name in group_by}
    cells: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with grouping_by_hash():
        for source in _sources(part, group_by, date_from, date_to):
            if modalities:
                source = source.filter(modality__in=modalities)
            for row in source.annotate(**aliases).values(*aliases, "stat").annotate(total=Sum("value")).order_by():
                cells[tuple(row[alias] for alias in aliases)][row["stat"]] += row["total"]
    shown = _shown_keys(group_by, cells)
    rows = [{**dict(zip(group_by, shown[key], strict=True)), **_stat_values(cells[key], stats, suppress_below)}
            for key in sorted(cells, key=lambda key: tuple("" if v is None else str(v) for v in shown[key]))]
    if suppress_below is not None and len(rows) > 1:
        _hide_complements(rows, [stat for stat in stats if stat in COUNTED or stat == "billed_amount"])
    return rows


@contextmanager
def grouping_by_hash() -> Iterator[None]:
    """Row-level security's test hides from the planner how many rows a read returns (it expects hundreds
    where a national read finds a hundred thousand), so it groups by sorting and spills to disk: 3-4 times
    slower (bench/stats.py). Sorting is turned off for these reads, and back on after them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)")
        (before, _) = cursor.fetchone()
        try:
            yield
        finally:
            cursor.execute("SELECT set_config('enable_sort', %s, true)", [before])


def _hide_complements(rows: list[dict], columns: list[str]) -> None:
    """Where a column has exactly one suppressed cell, hide its smallest other non-zero cell as well."""
    for column in columns:
        suppressed = [row for row in rows if str(row[column]).startswith("<")]
        if len(suppressed) != 1:
            continue
        others = [row for row in rows if row is not suppressed[0] and row[column] not in (None, 0, "0.00")]
        if others:
            min(others, key=lambda row: Decimal(row[column]))[column] = HIDDEN


def _shown_keys(group_by: list[str], cells: dict[tuple, dict]) -> dict[tuple, tuple]:
    """Each group's key as the reader sees it: days and months as text, services, regions and
    organizations by their codes."""
    codes = {}
    for position, name in enumerate(group_by):
        if name in CODES:
            model, field = CODES[name]
            ids = {key[position] for key in cells} - {None}
            codes[name] = dict(model.objects.filter(id__in=ids).values_list("id", field))
    return {key: tuple(_shown(name, value, codes.get(name)) for name, value in zip(group_by, key, strict=True))
            for key in cells}


def _shown(group: str, value, codes: dict | None):
    if value is None:
        return None
    if codes is not None:
        return codes[value]
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
