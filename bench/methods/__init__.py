"""The method registry. A method differs from another only here: `apply(model, method_cfg, task)`
freezes, unfreezes or wraps the model; the loop, evaluation and measurement never branch on the
method's name. What they need to know, the method declares (does it train? can it merge? how does
it save and reload what must be kept per task?).

Families (one file each): full.py (none, full), selective.py (bitfit, last_layers, layernorm,
selective), lora.py (lora), prompts.py (prompt_tuning, prefix_tuning), ia3.py (ia3),
adapter.py (adapter: bottleneck adapters, implemented here).

Adding a method is one file here (registered with `register`; every module of this package is
imported below, so nothing else lists it) and its config, conf/method/<name>.yaml. The tests
(tests/test_all_methods.py, test_end_to_end.py, test_generate.py, test_golden.py) iterate `METHODS`
and check it with what it declares: its trainable-parameter `formula`, its test `examples`, the
reasons it `refuses` a model or task, and its `golden` first losses. The docs read it too: the
methods table of docs/methods.md is generated from each method's `summary`, `can_merge` and `knobs`
(bench/report/docs.py), so no central list, test data or page names a method by hand.
"""

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
