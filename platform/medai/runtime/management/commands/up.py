"""`medai up`: the whole platform on embedded defaults with demo data; the work is in medai.runtime.up."""

import sys
import warnings

from django.conf import settings
from django.core.management.base import BaseCommand

from medai.runtime.up import UpOptions, up


class Command(BaseCommand):
    help = ("Start PostgreSQL, Redis, Triton, a Celery worker with beat and the web server, with demo tenants "
            "and users; state in MEDAI_HOME. Ctrl-C stops everything.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web port on 127.0.0.1 (default 8000)")
        parser.add_argument("--no-triton", action="store_true",
                            help="do not start Triton (machines where it cannot run); AI inference is then off")
        parser.add_argument("--triton-grpc-port", type=int, help="Triton's gRPC port (default: a free one)")
        parser.add_argument("--triton-http-port", type=int, help="Triton's HTTP port (default: a free one)")
        parser.add_argument("--no-demo-studies", action="store_true",
                            help="do not send the demo studies into a new, empty archive")

    def handle(self, *args, port: int, no_triton: bool, triton_grpc_port: int | None,
               triton_http_port: int | None, no_demo_studies: bool, **options) -> None:
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, imported by pgserver

        def say(text: str, end: str = "\n") -> None:
            self.stdout.write(text, ending=end)
            self.stdout.flush()

        options = UpOptions(port=port, with_triton=not no_triton, triton_grpc_port=triton_grpc_port,
                            triton_http_port=triton_http_port, demo_studies=not no_demo_studies)
        sys.exit(up(home=settings.MEDAI_HOME, options=options, say=say))
