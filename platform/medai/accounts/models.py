"""Memberships tie a user to a role and a tenant scope; API tokens let machines and scripts call the API."""

import hashlib

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    PLATFORM_ADMIN = "platform_admin"
    MINISTRY_ANALYST = "ministry_analyst"
    REGIONAL_ADMIN = "regional_admin"
    ORG_ADMIN = "org_admin"
    RADIOLOGIST = "radiologist"
    UPLOADER = "uploader"
    FINANCE = "finance"


class Membership(models.Model):
    """A user's role at one scope: the nation (no region, no organization), a region, or an organization."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    role = models.CharField(max_length=32, choices=Role.choices)
    region = models.ForeignKey("tenants.Region", null=True, blank=True, on_delete=models.PROTECT)
    organization = models.ForeignKey(
        "tenants.MedicalOrganization", null=True, blank=True, on_delete=models.PROTECT
    )

    class Meta:
        constraints = [
            # An organization-scoped membership always names the organization's region too.
            models.CheckConstraint(
                condition=models.Q(organization__isnull=True) | models.Q(region__isnull=False),
                name="membership_organization_has_region",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role}"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 is stored, so a database dump reveals no usable token."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="default")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} {self.name}"
