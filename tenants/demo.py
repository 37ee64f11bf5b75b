"""Demo tenants for `medai up`: three regions, their organizations, and one user per role.

Idempotent: a restart on the same MEDAI_HOME finds the same tenants and users; passwords are kept.
The organizations are real in kind (city polyclinics and hospitals, a republican hospital) and named
after real ones, but their OMS codes here are illustrative. Every write goes through the services,
as onboarding's would.
"""

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser

from medai.accounts.models import Role
from medai.accounts.services import user_ensure
from tenants.models import MedicalOrganization
from tenants.services import organization_ensure, region_ensure

REGIONS = [
    ("RU-MOW", "Москва", "45000000000", "Europe/Moscow"),
    ("RU-SPE", "Санкт-Петербург", "40000000000", "Europe/Moscow"),
    ("RU-TAT", "Республика Татарстан", "92000000000", "Europe/Moscow"),
]
ORGANIZATIONS = [
    ("RU-MOW", "770002", "ГБУЗ «Городская поликлиника № 2 ДЗМ»", "ГП № 2"),
    ("RU-MOW", "770100", "ГБУЗ «Городская клиническая больница им. С. П. Боткина ДЗМ»", "ГКБ им. Боткина"),
    ("RU-SPE", "780037", "СПб ГБУЗ «Городская поликлиника № 37»", "ГП № 37"),
    ("RU-SPE", "780050", "СПб ГБУЗ «Городская Мариинская больница»", "Мариинская больница"),
    ("RU-TAT", "160001", "ГАУЗ «Республиканская клиническая больница МЗ РТ»", "РКБ"),
    ("RU-TAT", "160007", "ГАУЗ «Городская клиническая больница № 7» г. Казани", "ГКБ № 7"),
]
# (username, role, region code or None, OMS code or None)
USERS = [
    ("admin", Role.PLATFORM_ADMIN, None, None),
    ("ministry", Role.MINISTRY_ANALYST, None, None),
    ("moscow-admin", Role.REGIONAL_ADMIN, "RU-MOW", None),
    ("moscow-finance", Role.FINANCE, "RU-MOW", None),
    ("gp2-admin", Role.ORG_ADMIN, None, "770002"),
    ("gp2-radiologist", Role.RADIOLOGIST, None, "770002"),
    ("gp2-pacs", Role.UPLOADER, None, "770002"),
    ("gp37-radiologist", Role.RADIOLOGIST, None, "780037"),
    ("gp37-pacs", Role.UPLOADER, None, "780037"),
    ("tatarstan-admin", Role.REGIONAL_ADMIN, "RU-TAT", None),
]


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    region: str | None
    organization: str | None
    user: AbstractBaseUser


def demo_load(*, passwords: dict[str, str | None]) -> list[DemoUser]:
    """Create or refresh the demo tenants and users.

    `passwords` maps each username to the password to set, or None to keep the one it has (hashing one
    costs ~0.4 s, and a restart must not change them anyway).
    """
    regions = {code: region_ensure(code=code, name=name, okato_code=okato, time_zone=tz)
               for code, name, okato, tz in REGIONS}
    organizations = {
        oms: organization_ensure(region=regions[code], oms_code=oms, name=name, short_name=short,
                                 status=MedicalOrganization.Status.ACTIVE)
        for code, oms, name, short in ORGANIZATIONS
    }
    users = []
    for username, role, region_code, oms in USERS:
        organization = organizations.get(oms)
        region = organization.region if organization else regions.get(region_code)
        user = user_ensure(username=username, role=role, password=passwords[username], region=region,
                           organization=organization)
        if role == Role.PLATFORM_ADMIN and not user.is_superuser:
            # The platform's operator: Django's admin site (printed by `medai up`) lets only staff in.
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        users.append(DemoUser(username, str(role), region.code if region else None,
                              organization.name if organization else None, user))
    return users
