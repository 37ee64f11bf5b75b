"""Listeners to other apps' signals; light on imports, as every process (web too) loads them."""

from billing import services


def bill_finished_analysis(*, analysis, **_) -> None:
    """`inference.signals.analysis_finished`: charge the study if the analysis succeeded."""
    services.analysis_bill(analysis=analysis)


def reverse_recalled_analysis(*, analysis, reason: str, **_) -> None:
    """`inference.signals.analysis_recalled`: a withdrawn result is not paid for."""
    services.analysis_charge_reverse(analysis=analysis, reason=f"Отзыв результата ИИ: {reason}")
