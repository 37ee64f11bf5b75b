"""Reads of the archive, always through the caller's scope: another tenant's study simply does not exist."""

from django.db.models import QuerySet

from medai.accounts.principal import Principal
from medai.archive.models import Instance, Series, Study, StudyAccess


def studies_visible(*, principal: Principal) -> QuerySet[Study]:
    return principal.scoped(Study.objects.all())


def series_visible(*, principal: Principal, study_uid: str | None = None) -> QuerySet[Series]:
    queryset = principal.scoped(Series.objects.select_related("study"))
    if study_uid is not None:
        queryset = queryset.filter(study__study_instance_uid=study_uid)
    return queryset


def instances_visible(
    *,
    principal: Principal,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> QuerySet[Instance]:
    queryset = principal.scoped(Instance.objects.select_related("series", "study"))
    if study_uid is not None:
        queryset = queryset.filter(study__study_instance_uid=study_uid)
    if series_uid is not None:
        queryset = queryset.filter(series__series_instance_uid=series_uid)
    if sop_uid is not None:
        queryset = queryset.filter(sop_instance_uid=sop_uid)
    return queryset


def study_access_visible(*, principal: Principal) -> QuerySet[StudyAccess]:
    return principal.scoped(StudyAccess.objects.select_related("organization", "region")).order_by("-at", "-id")
