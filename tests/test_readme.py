"""The README is a user's first page: under 250 lines, every page it links exists, its results
table is what its own command prints, and every `peft-bench` / `python -m bench` command in it and
in docs/ names a verb and keys that exist (composed as the command line composes them)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bench.cli import VERBS, parse
from bench.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"DIR|NAME|\.\.\.|\[|<|\$|/my/|N\b")  # a command written with a placeholder is a pattern, not a command


def test_the_readme_is_short_and_every_link_resolves():
    assert len((ROOT / "README.md").read_text().splitlines()) < 250
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links {target}, which does not exist"


def test_the_readme_results_table_is_what_its_command_prints():
    from bench.report.cli import read
    from bench.report.tables import markdown_table

    readme = (ROOT / "README.md").read_text()
    assert "python -m bench report results_dir=results/reference/quickstart" in readme
    table = markdown_table(read([ROOT / "results" / "reference" / "quickstart"]))
    assert table.strip() in readme, "regenerate the README's table with its command"


def commands() -> list[tuple[str, list[str]]]:
    """(page, argv after the program) of every command that names a verb other than run."""
    found = []
    for page in PAGES:
        for line in page.read_text().splitlines():
            for match in re.finditer(r"(?:peft-bench|python -m bench)\s+([a-z-]+)((?:\s+[^\s`|#;&)]+)*)", line):
                verb, rest = match.group(1), match.group(2)
                if verb not in VERBS or verb == "run" or PLACEHOLDER.search(rest):
                    continue
                found.append((page.name, [verb, *shlex.split(rest)]))
    return found


@pytest.mark.parametrize("page,argv", commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_documented_command_names_a_verb_and_keys_that_exist(page, argv):
    try:
        parse(VERBS[argv[0]], [a for a in argv[1:] if a != "--help"])
    except ConfigError as exc:
        if exc.field in ("results_dir", "peft_dir", "docs_dir", "external", "memory_gib"):  # a folder of this machine, or a required value
            return
        raise
