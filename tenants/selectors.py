"""Reads of tenants through the caller's scope: a region or organization outside it does not exist."""

from django.db.models import QuerySet

from medai.accounts.principal import Principal, Scope
from tenants.models import MedicalOrganization, Region


def regions_visible(*, principal: Principal) -> QuerySet[Region]:
    if principal.scope is Scope.NATIONAL:
        return Region.objects.all()
    return Region.objects.filter(id=principal.region_id)


def organizations_visible(*, principal: Principal) -> QuerySet[MedicalOrganization]:
    queryset = MedicalOrganization.objects.select_related("region")
    if principal.scope is Scope.ORGANIZATION:
        return queryset.filter(id=principal.organization_id)
    if principal.scope is Scope.REGION:
        return queryset.filter(region_id=principal.region_id)
    return queryset
