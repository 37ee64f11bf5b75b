"""Listeners that keep the daily counts live, each in the transaction (and tenant scope) of its event,
so a count commits with what it counts or not at all."""

from medai.stats import counts


def count_routed_study(*, study_id: int, **_) -> None:
    """`inference.signals.study_routed`: the study, and its *not routed* analysis if routing found no service.
    Sent once per study (not on `study_completed`, whose task a worker crash re-runs)."""
    counts.counts_add(stats=counts.STUDY_STATS, key=study_id)


def count_finished_analysis(*, analysis, **_) -> None:
    """`inference.signals.analysis_finished`: the outcome, processing time and defects of the result."""
    counts.counts_add(stats=counts.ANALYSIS_STATS, key=analysis.id)


def count_review(*, review, **_) -> None:
    """`inference.signals.review_recorded`: a radiologist's verdict, and whether it disagrees."""
    counts.counts_add(stats=counts.REVIEW_STATS, key=review.id)


def count_billed_service(*, service, counted: bool = False, **_) -> None:
    """`billing.signals.service_billed`: money billed (a reversal's amount is negative). A charge billed at
    once comes `counted`: `billing.services.analysis_bill` added it as BILLING_STATS does, in its own call."""
    if not counted:
        counts.counts_add(stats=counts.BILLING_STATS, key=service.id)
