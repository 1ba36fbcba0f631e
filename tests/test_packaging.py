"""What the code imports is what pyproject.toml declares and constraints.txt pins: a fresh
`pip install -c constraints.txt -e .` gets every library the suite reads (scipy was once missing)."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

import pytest

from conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

OPTIONAL = {"datasets": "task format hub only; refused with a ConfigError naming task.format when absent",
            "mlflow": "the [mlflow] extra: tracking=mlflow is refused naming `tracking` and the install command when absent",
            "mkdocs": "the [docs] extra: peft-bench docs site=true names the package and the install command when absent"}


def test_every_optional_library_is_an_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "mlflow-skinny" in {_name(r) for r in extras["mlflow"]} and "mkdocs" in {_name(r) for r in extras["docs"]}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"]}


def _imported() -> dict[str, str]:
    """Top-level third-party module -> a file of bench/ or hydra_plugins/ that imports it."""
    found: dict[str, str] = {}
    for path in sorted([*(ROOT / "bench").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for top in (n.split(".")[0] for n in names):
                if top not in sys.stdlib_module_names and top not in ("bench", "hydra_plugins"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_a_declared_dependency():
    declared, dists = _declared(), metadata.packages_distributions()
    missing = []
    for module, where in _imported().items():
        if module in OPTIONAL:
            continue
        names = {_name(d) for d in dists.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} ({where}; distribution {', '.join(sorted(names))})")
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
    assert "scipy" in declared  # bench/report/frames.py's t-intervals


def test_every_declared_dependency_is_pinned_in_constraints():
    pinned = {_name(line) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line and not line.startswith("#")}
    assert _declared() - pinned == set()


def test_the_linter_is_configured_and_the_code_passes_it():
    """ruff (the test extra) with pyflakes and pycodestyle's errors at least; .ci/run runs it after
    the README's test command."""
    import shutil
    import subprocess

    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert {"E", "F"} <= set(lint["select"])
    ci = (ROOT / ".ci" / "run").read_text()
    readme_command = "pip install -c constraints.txt -e '.[test]' && python -m pytest\n"
    assert readme_command in ci and "\nruff check .\n" in ci and ci.index("\nruff check .\n") > ci.index(readme_command)
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -c constraints.txt -e '.[test]')")
    proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
