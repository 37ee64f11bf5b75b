"""The `medai` console script: Django's management commands (`medai up`, `medai migrate`, ...)."""

import os
import sys

from medai.paths import add_platform_to_path


def main() -> int:
    add_platform_to_path()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medai.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
    return 0
