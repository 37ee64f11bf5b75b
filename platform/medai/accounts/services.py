"""Writes for accounts: users with a role at a scope, and their API tokens."""

import secrets
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from medai.accounts.models import ApiToken, Membership, Role, hash_token
from tenants.models import MedicalOrganization, Region


@transaction.atomic
def user_ensure(
    *,
    username: str,
    role: Role,
    password: str | None = None,
    region: Region | None = None,
    organization: MedicalOrganization | None = None,
):
    """Create or update a user with exactly one membership; an organization implies its region."""
    if organization is not None:
        region = organization.region
    user, _ = get_user_model().objects.get_or_create(username=username)
    if password is not None:
        user.set_password(password)
        user.save()
    Membership.objects.update_or_create(
        user=user, defaults={"role": role, "region": region, "organization": organization}
    )
    return user


def api_token_create(*, user, name: str = "default", expires_at: datetime | None = None) -> str:
    """Issue a token and return it in clear: the only time it is seen."""
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name=name, key_hash=hash_token(raw), expires_at=expires_at)
    return raw
