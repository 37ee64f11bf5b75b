"""Bearer-token authentication for the API and DICOMweb: `Authorization: Bearer <token>`."""

from django.utils import timezone
from rest_framework import authentication, exceptions

from medai.accounts.models import ApiToken, hash_token
from medai.accounts.principal import Principal


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Sets `request.user` to the token's user and `request.auth` to its `Principal`."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        token = (
            ApiToken.objects.select_related("user__membership")
            .filter(key_hash=hash_token(header[1]), user__is_active=True)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("Token expired.")
        membership = getattr(token.user, "membership", None)
        if membership is None:
            raise exceptions.AuthenticationFailed("The user has no role on this platform.")
        principal = Principal(
            subject=token.user.get_username(),
            role=membership.role,
            region_id=membership.region_id,
            organization_id=membership.organization_id,
        )
        return token.user, principal

    def authenticate_header(self, request) -> str:
        return self.keyword
