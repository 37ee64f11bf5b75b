"""Listeners to other apps' signals; light on imports, as every process (web too) loads them."""

from inference import services


def route_completed_study(*, study_id: int, organization_id: int, **_) -> None:
    """`archive.signals.study_completed`: route the study to AI, inside the completion task's scope."""
    services.study_route(study_id=study_id)


def check_finished_analysis(*, analysis, **_) -> None:
    """`inference.signals.analysis_finished`: record the defects that show at the end (late, exchange
    errors); after a critical defect, let a system task judge the service's streak."""
    from django.db import transaction

    from inference.quality.services import finished_analysis_check, has_critical_defect
    from inference.quality.tasks import critical_streak

    finished_analysis_check(analysis=analysis)
    if analysis.service_id and has_critical_defect(analysis):
        transaction.on_commit(lambda: critical_streak.delay(analysis.service_id))
