"""Role checks for views: `HasRole(...)` for a whole view, `require_role` inside an action."""

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from medai.accounts.models import Role
from medai.accounts.principal import Principal


def require_role(principal: Principal, *roles: Role) -> None:
    if not principal.has_role(*roles):
        raise PermissionDenied(f"This needs one of the roles: {', '.join(roles)}.")


def HasRole(*roles: Role) -> type[BasePermission]:
    class _HasRole(BasePermission):
        message = f"This needs one of the roles: {', '.join(roles)}."

        def has_permission(self, request, view) -> bool:
            return request.auth is not None and request.auth.has_role(*roles)

    return _HasRole
