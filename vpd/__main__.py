"""``python -m vpd``: the command line."""

import sys

from vpd.cli import main

sys.exit(main())
