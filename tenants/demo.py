"""Demo tenants for `medai up`: three regions, their organizations, and one user per role.

Idempotent: a restart on the same MEDAI_HOME finds the same tenants and users; passwords are kept.
The organizations are real in kind (a city polyclinic, a city hospital, a republican hospital) but
their names and codes here are illustrative.
"""

from dataclasses import dataclass

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
    ("RU-TAT", "160001", "ГАУЗ «Республиканская клиническая больница МЗ РТ»", "РКБ"),
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
]


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    region: str | None
    organization: str | None
    user: object


def demo_load(*, passwords: dict[str, str]) -> list[DemoUser]:
    """Create or refresh the demo tenants and users; `passwords` maps each username to its password."""
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
        users.append(DemoUser(username, str(role), region.code if region else None,
                              organization.name if organization else None, user))
    return users
