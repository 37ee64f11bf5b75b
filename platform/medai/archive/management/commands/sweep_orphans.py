"""`medai sweep_orphans`: remove stored objects no index row names (left by a crash mid-request)."""

import datetime as dt

from django.core.management.base import BaseCommand

from medai.archive.services import storage_sweep_orphans
from tenants.scope import dangerously_unscoped


class Command(BaseCommand):
    help = "Delete objects in storage that no instance in the index refers to."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than-minutes", type=int, default=120,
            help="Only objects older than this, so uploads in flight are never touched (default 120).",
        )

    def handle(self, *args, older_than_minutes: int, **options) -> None:
        with dangerously_unscoped():
            removed = storage_sweep_orphans(older_than=dt.timedelta(minutes=older_than_minutes))
        self.stdout.write(f"removed {removed} orphaned objects")
