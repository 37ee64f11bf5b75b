#!/usr/bin/env python
"""Django's command-line utility; `medai` is the same thing, installed as a console script."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent / "platform"))

from medai.cli import main

if __name__ == "__main__":
    sys.exit(main())
