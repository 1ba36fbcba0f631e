"""The methods: importing this package registers every family module in it (one file per hand-written
family, a new file is picked up). The contract a method meets, and how to add one, is bench.methods.registry's."""

import importlib
import pkgutil

from bench.methods.registry import (  # noqa: F401  (re-exported: `from bench.methods import get_method` finds every family loaded)
    Probe,
    Apply,
    Save,
    Load,
    Formula,
    Method,
    METHODS,
    register,
    get_method,
    set_trainable,
    TRAINED_FILE,
    save_trained,
    load_trained,
    save_peft,
    load_peft,
    head_modules,
    int_at_least,
    one_of,
    head_params,
    matches,
    own_linears,
)


def discover() -> None:
    """Import every module of this package: each family registers its methods (a new file is picked up)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "registry":
            importlib.import_module(f"{__name__}.{info.name}")


discover()
