"""Where things live on disk.

`platform/` is a folder, not a package: a package named `platform` would shadow the standard
library. Entry points call `add_platform_to_path()` so `medai` imports, appending (never
prepending) the folder to `sys.path`.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_DIR = REPO_ROOT / "platform"


def add_platform_to_path() -> None:
    for folder in (str(REPO_ROOT), str(PLATFORM_DIR)):
        if folder not in sys.path:
            sys.path.append(folder)
