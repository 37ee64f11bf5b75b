"""`medai onboard-region`: the command-line twin of POST /api/v1/regions."""

from django.core.management.base import BaseCommand

from tenants.services import region_ensure


class Command(BaseCommand):
    help = "Onboard (or update) a region, e.g. medai onboard-region RU-MOW 'Москва' --okato 45000000000"

    def add_arguments(self, parser) -> None:
        parser.add_argument("code", help="ISO 3166-2 code, e.g. RU-MOW")
        parser.add_argument("name")
        parser.add_argument("--okato", default="", help="OKATO code")
        parser.add_argument("--time-zone", default="Europe/Moscow")

    def handle(self, *args, code: str, name: str, okato: str, time_zone: str, **options) -> None:
        region = region_ensure(code=code, name=name, okato_code=okato, time_zone=time_zone)
        self.stdout.write(f"region {region.code} ({region.name}) id={region.id}")
