"""Web sign-in through Keycloak (OIDC authorization-code flow, via mozilla-django-oidc).

The access token from the code exchange is validated like any bearer token and its roles and groups
are copied onto the local user's Membership, so a session-authenticated page sees the same scope
as an API call with that token.
"""

from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from medai.accounts.keycloak import InvalidToken, NotPermitted, configured_realm, principal_from_claims, validate_token
from medai.accounts.models import Membership
from medai.accounts.principal import Principal


class KeycloakOIDCBackend(OIDCAuthenticationBackend):
    def get_userinfo(self, access_token, id_token, payload) -> dict:
        return validate_token(access_token, configured_realm())

    def verify_claims(self, claims) -> bool:
        try:
            principal_from_claims(claims)
        except (NotPermitted, InvalidToken):
            return False
        return True

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=_username(claims))

    def create_user(self, claims):
        user = self.UserModel.objects.create_user(_username(claims), email=claims.get("email", ""))
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        user.first_name = claims.get("given_name", "")[:150]
        user.last_name = claims.get("family_name", "")[:150]
        user.email = claims.get("email", "")
        user.set_unusable_password()  # only Keycloak signs this user in
        user.save()
        principal = principal_from_claims(claims)
        Membership.objects.update_or_create(user=user, defaults=_membership_fields(principal))
        return user


def _username(claims: dict) -> str:
    return claims.get("preferred_username") or claims["sub"]


def _membership_fields(principal: Principal) -> dict:
    return {"role": principal.role, "region_id": principal.region_id, "organization_id": principal.organization_id}
