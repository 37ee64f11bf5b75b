"""Reads of AI analysis through the caller's scope."""

from django.db.models import F, Q, QuerySet

from inference.records import AIService, Analysis, WorklistEntry
from medai.accounts.principal import Principal, Scope


def services_visible(*, principal: Principal) -> QuerySet[AIService]:
    """The nation sees the whole registry; a region the services enabled in it or in any of its
    organizations; an organization those enabled for it or for its region."""
    queryset = AIService.objects.prefetch_related("enabled_regions", "enabled_organizations",
                                                  "autonomous_organizations")
    if principal.scope is Scope.REGION:
        queryset = queryset.filter(
            Q(enabled_regions__id=principal.region_id) | Q(enabled_organizations__region_id=principal.region_id)
        )
    elif principal.scope is Scope.ORGANIZATION:
        queryset = queryset.filter(
            Q(enabled_regions__id=principal.region_id) | Q(enabled_organizations__id=principal.organization_id)
        )
    return queryset.distinct().order_by("code")


def analyses_of_study(*, principal: Principal, study_uid: str) -> QuerySet[Analysis]:
    return principal.scoped(
        Analysis.objects.select_related("service", "study").prefetch_related("defects")
        .filter(study__study_instance_uid=study_uid, shadow=False)
    ).order_by("id")


def worklist_visible(*, principal: Principal) -> QuerySet[WorklistEntry]:
    """Urgent first, then studies AI flagged, by falling probability, then the oldest."""
    return principal.scoped(WorklistEntry.objects.select_related("study")).order_by(
        F("urgent").desc(), F("ai_flagged").desc(), F("ai_probability").desc(nulls_last=True), "created_at", "id"
    )
