"""Task kinds: code that turns raw rows into model inputs and scores predictions. A dataset of a
known kind is a YAML file under conf/task/, not code; a new kind is one module in this package.

A kind module declares everything about its kind in one `register_kind(...)` on its `build`
function: the task keys and metrics it accepts and how their values are checked, the fields each
row must hold, how long its inputs get (the models' position checks and the memory estimate),
how its examples are served for the inference timing, and its evaluation (on the Task it builds).
Kind modules load no torch when imported (their functions import it), so the plain checks read
the declarations before torch loads. Kinds are discovered: every module here that registers one.
"""

from __future__ import annotations

import importlib
import pkgutil

from bench.errors import ConfigError
from bench.tasks.registry import (  # noqa: F401  (re-exported: `from bench.tasks import Task, pad`)
    Task,
    Serve,
    Kind,
    KINDS,
    register_kind,
    pad,
)

_discovered: list[bool] = []


def kinds() -> dict[str, Kind]:
    """Every kind, after importing each module of this package once (a kind module registers itself)."""
    if not _discovered:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "registry":
                importlib.import_module(f"{__name__}.{info.name}")
        _discovered.append(True)
    return KINDS


def get_kind(name: str) -> Kind:
    known = kinds()
    if name not in known:
        raise ConfigError("task.kind", name, f"one of {', '.join(sorted(known))}")
    return known[name]
