"""Bearer authentication for the API and DICOMweb: `Authorization: Bearer <token>`.

A Keycloak access token (a JWT) when KEYCLOAK_URL is set, or a platform API token (the embedded
default, and scripts). Either way `request.user` is set and `request.auth` is the `Principal`.
Every refused attempt is logged to `medai.security`, without the token itself.
"""

import logging

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions

from medai.accounts.keycloak import InvalidToken, NotPermitted, configured_realm, principal_from_claims, validate_token
from medai.accounts.models import ApiToken, hash_token
from medai.accounts.principal import principal_of_member
from tenants.models import MedicalOrganization
from tenants.scope import scope_to_principal

security_log = logging.getLogger("medai.security")


class TokenUser(AnonymousUser):
    """The user of a Keycloak token: authenticated, but with no row in Django's user table."""

    def __init__(self, username: str) -> None:
        self.username = username

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.username


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise self._refuse(request, "malformed Authorization header")
        raw = header[1]
        realm = configured_realm()
        if realm is not None and raw.count(".") == 2:
            user, principal = self._authenticate_jwt(request, raw, realm)
        else:
            user, principal = self._authenticate_api_token(request, raw)
        # The request's transaction (ATOMIC_REQUESTS) now sees only this caller's tenants.
        scope_to_principal(principal)
        return user, principal

    def authenticate_header(self, request) -> str:
        return self.keyword

    def _authenticate_jwt(self, request, raw: str, realm):
        try:
            principal = principal_from_claims(validate_token(raw, realm))
        except InvalidToken as exc:
            raise self._refuse(request, f"invalid token: {exc}") from exc
        except NotPermitted as exc:
            raise self._forbid(request, str(exc)) from exc
        return TokenUser(principal.subject), principal

    def _authenticate_api_token(self, request, raw: str):
        token = (
            ApiToken.objects.select_related("user__membership__organization")
            .filter(key_hash=hash_token(raw), user__is_active=True)
            .first()
        )
        if token is None:
            raise self._refuse(request, "unknown API token")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise self._refuse(request, f"expired API token of {token.user.get_username()}")
        membership = getattr(token.user, "membership", None)
        if membership is None:
            raise self._forbid(request, f"{token.user.get_username()} has no role on this platform")
        organization = membership.organization
        if organization is not None and organization.status == MedicalOrganization.Status.SUSPENDED:
            raise self._forbid(request, f"organization {organization.oms_code} is suspended")
        return token.user, principal_of_member(token.user)

    @staticmethod
    def _refuse(request, reason: str) -> exceptions.AuthenticationFailed:
        _log_refusal(request, 401, reason)
        return exceptions.AuthenticationFailed(reason[:200])

    @staticmethod
    def _forbid(request, reason: str) -> exceptions.PermissionDenied:
        _log_refusal(request, 403, reason)
        return exceptions.PermissionDenied(reason[:200])


def _log_refusal(request, status: int, reason: str) -> None:
    security_log.warning(
        "authentication refused status=%s path=%s client=%s reason=%s",
        status, request.path, request.META.get("REMOTE_ADDR", ""), reason,
    )
