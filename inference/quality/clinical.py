"""Clinical monitoring of AI services (../shared/domain.md, "Quality control"): radiologists' verdicts on
results, the sample of results drawn for review, and each service's metrics per region and month against
those verdicts, with drift against the service's baseline. Services (writes) first, then selectors (reads).

What counts as a result: a succeeded analysis of a service, delivered (not of a version in shadow) and not
withdrawn by a recall. Its month is the calendar month of `finished_at` in UTC, as for the defect-rate
alerts of `inference.quality.services`.

Metrics are computed over every reviewed result of the month. Reviews are enriched with the results that
most need a second look (every disagreement, every reopened autonomous normal), so sensitivity and
specificity lean pessimistic; the random share of the sample (reason "random") is what an unbiased
estimate would be drawn from.

Drift needs no verdicts: the positive rate of the service's decisions and the distribution of the scores
of all its results are compared with its baseline, the first month in which the same cell (service and
region, or service nationally) had at least QUALITY_MIN_RESULTS results. A fixed baseline, rather than a
moving window, catches slow drift and stands for the behaviour the service was admitted with; a new model
version is a new service in the registry and so starts a baseline of its own.
"""

import datetime as dt
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, fields

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import CharField, Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Value
from django.db.models.functions import MD5, Cast, Collate, Concat, Floor, TruncMonth
from django.utils import timezone

from inference.quality.metrics import (
    PSI_LIMIT,
    ScoreHistogram,
    Shift,
    auc_confidence_interval,
    operating_point_from_decisions,
    positive_rate_shift,
    roc_auc,
)
from inference.quality.records import Defect, QualityAlert, Review, ReviewSample, ServiceMonthMetrics, Severity
from inference.records import AIService, Analysis, WorklistEntry
from inference.services import WorklistConflict
from inference.signals import review_recorded
from medai.accounts.principal import Principal, Scope
from tenants.models import Region

logger = logging.getLogger(__name__)

HISTOGRAM_BINS = 1000
"""Score bins of the stored histograms: probabilities given to three decimals keep a bin each."""

PSI_BINS = 10
"""Quantile bins of the baseline for the population stability index (deciles, the convention)."""

Cell = tuple[int, int | None]
"""(service id, region id), or (service id, None) for the nation."""


class ReviewConflict(Exception):
    """The result cannot be reviewed (again): not succeeded, withdrawn, or reviewed already."""


# --- months ---------------------------------------------------------------------------------------------------


def month_start(day: dt.date) -> dt.date:
    """The first day of the month of `day`: how months are keyed in every table here."""
    return day.replace(day=1)


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _month_of(moment: dt.datetime) -> dt.date:
    return month_start(moment.astimezone(dt.UTC).date())


def results() -> QuerySet[Analysis]:
    """The results clinical monitoring judges: succeeded, delivered to the clinic, not recalled."""
    return Analysis.objects.filter(
        status=Analysis.Status.SUCCEEDED, service__isnull=False, shadow=False, superseded_at__isnull=True
    )


def month_span(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants between which a result of `month` finished: its first midnight, and the next month's."""
    start = month_start(month)
    return _utc_midnight(start), _utc_midnight(_next_month(start))


def results_in(month: dt.date) -> QuerySet[Analysis]:
    """The results that finished in `month` (UTC)."""
    since, until = month_span(month)
    return results().filter(finished_at__gte=since, finished_at__lt=until)


# --- reviews and the worklist ---------------------------------------------------------------------------------


def _require_reviewable(analysis: Analysis) -> None:
    if analysis.shadow:
        raise ReviewConflict("Результат теневой версии сервиса не выдавался врачу.")
    if analysis.status != Analysis.Status.SUCCEEDED or analysis.pathology is None:
        raise ReviewConflict("Оценить можно только успешный результат ИИ с решением о наличии патологии.")
    if analysis.superseded_at is not None:
        raise ReviewConflict("Результат отозван вместе с версией модели; оценивать его не нужно.")
    if Review.objects.filter(analysis=analysis).exists():
        raise ReviewConflict("Этот результат уже оценён.")


def _review_errors(analysis: Analysis, agrees: bool, true_pathology: bool, localisation_correct: bool | None,
                   significance: str) -> dict[str, str]:
    """A verdict must be consistent with the result it judges: agreeing means the same binary decision."""
    errors = {}
    if agrees != (analysis.pathology == true_pathology):
        errors["agrees"] = ("Согласие с ИИ означает то же решение о патологии: ИИ "
                            f"{'нашёл' if analysis.pathology else 'не нашёл'} патологию.")
    if localisation_correct is not None and not analysis.pathology:
        errors["localisation_correct"] = "ИИ не отметил патологию: оценивать локализацию нечего."
    if agrees and significance == Review.Significance.SIGNIFICANT:
        errors["significance"] = "При согласии с ИИ клинически значимого расхождения нет."
    if not agrees and significance == Review.Significance.NONE:
        errors["significance"] = "Укажите клиническую значимость расхождения с ИИ."
    return errors


@transaction.atomic
def review_record(
    *,
    analysis: Analysis,
    principal: Principal,
    true_pathology: bool,
    agrees: bool | None = None,
    localisation_correct: bool | None = None,
    significance: str | None = None,
    comment: str = "",
) -> Review:
    """A radiologist's verdict on one result: the ground truth of the service's metrics. One per result.

    `agrees` may be left out: it follows from the true label and the service's decision. A disagreement
    with an autonomous normal sends the study back to the worklist, as a reopening does: a study the AI
    closed turned out to need a radiologist's report.
    """
    analysis = Analysis.objects.select_for_update(of=("self",)).get(id=analysis.id)
    _require_reviewable(analysis)
    agrees = (analysis.pathology == true_pathology) if agrees is None else agrees
    significance = significance or Review.Significance.NONE
    errors = _review_errors(analysis, agrees, true_pathology, localisation_correct, significance)
    if errors:
        raise ValidationError(errors)
    review = Review.objects.create(
        organization_id=analysis.organization_id, region_id=analysis.region_id, analysis=analysis,
        service_id=analysis.service_id, reviewer=principal.subject, agrees=agrees, true_pathology=true_pathology,
        localisation_correct=localisation_correct, significance=significance, comment=comment,
    )
    if analysis.autonomous and not agrees:
        entry = WorklistEntry.objects.select_for_update().filter(study_id=analysis.study_id).first()
        if entry is not None and entry.status == WorklistEntry.Status.CLOSED_BY_AI:
            _entry_reopen(entry)
        _reopened_record([analysis])
    logger.info("analysis %s reviewed by %s: %s", analysis.id, principal.subject, "agrees" if agrees else "disagrees")
    review_recorded.send(sender=Review, review=review)
    return review


def _entry_reopen(entry: WorklistEntry) -> None:
    entry.status = WorklistEntry.Status.READY
    entry.reported_at = None
    entry.save(update_fields=["status", "reported_at"])


def _reopened_record(analyses: list[Analysis]) -> None:
    """Put reopened autonomous normals in their month's review sample: the reopening is recorded nowhere else.
    A result already in the sample keeps the reason it was drawn for."""
    ReviewSample.objects.bulk_create(
        [ReviewSample(organization_id=a.organization_id, region_id=a.region_id, analysis_id=a.id,
                      service_id=a.service_id, month=_month_of(a.finished_at), reason=ReviewSample.Reason.REOPENED)
         for a in analyses],
        ignore_conflicts=True,
    )


@transaction.atomic
def worklist_reopen(*, entry: WorklistEntry, principal: Principal) -> WorklistEntry:
    """A radiologist reopens a study the AI closed as normal: it is ready for a report again, and its
    autonomous results go into the review sample (reason "reopened")."""
    entry = WorklistEntry.objects.select_for_update().get(id=entry.id)
    if entry.status != WorklistEntry.Status.CLOSED_BY_AI:
        raise WorklistConflict("Исследование не закрыто ИИ как норма: открывать нечего.")
    _entry_reopen(entry)
    _reopened_record(list(results().filter(study_id=entry.study_id, autonomous=True)))
    logger.info("study %s reopened by %s", entry.study_id, principal.subject)
    return entry


# --- the review sample ----------------------------------------------------------------------------------------


@transaction.atomic
def review_sample_draw(
    *, service: AIService, month: dt.date, share: float | None = None, seed: int = 0
) -> list[ReviewSample]:
    """Draw a service's month for review: a random `share` of its results (QUALITY_REVIEW_SHARE by default)
    and every result whose review disagrees; reopened autonomous normals are in it already.

    The random part is the first ceil(share x results) results in the order of md5(seed:id): deterministic
    for a seed, independent of insertion order, and stable as the month fills, so drawing again keeps what
    was drawn and adds only what the larger month now calls for. An analysis is in the sample once, under
    the reason it first got in ("random" before "disagreement" in one draw, so that the random part stays
    random). Needs the national scope (a service's month spans tenants).
    """
    share = getattr(settings, "QUALITY_REVIEW_SHARE", 0.05) if share is None else share
    if not 0 <= share <= 1:
        raise ValueError(f"the review share must be between 0 and 1, got {share}")
    start = month_start(month)
    AIService.objects.select_for_update().get(id=service.id)  # one draw of a service at a time
    month_results = results_in(start).filter(service=service)
    wanted = math.ceil(share * month_results.count())
    columns = ("id", "organization_id", "region_id")
    order = Collate(MD5(Concat(Value(f"{seed}:"), Cast("id", CharField()))), "C")
    drawn = month_results.annotate(key=order).order_by("key").values_list(*columns)[:wanted]
    disagreements = month_results.filter(review__agrees=False).values_list(*columns)
    reasons = {**{row: ReviewSample.Reason.DISAGREEMENT for row in disagreements},
               **{row: ReviewSample.Reason.RANDOM for row in drawn}}
    ReviewSample.objects.bulk_create(
        [ReviewSample(analysis_id=analysis_id, organization_id=organization_id, region_id=region_id,
                      service=service, month=start, reason=reason)
         for (analysis_id, organization_id, region_id), reason in reasons.items()],
        ignore_conflicts=True,
    )
    return list(ReviewSample.objects.filter(service=service, month=start).order_by("id"))


# --- monthly metrics ------------------------------------------------------------------------------------------


@dataclass
class ScoreCounts:
    """A cell's results in a month: how many, how many the service called pathological, and the histogram
    of all their scores (results without a score are counted, not binned)."""

    results: int = 0
    positives: int = 0
    scores: np.ndarray | None = None

    def add(self, *, pathology: bool | None, score_bin: int | None, count: int) -> None:
        self.results += count
        self.positives += count if pathology else 0
        if score_bin is not None:
            if self.scores is None:
                self.scores = np.zeros(HISTOGRAM_BINS + 1, dtype=np.int64)
            self.scores[score_bin] += count

    def histogram(self) -> ScoreHistogram | None:
        """The scores as a ScoreHistogram (labels do not matter to the PSI: all count as negatives)."""
        if self.scores is None:
            return None
        empty = [0] * (HISTOGRAM_BINS + 1)
        return ScoreHistogram.from_dict({"bins": HISTOGRAM_BINS, "positives": empty, "negatives": self.scores})


def _score_counts(queryset: QuerySet[Analysis]) -> dict[Cell, ScoreCounts]:
    """One GROUP BY over the results: counts per service, region, decision and score bin, plus the nation.

    The binning happens in PostgreSQL, so a million results come back as a few thousand rows. Only the
    PSI reads these bins, comparing two months binned alike, so plain floor(p x bins) suffices.
    """
    score_bin = Cast(Floor(F("probability") * HISTOGRAM_BINS), IntegerField())  # NULL without a score
    rows = (queryset.order_by().annotate(score_bin=score_bin)
            .values_list("service_id", "region_id", "pathology", "score_bin").annotate(n=Count("id")))
    cells: dict[Cell, ScoreCounts] = defaultdict(ScoreCounts)
    for service_id, region_id, pathology, score_bin, n in rows:
        clipped = None if score_bin is None else min(max(score_bin, 0), HISTOGRAM_BINS)
        for cell in ((service_id, region_id), (service_id, None)):
            cells[cell].add(pathology=pathology, score_bin=clipped, count=n)
    return cells


@dataclass(frozen=True)
class Verdicts:
    """The reviewed results of a month, one entry each, as arrays (NaN where the column is NULL)."""

    service: np.ndarray
    region: np.ndarray
    score: np.ndarray
    decision: np.ndarray
    truth: np.ndarray
    localisation: np.ndarray

    @classmethod
    def of(cls, queryset: QuerySet[Analysis]) -> "Verdicts":
        """One query: the month's results joined with their reviews."""
        rows = list(queryset.filter(review__isnull=False).order_by().values_list(
            "service_id", "region_id", "probability", "pathology", "review__true_pathology",
            "review__localisation_correct"))
        columns = zip(*rows, strict=True) if rows else [()] * 6
        return cls(*(np.array(column, dtype=float) for column in columns))

    def cell(self, cell: Cell) -> "Verdicts":
        service_id, region_id = cell
        mask = self.service == service_id
        if region_id is not None:
            mask &= self.region == region_id
        return Verdicts(*(getattr(self, field.name)[mask] for field in fields(self)))


def _discrimination(truth: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """AUROC and its DeLong 95 % CI; None unless each class has two reviewed results (DeLong's minimum)."""
    positives = int(truth.sum())
    if min(positives, truth.size - positives) < 2:
        return {"auroc": None, "auroc_ci_low": None, "auroc_ci_high": None}
    low, high = auc_confidence_interval(truth, scores)
    return {"auroc": roc_auc(truth, scores), "auroc_ci_low": low, "auroc_ci_high": high}


def _verdict_metrics(verdicts: Verdicts) -> dict:
    """Everything that needs the radiologists' verdicts, for one cell."""
    truth = verdicts.truth.astype(bool)
    scored = ~np.isnan(verdicts.score)
    decided = ~np.isnan(verdicts.decision)
    values = {"reviewed": int(truth.size), "reviewed_positive": int(truth.sum()),
              **_discrimination(truth[scored], verdicts.score[scored])}
    point = (operating_point_from_decisions(truth[decided], verdicts.decision[decided].astype(bool))
             if decided.any() else None)
    for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        values[name] = getattr(point, name) if point else None
    judged = (verdicts.decision == 1) & ~np.isnan(verdicts.localisation)
    values["localisation_accuracy"] = float(verdicts.localisation[judged].mean()) if judged.any() else None
    # Clipped: one out-of-range score (a broken result, for technological monitoring) must not stop the month.
    values["histogram"] = (ScoreHistogram.from_scores(truth[scored], np.clip(verdicts.score[scored], 0, 1),
                                                      HISTOGRAM_BINS).to_dict() if scored.any() else {})
    return values


@dataclass(frozen=True)
class Drift:
    """A cell's month against its baseline month."""

    baseline_month: dt.date
    shift: Shift
    psi: float | None

    @property
    def rate_drifted(self) -> bool:
        """Significant (z-test) and large enough to matter: at a million results a month the test alone
        would call a change of a fraction of a percentage point significant."""
        minimum = getattr(settings, "QUALITY_DRIFT_MIN_RATE_CHANGE", 0.02)
        return self.shift.drifted and abs(self.shift.difference) >= minimum

    @property
    def score_drifted(self) -> bool:
        return self.psi is not None and self.psi > PSI_LIMIT


def _drift(current: ScoreCounts, baseline: tuple[dt.date, ScoreCounts] | None) -> Drift | None:
    """None when there is no baseline yet, or too few results this month to judge."""
    if baseline is None or current.results < settings.QUALITY_MIN_RESULTS:
        return None
    month, reference = baseline
    shift = positive_rate_shift(reference.positives, reference.results, current.positives, current.results)
    now, then = current.histogram(), reference.histogram()
    psi = now.psi_against(then, bins=PSI_BINS) if now is not None and then is not None else None
    return Drift(baseline_month=month, shift=shift, psi=psi)


def _baselines(service_ids: set[int], before: dt.date) -> dict[Cell, tuple[dt.date, ScoreCounts]]:
    """Each cell's baseline month (its first with >= QUALITY_MIN_RESULTS results before `before`) and the
    results of that month: one query for the monthly counts, then one per distinct baseline month."""
    monthly = (results().filter(service_id__in=service_ids, finished_at__lt=_utc_midnight(before)).order_by()
               .annotate(month=TruncMonth("finished_at", tzinfo=dt.UTC))
               .values_list("service_id", "region_id", "month").annotate(n=Count("id")))
    counts: dict[Cell, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    for service_id, region_id, month, n in monthly:
        for cell in ((service_id, region_id), (service_id, None)):
            counts[cell][month.date()] += n
    first = {cell: min(month for month, n in by_month.items() if n >= settings.QUALITY_MIN_RESULTS)
             for cell, by_month in counts.items() if max(by_month.values()) >= settings.QUALITY_MIN_RESULTS}
    baselines = {}
    for month in sorted(set(first.values())):
        cells = [cell for cell, first_month in first.items() if first_month == month]
        month_counts = _score_counts(results_in(month).filter(service_id__in={cell[0] for cell in cells}))
        baselines.update({cell: (month, month_counts[cell]) for cell in cells})
    return baselines


METRIC_FIELDS = [
    "results", "positives", "reviewed", "reviewed_positive", "auroc", "auroc_ci_low", "auroc_ci_high", "sensitivity",
    "specificity", "ppv", "npv", "accuracy", "localisation_accuracy", "positive_rate_drift", "score_drift",
    "score_psi", "histogram", "computed_at",
]


@transaction.atomic
def month_metrics_recompute(*, month: dt.date, service: AIService | None = None) -> list[ServiceMonthMetrics]:
    """Recompute the metrics of a month for every service with results in it (or one service), per region
    and nationally, from the results and their reviews; raise a drift alert once per cell and month.

    A handful of queries whatever the volume: the month's counts and score bins (GROUP BY), its reviewed
    results, the baselines. Rows are upserted; a cell left without results loses its row. Needs the
    national scope: a system job (`inference.quality.clinical_tasks`).
    """
    start = month_start(month)
    month_results = results_in(start) if service is None else results_in(start).filter(service=service)
    counts = _score_counts(month_results)
    verdicts = Verdicts.of(month_results)
    baselines = _baselines({service_id for service_id, _ in counts}, start)
    rows, drifts = [], {}
    for cell, cell_counts in counts.items():
        drift = _drift(cell_counts, baselines.get(cell))
        rows.append(ServiceMonthMetrics(
            service_id=cell[0], region_id=cell[1], month=start, results=cell_counts.results,
            positives=cell_counts.positives, positive_rate_drift=bool(drift and drift.rate_drifted),
            score_drift=bool(drift and drift.score_drifted), score_psi=drift.psi if drift else None,
            **_verdict_metrics(verdicts.cell(cell)),
        ))
        if drift and (drift.rate_drifted or drift.score_drifted):
            drifts[cell] = drift
    ServiceMonthMetrics.objects.bulk_create(rows, update_conflicts=True, unique_fields=["service", "region", "month"],
                                            update_fields=METRIC_FIELDS)
    _stale_rows_delete(start, service, kept=set(counts))
    _drift_alerts(start, drifts)
    return list(ServiceMonthMetrics.objects.filter(month=start, service_id__in={s for s, _ in counts})
                .select_related("service", "region").order_by("service__code", "region__code"))


def _stale_rows_delete(month: dt.date, service: AIService | None, *, kept: set[Cell]) -> None:
    """A cell whose results were all recalled (or moved) since the last recompute has no metrics any more."""
    existing = ServiceMonthMetrics.objects.filter(month=month)
    if service is not None:
        existing = existing.filter(service=service)
    stale = [row_id for row_id, service_id, region_id in existing.values_list("id", "service_id", "region_id")
             if (service_id, region_id) not in kept]
    if stale:
        ServiceMonthMetrics.objects.filter(id__in=stale).delete()


def _drift_message(service: AIService, region: Region | None, month: dt.date, drift: Drift) -> str:
    where = f"в регионе {region.code}" if region else "по стране"
    shift = drift.shift
    parts = [f"доля положительных решений {shift.current_rate:.1%} против {shift.baseline_rate:.1%} "
             f"(p = {shift.p_value:.2g})"]
    if drift.psi is not None:
        parts.append(f"PSI распределения оценок {drift.psi:.2f} (порог {PSI_LIMIT:g})")
    return (f"Дрейф сервиса {service.code} {where} за {month:%m.%Y} относительно базового месяца "
            f"{drift.baseline_month:%m.%Y}: {'; '.join(parts)}.")[:1000]


def _drift_alerts(month: dt.date, drifts: dict[Cell, Drift]) -> None:
    """One alert per drifted cell and month: a recompute that finds the drift again raises nothing new."""
    services = AIService.objects.in_bulk({service_id for service_id, _ in drifts})
    regions = Region.objects.in_bulk({region_id for _, region_id in drifts if region_id is not None})
    for (service_id, region_id), drift in drifts.items():
        region = regions.get(region_id)
        _, created = QualityAlert.objects.get_or_create(
            service_id=service_id, region_id=region_id, month=month, kind=QualityAlert.Kind.DRIFT,
            defaults={"message": _drift_message(services[service_id], region, month, drift),
                      "value": drift.psi if drift.score_drifted else drift.shift.difference},
        )
        if created:
            logger.warning("drift of service %s, region %s, %s", service_id, region_id, month)


@transaction.atomic
def alert_acknowledge(*, alert: QualityAlert, principal: Principal) -> QualityAlert:
    """The operator has seen an alert. Acknowledging it again changes nothing: the first acknowledgement stands."""
    alert = QualityAlert.objects.select_for_update().get(id=alert.id)
    if alert.acknowledged_at is None:
        alert.acknowledged_by, alert.acknowledged_at = principal.subject, timezone.now()
        alert.save(update_fields=["acknowledged_by", "acknowledged_at"])
    return alert


# --- selectors ------------------------------------------------------------------------------------------------


def _regional(principal: Principal, queryset: QuerySet) -> QuerySet:
    """Cross-tenant aggregates (metrics, alerts): the nation sees every row; a region its own rows only, never
    the national one (the nation minus the region would be the other regions' figures, which for a service
    used in two regions is the other region's); an organization none (a region's row aggregates its
    neighbours' results)."""
    if principal.scope is Scope.NATIONAL:
        return queryset
    if principal.scope is Scope.REGION:
        return queryset.filter(region_id=principal.region_id)
    return queryset.none()


def metrics_visible(*, principal: Principal) -> QuerySet[ServiceMonthMetrics]:
    return _regional(principal, ServiceMonthMetrics.objects.select_related("service", "region")).order_by(
        "service__code", "month", F("region__code").asc(nulls_first=True))


def alerts_visible(*, principal: Principal) -> QuerySet[QualityAlert]:
    return _regional(principal, QualityAlert.objects.select_related("service", "region"))


def reviewable_analysis(*, principal: Principal, analysis_id: int) -> Analysis | None:
    """A result the caller may see; a shadow result was never delivered, so it is not found."""
    return principal.scoped(Analysis.objects.select_related("study", "service")).filter(
        id=analysis_id, shadow=False).first()


def reviews_visible(*, principal: Principal) -> QuerySet[Review]:
    return principal.scoped(Review.objects.select_related("analysis__study", "service"))


def review_sample_visible(*, principal: Principal) -> QuerySet[ReviewSample]:
    """The sample at the caller's scope, with whether each result has been reviewed yet."""
    reviewed = Exists(Review.objects.filter(analysis_id=OuterRef("analysis_id")))
    return principal.scoped(ReviewSample.objects.select_related("analysis__study", "service")).annotate(
        reviewed=reviewed).order_by("month", "service__code", "id")


def defect_rates(
    *, principal: Principal, month_from: dt.date, month_to: dt.date, service: str | None = None,
    region: str | None = None,
) -> list[dict]:
    """Finished results (succeeded or failed, not in shadow) per service, region and month at the caller's
    scope, with how many had a defect of each severity; "defective" is critical or major, as for the
    defect-rate alerts."""
    finished = principal.scoped(Analysis.objects.filter(
        service__isnull=False, shadow=False, status__in=(Analysis.Status.SUCCEEDED, Analysis.Status.FAILED),
        finished_at__gte=_utc_midnight(month_start(month_from)),
        finished_at__lt=_utc_midnight(_next_month(month_start(month_to))),
    ))
    if service:
        finished = finished.filter(service__code=service)
    if region:
        finished = finished.filter(region__code=region)
    has = {f"has_{severity}": Exists(Defect.objects.filter(analysis_id=OuterRef("id"), severity=severity))
           for severity in Severity}
    rows = (finished.order_by().annotate(month=TruncMonth("finished_at", tzinfo=dt.UTC), **has)
            .values("service__code", "region__code", "month")
            .annotate(results=Count("id"),
                      defective=Count("id", filter=Q(has_critical=True) | Q(has_major=True)),
                      **{severity.value: Count("id", filter=Q(**{f"has_{severity}": True})) for severity in Severity})
            .order_by("service__code", "month", "region__code"))
    return [{"service": row["service__code"], "region": row["region__code"], "month": row["month"].strftime("%Y-%m"),
             "results": row["results"], "defective": row["defective"],
             **{severity.value: row[severity.value] for severity in Severity},
             "defect_rate": row["defective"] / row["results"]} for row in rows]
