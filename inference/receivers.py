"""Listeners to other apps' signals; light on imports, as every process (web too) loads them."""

from inference import services


def route_completed_study(*, study_id: int, organization_id: int, **_) -> None:
    """`archive.signals.study_completed`: route the study to AI, inside the completion task's scope."""
    services.study_route(study_id=study_id)
