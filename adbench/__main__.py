"""`python -m adbench` is the `adbench` command."""

import sys

from adbench.cli import main

sys.exit(main())
