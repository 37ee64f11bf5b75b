"""The caller of a request or task: who they are, their roles, and the tenants they may see."""

from dataclasses import dataclass
from enum import StrEnum

from django.db.models import QuerySet

from medai.accounts.models import Role

# When a caller holds several roles, `Principal.role` names the first of these it holds.
ROLE_PRECEDENCE = (
    Role.PLATFORM_ADMIN,
    Role.MINISTRY_ANALYST,
    Role.REGIONAL_ADMIN,
    Role.ORG_ADMIN,
    Role.FINANCE,
    Role.RADIOLOGIST,
    Role.UPLOADER,
)


class Scope(StrEnum):
    NATIONAL = "national"
    REGION = "region"
    ORGANIZATION = "organization"


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[Role]
    region_id: int | None = None
    organization_id: int | None = None
    client_id: str = ""

    @property
    def role(self) -> Role:
        return next(role for role in ROLE_PRECEDENCE if role in self.roles)

    def has_role(self, *roles: Role) -> bool:
        return not self.roles.isdisjoint(roles)

    @property
    def scope(self) -> Scope:
        if self.organization_id is not None:
            return Scope.ORGANIZATION
        if self.region_id is not None:
            return Scope.REGION
        return Scope.NATIONAL

    def scoped(self, queryset: QuerySet) -> QuerySet:
        """Narrow a queryset of tenant-owned rows (with `organization` and `region`) to what this caller may see."""
        if self.scope is Scope.ORGANIZATION:
            return queryset.filter(organization_id=self.organization_id)
        if self.scope is Scope.REGION:
            return queryset.filter(region_id=self.region_id)
        return queryset


def principal_of_member(user) -> Principal | None:
    """The principal of a signed-in user (API token or web session), from their membership; None without one."""
    membership = getattr(user, "membership", None)
    if membership is None:
        return None
    return Principal(subject=user.get_username(), roles=frozenset({membership.role}),
                     region_id=membership.region_id, organization_id=membership.organization_id)


# The caller of views run without a request's credentials: drf-spectacular builds the OpenAPI schema that
# way. Scoped to an organization that does not exist, it sees nothing.
NOBODY = Principal(subject="", roles=frozenset(), region_id=-1, organization_id=-1)
