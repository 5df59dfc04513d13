"""``python -m kha``: the same command as the ``kha`` entry point."""

import sys

from kha.cli import main

sys.exit(main())
