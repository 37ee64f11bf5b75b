"""`medai onboard-organization`: the command-line twin of POST /api/v1/organizations.

Prints the PACS credentials once, as the API does; keep them, they are not shown again.
"""

from django.core.management.base import BaseCommand, CommandError

from tenants.models import MedicalOrganization, Region
from tenants.services import organization_onboard


class Command(BaseCommand):
    help = "Onboard a medical organization: status onboarding, identity group, PACS credentials"

    def add_arguments(self, parser) -> None:
        parser.add_argument("region", help="region code, e.g. RU-MOW")
        parser.add_argument("oms_code", help="OMS registry code")
        parser.add_argument("name", help="full name")
        parser.add_argument("--short-name", default="")
        parser.add_argument("--ogrn", default="")
        parser.add_argument("--address", default="")

    def handle(self, *args, region: str, oms_code: str, name: str, short_name: str, ogrn: str, address: str,
               **options) -> None:
        try:
            region_row = Region.objects.get(code=region)
        except Region.DoesNotExist as exc:
            raise CommandError(f"no region {region}; onboard it first with medai onboard-region") from exc
        if MedicalOrganization.objects.filter(oms_code=oms_code).exists():
            raise CommandError(f"an organization with OMS code {oms_code} exists")
        organization, credentials = organization_onboard(
            region=region_row, oms_code=oms_code, name=name, short_name=short_name, ogrn=ogrn, address=address,
            by="command-line",
        )
        self.stdout.write(f"organization {organization.oms_code} id={organization.id} status={organization.status}")
        self.stdout.write(f"PACS client id: {credentials.client_id}")
        if credentials.client_secret:
            self.stdout.write(f"PACS client secret (shown once): {credentials.client_secret}")
        if credentials.api_token:
            self.stdout.write(f"PACS API token (shown once): {credentials.api_token}")
