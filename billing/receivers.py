"""Listeners to other apps' signals; light on imports, as every process (web too) loads them."""

from billing import services


def bill_finished_analysis(*, analysis, **_) -> None:
    """`inference.signals.analysis_finished`: charge the study if the analysis succeeded."""
    services.analysis_bill(analysis=analysis)
