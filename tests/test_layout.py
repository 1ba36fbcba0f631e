"""The house rules that keep one path from config to record: no import cycle in bench/, one way
to compose a config (bench.config.compose), one way to measure peak memory (bench.measure.figures)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def module_imports() -> dict[str, set[str]]:
    """bench module -> the bench modules it imports at module level (imports inside functions
    and under `if TYPE_CHECKING:` are left out: they run later, and cannot make a cycle at import)."""
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in BENCH.rglob("*.py")}
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module for a in node.names}
        graph[name] = {d for d in deps if d in names and d != name}
    return graph


def test_bench_has_no_import_cycle():
    graph, path, done = module_imports(), [], set()
    assert {"bench.run.pipeline", "bench.tasks", "bench.tasks.classification", "bench.config.checks"} <= set(graph)

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


def _files_using(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in BENCH.rglob("*.py") if re.search(pattern, p.read_text()))


def test_one_way_to_compose_a_config_and_one_way_to_measure_peak_memory():
    assert _files_using(r"initialize_config_dir|hydra_compose\(") == ["bench/config/compose.py"]
    assert _files_using(r"max_memory_allocated|cpu_peak_bytes\(|VmHWM") == ["bench/measure/figures.py"]
