"""What the benchmark scripts share: a migrated Django on embedded PostgreSQL, logging, percentiles,
reading and resetting a process's peak RSS, the pgserver superuser's URL, and bulk INSERT ... SELECT
statements that follow the models.

Imported by the scripts after they put platform/ and the repository root on sys.path.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from medai.runtime import services


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile: p95 of 300 samples is an observed value, not an interpolation."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def status_kib(key: str) -> int:
    """A line of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def print_verdict(checks: dict[str, bool], *, started: float, home: Path, keep: bool) -> None:
    """The last lines of every benchmark: its correctness checks, wall time and the machine's load."""
    failed = [name for name, ok in checks.items() if not ok]
    print("checks: " + ("all passed" if not failed else "FAILED: " + "; ".join(failed)))
    print(f"\nWall time {time.perf_counter() - started:.0f} s on {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.2f} at the end." + (f" Kept: {home}" if keep else ""))


def superuser_url(app_url: str) -> str:
    """The pgserver superuser on the application's database: it bypasses row-level security."""
    return app_url.replace(f"{services.APP_ROLE}:@/", "postgres:@/", 1)


def seed_statement(model, columns: dict[str, str], params: dict, rows_sql: str, where: str = "") -> str:
    """INSERT ... SELECT for the model's table from `rows_sql`: the given columns, the model's defaults for
    the other NOT NULL ones (added to params), NULL for the rest; so a new field does not break a benchmark."""
    from django.db import connection

    columns = dict(columns)
    for field in model._meta.concrete_fields:
        if field.column not in columns and not field.null and not field.primary_key:
            key = f"default_{field.column}"
            params[key] = field.get_db_prep_save(field.get_default(), connection)
            columns[field.column] = f"%({key})s"
    return (f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) "
            f"SELECT {', '.join(columns.values())} FROM ({rows_sql}) AS r {where}")


@contextlib.contextmanager
def migrated_django(prefix: str, *, keep: bool) -> Iterator[Path]:
    """A temporary MEDAI_HOME with embedded PostgreSQL, and Django set up and migrated on it: objects as
    local files, Celery on its in-memory broker (nothing is consumed). Removed at the end unless `keep`;
    yields the home."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    log(f"working in {home}")
    with contextlib.ExitStack() as cleanup:
        if not keep:
            cleanup.callback(shutil.rmtree, home, ignore_errors=True)
        postgres = services.start_postgres(home / "pg")
        cleanup.callback(postgres.stop)
        os.environ.update({"DATABASE_URL": postgres.url, "MEDAI_HOME": str(home),
                           "DJANGO_SETTINGS_MODULE": "medai.settings", "CELERY_BROKER_URL": "memory://",
                           "S3_ENDPOINT_URL": "", "LOG_LEVEL": "WARNING"})
        import django

        django.setup()
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # memory://: "no hostname supplied"
        from django.core.management import call_command
        from django.db import connections

        cleanup.callback(connections.close_all)
        call_command("migrate", verbosity=0)
        yield home
