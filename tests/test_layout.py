"""The house rules that keep one path from config to record: no import cycle in bench/, counting the
imports inside functions and the modules the registries load by name; a handful of modules at the
top of bench/, the rest in rooms; one way to compose a config (bench.config.compose), one way to
measure peak memory (bench.measure.figures)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
REGISTRIES = ("bench.methods", "bench.tasks")  # packages that import every module they hold (pkgutil), by name


def module_imports() -> dict[str, set[str]]:
    """bench module -> the bench modules it imports anywhere: at module level, inside functions,
    under `if` blocks, and by name (a registry package loads each of its modules; bench.cli loads
    each verb's module from its `target`). An import inside a function runs later, but a cycle
    through it still ties the modules into one knot that cannot be read, tested or moved apart."""
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in BENCH.rglob("*.py")}
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module for a in node.names}
        if name in REGISTRIES:
            deps |= {n for n in names if n.startswith(name + ".") and n.count(".") == name.count(".") + 1}
        graph[name] = {d for d in deps if d in names and d != name}
    from bench.cli import VERBS

    graph["bench.cli"] |= {v.target.partition(":")[0] for v in VERBS.values()}
    return graph


def test_the_import_graph_sees_function_level_imports_and_the_registries():
    graph = module_imports()
    assert "bench.run.pipeline" in graph["bench.run.app"]  # imported inside app(): after the plain checks
    assert "bench.methods.lora" in graph["bench.methods"] and "bench.tasks.classification" in graph["bench.tasks"]
    assert {"bench.report.cli", "bench.harness.perf", "bench.config.plan"} <= graph["bench.cli"]


def test_bench_has_no_import_cycle():
    graph, path, done = module_imports(), [], set()

    def visit(node: str) -> None:
        assert node not in path, f"import cycle: {' -> '.join(path[path.index(node):] + [node])}"
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        done.add(path.pop())

    for module in sorted(graph):
        visit(module)


def test_the_top_of_bench_holds_a_handful_of_modules_and_every_room_says_its_job():
    top = sorted(p.name for p in BENCH.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "errors.py"], top
    for room in sorted(p for p in BENCH.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((room / "__init__.py").read_text()))
        assert doc, f"bench/{room.name}/__init__.py says nothing of its room's job"


def _files_using(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in BENCH.rglob("*.py") if re.search(pattern, p.read_text()))


def test_one_way_to_compose_a_config_and_one_way_to_measure_peak_memory():
    assert _files_using(r"initialize_config_dir|hydra_compose\(") == ["bench/config/compose.py"]
    assert _files_using(r"max_memory_allocated|cpu_peak_bytes\(|VmHWM") == ["bench/measure/figures.py"]


def test_no_code_cites_a_file_outside_the_repository():
    assert _files_using(r"DESIGN\.md") == [], "cite docs/architecture.md, which is in the repository"
