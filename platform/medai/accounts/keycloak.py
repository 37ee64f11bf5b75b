"""Validating Keycloak access tokens and mapping their claims to a Principal.

Tokens are RS256 JWTs signed by the realm. Keys come from the realm's JWKS, cached, and fetched
again when a token names a key id the cache lacks (Keycloak rotated its keys). Groups carry the
scope (`/national`, `/regions/<region code>`, `/regions/<region code>/<OMS code>`), realm roles
carry the roles.
"""

import functools
import logging
from dataclasses import dataclass

import jwt
from django.conf import settings

from medai.accounts.models import Role
from medai.accounts.principal import Principal
from tenants.models import MedicalOrganization, Region

logger = logging.getLogger("medai.security")

NATIONAL_GROUP = "/national"
REGIONS_GROUP = "/regions"


class InvalidToken(Exception):
    """The token is not one this platform accepts (signature, issuer, audience, lifetime)."""


class NotPermitted(Exception):
    """A valid token whose holder has no role or scope here, or whose organization is suspended."""


@dataclass(frozen=True)
class KeycloakRealm:
    url: str
    realm: str
    audience: str

    @property
    def issuer(self) -> str:
        return f"{self.url.rstrip('/')}/realms/{self.realm}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"


@functools.cache
def _jwks_client(jwks_url: str, cooldown_seconds: float) -> jwt.PyJWKClient:
    # PyJWKClient caches the key set and refetches it when a `kid` is unknown, at most once per
    # cooldown, so a flood of made-up kids cannot turn into a flood of requests to Keycloak.
    return jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5, cooldown_duration=cooldown_seconds)


def configured_realm() -> KeycloakRealm | None:
    if not settings.KEYCLOAK_URL:
        return None
    return KeycloakRealm(settings.KEYCLOAK_URL, settings.KEYCLOAK_REALM, settings.KEYCLOAK_CLIENT_ID)


def validate_token(token: str, realm: KeycloakRealm) -> dict:
    """The token's claims if it is a current RS256 token of the realm meant for this platform."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        jwks = _jwks_client(realm.jwks_url, settings.KEYCLOAK_JWKS_COOLDOWN_SECONDS)
        key = jwks.get_signing_key(header.get("kid", ""))
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            issuer=realm.issuer,
            options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
            leeway=settings.KEYCLOAK_LEEWAY_SECONDS,
        )
    except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
        raise InvalidToken(str(exc)) from exc
    audiences = claims.get("aud", [])
    audiences = [audiences] if isinstance(audiences, str) else audiences
    if realm.audience not in audiences and claims.get("azp") != realm.audience:
        raise InvalidToken("the token is not meant for this platform (aud/azp)")
    return claims


def principal_from_claims(claims: dict) -> Principal:
    """Roles from the realm roles, scope from the narrowest group; refuses suspended organizations."""
    roles = frozenset(Role(r) for r in claims.get("realm_access", {}).get("roles", []) if r in Role.values)
    if not roles:
        raise NotPermitted("the token carries no platform role")
    region, organization = _scope_of(claims.get("groups", []))
    if organization is not None and organization.status == MedicalOrganization.Status.SUSPENDED:
        raise NotPermitted(f"organization {organization.oms_code} is suspended")
    return Principal(
        subject=claims.get("preferred_username") or claims["sub"],
        roles=roles,
        region_id=region.id if region else None,
        organization_id=organization.id if organization else None,
        client_id=claims.get("azp", ""),
    )


def _scope_of(groups: list[str]) -> tuple[Region | None, MedicalOrganization | None]:
    paths = [g.rstrip("/").split("/")[1:] for g in groups if g.startswith(REGIONS_GROUP + "/")]
    org_paths = [p for p in paths if len(p) == 3]
    if org_paths:
        _, region_code, oms_code = org_paths[0]
        organization = (
            MedicalOrganization.objects.select_related("region")
            .filter(oms_code=oms_code, region__code=region_code)
            .first()
        )
        if organization is None:
            raise NotPermitted(f"unknown organization {oms_code}")
        return organization.region, organization
    region_paths = [p for p in paths if len(p) == 2]
    if region_paths:
        region = Region.objects.filter(code=region_paths[0][1]).first()
        if region is None:
            raise NotPermitted(f"unknown region {region_paths[0][1]}")
        return region, None
    if NATIONAL_GROUP in groups:
        return None, None
    raise NotPermitted("the token carries no platform scope group")
