"""Which AI services a completed study goes to: every active service enabled for its organization whose
rules (modality, body part, SOP class) match one of its series. Views, slice counts and the like are
the input audit's business (inference.profiles), which runs per analysis and answers with a reason."""

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from inference.records import AIService
from medai.archive.models import Series, Study

# DICOM Requested Procedure Priority (0040,1003) values that put a study at the head of every queue.
URGENT_PRIORITIES = {"STAT", "HIGH"}
REQUESTED_PROCEDURE_PRIORITY = "00401003"


@dataclass(frozen=True)
class Route:
    service: AIService
    series: list[Series]


def services_enabled_for(*, organization_id: int, region_id: int) -> QuerySet[AIService]:
    """Active services switched on for the organization itself or for its whole region. A service in
    shadow is never routed to on its own: it follows the service it shadows (`shadows_of`)."""
    return (
        AIService.objects.filter(status=AIService.Status.ACTIVE, shadow_of__isnull=True)
        .filter(Q(enabled_organizations__id=organization_id) | Q(enabled_regions__id=region_id))
        .distinct()
        .order_by("code")
    )


def routes_for(study: Study) -> list[Route]:
    """The services the study goes to, each with the series it will read. Empty: not routed."""
    series = list(study.series.all())
    routes = []
    for service in services_enabled_for(organization_id=study.organization_id, region_id=study.region_id):
        matching = [s for s in series if _series_matches(service, s)]
        if matching:
            routes.append(Route(service=service, series=matching))
    return routes


def shadows_of(service: AIService) -> QuerySet[AIService]:
    """The active new versions running in shadow beside a service: they see the same studies."""
    return service.shadows.filter(status=AIService.Status.ACTIVE).order_by("code")


def not_routed_reason(study: Study) -> str:
    """Why nothing matched, in Russian, naming what the study holds so the clinic can act on it."""
    held = ", ".join(
        sorted({f"{s.modality} {s.body_part_examined}".strip() for s in study.series.all()})
    ) or "нет серий"
    return (
        f"Нет подключённого сервиса ИИ для этого исследования ({held}). "
        "Исследование передано врачу-рентгенологу без анализа ИИ."
    )


def _series_matches(service: AIService, series: Series) -> bool:
    if series.modality not in service.modalities:
        return False
    body_part = series.body_part_examined.upper()
    if service.body_parts and body_part and body_part not in {b.upper() for b in service.body_parts}:
        return False
    if service.sop_classes:
        return series.instances.filter(sop_class_uid__in=service.sop_classes).exists()
    return True


def study_is_urgent(study: Study) -> bool:
    """A study is urgent when any of its instances says its requested procedure is STAT or HIGH."""
    first = study.instances.order_by("id").values_list("metadata", flat=True).first() or {}
    values = first.get(REQUESTED_PROCEDURE_PRIORITY, {}).get("Value", [])
    return bool(values) and str(values[0]).upper() in URGENT_PRIORITIES
