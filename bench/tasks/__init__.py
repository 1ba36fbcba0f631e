"""The task kinds: `kinds()` imports every kind module of this package once (each registers itself;
a new file is picked up). The contract a kind meets is bench.tasks.registry's."""

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
