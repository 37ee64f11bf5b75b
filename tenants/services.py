"""Writes for tenants. The identity issue grows these into the full onboarding flow."""

from tenants.models import MedicalOrganization, Region


def region_ensure(*, code: str, name: str) -> Region:
    region, _ = Region.objects.update_or_create(code=code, defaults={"name": name})
    return region


def organization_ensure(*, region: Region, oms_code: str, name: str) -> MedicalOrganization:
    organization, _ = MedicalOrganization.objects.update_or_create(
        oms_code=oms_code, defaults={"region": region, "name": name}
    )
    return organization
