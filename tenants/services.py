"""Writes for tenants: onboarding regions and organizations, their identity, suspension, activation.

With KEYCLOAK_URL set, onboarding provisions Keycloak (groups, the PACS client, invited users).
Without it (the embedded default) the same flow creates local users and API tokens.
"""

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from medai.accounts.models import Role
from medai.accounts.services import api_token_create, user_ensure
from medai.archive.models import Study
from tenants.models import MedicalOrganization, Region, SenderCheck, StatusChange
from tenants.sender_check import check_study, report_of


@dataclass(frozen=True)
class PacsCredentials:
    """Shown once, at onboarding: a Keycloak client (id + secret) or, embedded, an API token."""

    client_id: str
    client_secret: str = ""
    api_token: str = ""


def region_ensure(*, code: str, name: str, okato_code: str = "", time_zone: str = "Europe/Moscow") -> Region:
    region, _ = Region.objects.update_or_create(
        code=code, defaults={"name": name, "okato_code": okato_code, "time_zone": time_zone}
    )
    _directory_call(lambda d: d.ensure_group(d.group_path(region=region)))
    return region


def organization_ensure(
    *, region: Region, oms_code: str, name: str, status: str = MedicalOrganization.Status.ACTIVE, **fields
) -> MedicalOrganization:
    """Create or update an organization as given (demo data, tests, imports); no onboarding workflow."""
    organization, _ = MedicalOrganization.objects.update_or_create(
        oms_code=oms_code, defaults={"region": region, "name": name, "status": status, **fields}
    )
    return organization


@transaction.atomic
def organization_onboard(*, region: Region, oms_code: str, name: str, by: str, **fields) -> tuple[
        MedicalOrganization, PacsCredentials]:
    """A new organization in `onboarding` status, with its identity group and the PACS client it uploads with."""
    organization = MedicalOrganization.objects.create(
        region=region, oms_code=oms_code, name=name, status=MedicalOrganization.Status.ONBOARDING, **fields
    )
    StatusChange.objects.create(organization=organization, status=organization.status, changed_by=by,
                                reason="onboarded")
    credentials = _pacs_credentials(organization)
    organization.pacs_client_id = credentials.client_id
    organization.save(update_fields=["pacs_client_id"])
    return organization, credentials


def _pacs_credentials(organization: MedicalOrganization) -> PacsCredentials:
    if settings.KEYCLOAK_URL:
        from tenants.identity import KeycloakDirectory

        created = KeycloakDirectory.from_settings().create_pacs_client(organization)
        return PacsCredentials(client_id=created.client_id, client_secret=created.client_secret)
    username = f"pacs-{organization.region.code.lower()}-{organization.oms_code}"
    user = user_ensure(username=username, role=Role.UPLOADER, organization=organization)
    return PacsCredentials(client_id=username, api_token=api_token_create(user=user, name="pacs"))


def organization_set_status(
    *, organization: MedicalOrganization, status: str, reason: str, by: str
) -> MedicalOrganization:
    """Suspend, re-activate or activate by hand; every change is recorded with who and why."""
    organization.status = status
    organization.status_reason = reason
    if status == MedicalOrganization.Status.ACTIVE and organization.activated_at is None:
        organization.activated_at = timezone.now()
    organization.save(update_fields=["status", "status_reason", "activated_at"])
    StatusChange.objects.create(organization=organization, status=status, reason=reason, changed_by=by)
    return organization


def region_set_status(*, region: Region, status: str, reason: str, by: str) -> Region:
    region.status = status
    region.save(update_fields=["status"])
    StatusChange.objects.create(region=region, status=status, reason=reason, changed_by=by)
    return region


def sender_check_run(*, organization: MedicalOrganization, study: Study, by: str) -> SenderCheck:
    """Check the test study; an onboarding organization whose check passes becomes active."""
    requirements = check_study(study)
    check = SenderCheck.objects.create(
        organization=organization, study_instance_uid=study.study_instance_uid,
        passed=all(r.passed for r in requirements), report=report_of(requirements), checked_by=by,
    )
    if check.passed and organization.status == MedicalOrganization.Status.ONBOARDING:
        organization_set_status(organization=organization, status=MedicalOrganization.Status.ACTIVE,
                                reason=f"sender check passed on study {study.study_instance_uid}", by=by)
    return check


@dataclass(frozen=True)
class Invitation:
    username: str
    user_id: str
    api_token: str = ""  # embedded mode only: Keycloak users set a password at first sign-in instead


def user_invite(
    *, username: str, email: str, first_name: str, last_name: str, role: Role, organization: MedicalOrganization,
) -> Invitation:
    """A user of the organization with a role; in Keycloak they are asked to set a password at first sign-in."""
    if settings.KEYCLOAK_URL:
        from tenants.identity import KeycloakDirectory

        directory = KeycloakDirectory.from_settings()
        user_id = directory.create_user(
            username=username, email=email, first_name=first_name, last_name=last_name, role=role,
            group_path=directory.group_path(organization=organization),
        )
        return Invitation(username=username, user_id=user_id)
    user = user_ensure(username=username, role=role, organization=organization, password=secrets.token_urlsafe(24))
    user.email, user.first_name, user.last_name = email, first_name, last_name
    user.save(update_fields=["email", "first_name", "last_name"])
    return Invitation(username=username, user_id=str(user.id), api_token=api_token_create(user=user))


def _directory_call(action) -> None:
    """Mirror a tenant in Keycloak when one is configured; embedded mode has nothing to mirror."""
    if settings.KEYCLOAK_URL and settings.KEYCLOAK_ADMIN_CLIENT_SECRET:
        from tenants.identity import KeycloakDirectory

        action(KeycloakDirectory.from_settings())
