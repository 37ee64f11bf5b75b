"""`medai up`: start the whole platform on embedded defaults with demo data (see medai.runtime.up)."""

import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from medai.runtime.up import Platform, print_credentials


class Command(BaseCommand):
    help = "Start PostgreSQL, Redis, Triton, a Celery worker and the web server, with demo tenants."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument("--no-triton", action="store_true", help="do not start Triton (no AI inference)")

    def handle(self, *args, port: int, no_triton: bool, **options) -> None:
        home = settings.MEDAI_HOME
        home.mkdir(parents=True, exist_ok=True)

        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        say(f"Starting MedAI Platform in {home}")
        platform = Platform(home=home, port=port, with_triton=not no_triton, say=say)
        try:
            platform.start_servers()
            credentials = platform.prepare_data()
            platform.start_processes()
        except BaseException as exc:
            say(f"start-up failed: {exc}")
            platform.stop()
            sys.exit(1)
        print_credentials(credentials, say)
        sys.exit(platform.supervise())
