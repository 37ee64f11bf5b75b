"""What a dashboard page shows, read with the same tables as /api/v1/stats, so the two always agree.

A page covers a slice (the nation, a region, an organization) over a date range and, optionally, some
modalities: its key figures, a table of the slice's parts (regions, organizations, or AI services), the
trend by day (by month over a quarter), the modality mix, and the AI services' quality at a glance.
Small cells are suppressed above the organization level exactly as in the API.
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from inference.quality.records import ServiceMonthMetrics
from inference.records import AIService
from medai.stats.selectors import Slice, small_cell, stats_table
from tenants.models import MedicalOrganization, Region

PART_OF = {"national": "region", "region": "organization", "organization": "service"}
KEY_STATS = ["studies_received", "analysed", "failed", "not_analysable", "not_routed", "flagged", "autonomous",
             "defects", "reviews", "disagreements", "billed_amount", "processing_p50_s", "processing_p95_s"]
PART_STATS = ["studies_received", "analysed", "flagged", "autonomous", "defects", "billed_amount", "processing_p95_s"]
TREND_STATS = ["studies_received", "analysed", "autonomous", "flagged"]
MIX_STATS = ["studies_received", "analysed"]
QUALITY_STATS = ["analysed", "defects", "reviews", "disagreements"]
MONTHLY_AFTER_DAYS = 92


@dataclass(frozen=True)
class Dashboard:
    part: Slice
    date_from: dt.date
    date_to: dt.date
    modalities: list[str]
    small_cell: int | None
    totals: dict
    autonomous_share: float | str | None
    money_saved: Decimal | str | None
    reading_cost: Decimal
    parts_by: str
    parts: list[dict]
    trend_by: str
    trend: list[dict]
    mix: list[dict]
    quality: list[dict]


def dashboard_of(*, part: Slice, date_from: dt.date, date_to: dt.date, modalities: list[str]) -> Dashboard:
    suppress_below = None if part.level == "organization" else small_cell()
    window = {"part": part, "date_from": date_from, "date_to": date_to, "modalities": modalities,
              "suppress_below": suppress_below}
    totals = (stats_table(group_by=[], stats=KEY_STATS, **window) or [dict.fromkeys(KEY_STATS, 0)])[0]
    trend_by = "month" if (date_to - date_from).days > MONTHLY_AFTER_DAYS else "day"
    parts = stats_table(group_by=[PART_OF[part.level]], stats=PART_STATS, **window)
    quality = stats_table(group_by=["service"], stats=QUALITY_STATS, **window)
    reading_cost = Decimal(settings.STATS_READING_COST_RUB)
    names = _names(PART_OF[part.level], parts + quality)
    return Dashboard(
        part=part, date_from=date_from, date_to=date_to, modalities=modalities, small_cell=suppress_below,
        totals=totals, autonomous_share=_share(totals["autonomous"], totals["analysed"]),
        money_saved=_times(totals["autonomous"], reading_cost), reading_cost=reading_cost,
        parts_by=PART_OF[part.level], parts=_named(parts, by=PART_OF[part.level], names=names),
        trend_by=trend_by, trend=_keyed(stats_table(group_by=[trend_by], stats=TREND_STATS, **window), by=trend_by),
        mix=stats_table(group_by=["modality"], stats=MIX_STATS, **window),
        quality=_named(_with_clinical_metrics(quality, part=part, month=date_to.replace(day=1)), by="service",
                       names=names),
    )


def _names(parts_by: str, rows: list[dict]) -> dict[str, str]:
    """What people call the regions, organizations and services the rows name by code."""
    services = dict(AIService.objects.filter(code__in=[row.get("service") for row in rows]).values_list("code", "name"))
    codes = [row.get(parts_by) for row in rows]
    if parts_by == "region":
        return services | dict(Region.objects.filter(code__in=codes).values_list("code", "name"))
    if parts_by == "organization":
        return services | dict(MedicalOrganization.objects.filter(oms_code__in=codes).values_list("oms_code", "name"))
    return services


def _keyed(rows: list[dict], *, by: str) -> list[dict]:
    return [{**row, "key": row[by]} for row in rows]


def _named(rows: list[dict], *, by: str, names: dict[str, str]) -> list[dict]:
    return [{**row, "key": row[by], "name": names.get(row[by], row[by])} for row in rows]


def _share(part, whole) -> float | str | None:
    """A percentage with one decimal; a suppressed operand suppresses it."""
    if isinstance(part, str) or isinstance(whole, str):
        return part if isinstance(part, str) else whole
    return round(100 * part / whole, 1) if whole else None


def _times(count, price: Decimal) -> Decimal | str:
    return count if isinstance(count, str) else (count * price).quantize(Decimal("0.01"))


def _with_clinical_metrics(rows: list[dict], *, part: Slice, month: dt.date) -> list[dict]:
    """Each service's defect and disagreement rates, and its AUROC, sensitivity and specificity of the
    month from clinical monitoring: the nation's on the national page, the region's below it."""
    metrics = {m.service.code: m for m in ServiceMonthMetrics.objects.filter(
        month=month, region=part.region, service__code__in=[row["service"] for row in rows]).select_related("service")}
    for row in rows:
        row["defect_rate"] = _share(row["defects"], row["analysed"])
        row["disagreement_rate"] = _share(row["disagreements"], row["reviews"])
        cell = metrics.get(row["service"])
        row.update(auroc=cell and cell.auroc, sensitivity=cell and cell.sensitivity,
                   specificity=cell and cell.specificity)
    return [row for row in rows if row["service"]]
