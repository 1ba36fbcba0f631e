"""`python -m bench.report key=value ...`: the report's command (see bench.report.cli)."""

import sys

from bench.report.cli import main

sys.exit(main())
