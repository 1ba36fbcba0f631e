"""`python -m bench.report key=value ...`: an alias of `peft-bench report ...` (bench.cli)."""

import sys

from bench.cli import invoke

sys.exit(invoke(["report", *sys.argv[1:]]))
