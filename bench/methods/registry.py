"""The method registry (the package, bench.methods, imports every family module, which registers here). A method differs from another only here: `apply(model, method_cfg, task)`
freezes, unfreezes or wraps the model; the loop, evaluation and measurement never branch on the
method's name. What they need to know, the method declares (does it train? can it merge? how does
it save and reload what must be kept per task?).

Families (one file each): full.py (none, full), selective.py (bitfit, last_layers, layernorm,
selective), lora.py (lora), prompts.py (prompt_tuning, prefix_tuning), ia3.py (ia3),
adapter.py (adapter: bottleneck adapters, implemented here), and peft_types.py: every YAML of
conf/method/ that names a `peft_type` (any method PEFT ships, with its formula as expressions).

Adding a PEFT method is one YAML (see peft_types.py). Adding any other method is one file here (registered with `register`; every module of this package is
imported below, so nothing else lists it) and its config, conf/method/<name>.yaml. The tests
(tests/test_all_methods.py, test_end_to_end.py, test_generate.py, test_golden.py) iterate `METHODS`
and check it with what it declares: its trainable-parameter `formula`, its test `examples`, the
reasons it `refuses` a model or task, and its `golden` first losses. The docs read it too: the
methods table of docs/methods.md is generated from each method's `summary`, `can_merge` and `knobs`
(bench/report/docs.py), so no central list, test data or page names a method by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file
from torch import nn

from bench.errors import ConfigError


@dataclass
class Probe:
    """What a method's check may inspect before any weights load: the model built on the meta
    device (names, shapes, config; no weights), its family and head, and the whole run config."""

    model: nn.Module
    family: str  # encoder | decoder | encoder-decoder
    head: str  # classifier | causal_lm | seq2seq_lm
    cfg: DictConfig
    trial_apply: bool = True  # False where the caller applies the method to this meta model next (the estimator): one application, not two


def _no_check(method_cfg: DictConfig, probe: Probe | None) -> None:
    return None


Apply = Callable[[nn.Module, DictConfig, Any], nn.Module]
Save = Callable[[nn.Module, Path], None]
Load = Callable[[nn.Module, Path, DictConfig, Any], nn.Module]
Formula = Callable[[nn.Module, DictConfig, Any], int]  # (base model before apply, method config, task) -> trainable count


@dataclass(frozen=True)
class Method:
    name: str
    apply: Apply
    save: Save  # writes exactly what a task needs into a folder
    load: Load  # puts a saved task's weights onto a fresh base, or swaps them on a prepared model
    trains: bool = True  # False: evaluate the model as it is
    can_merge: bool = False  # True: adapters fold into the base weights for inference
    check: Callable[[DictConfig, Probe | None], None] = _no_check  # config checks: probe=None first, then with the meta model
    summary: str = ""  # one line: what the method trains (the docs' methods table, records' params.what_trains)
    knobs: str = ""  # its `method.*` keys as the docs' methods table lists them (Markdown, one line; "" = none)
    # What the tests need to check the method without a list of their own (tests/test_all_methods.py):
    formula: Formula | None = None  # the trainable count its docstring states, computed from the base model's shapes
    examples: tuple[tuple[str, ...], ...] = ((),)  # config overrides the tests run it with: the first in every test, all in the formula check
    refuses: tuple[str, ...] = ()  # words of its ConfigError for a model or task it cannot work with (a test accepts only these)
    # model name -> its first training losses with the first example, seed 0 (tests/test_golden.py pins them; its
    # PEFT_BENCH_PIN_GOLDEN=1 mode rewrites this literal in the method's file after a deliberate change)
    golden: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    source: str = ""  # the file that declares it when that is not its apply's module (a YAML of peft_types.py)
    # The loop's two hooks (bench/run/train.py), for optimizer-side variants and per-step work:
    optimizer: Callable[..., Any] | None = None  # (model, method cfg, lr, weight_decay, betas) -> an optimizer, or None for AdamW
    step_hook: Callable[[nn.Module, DictConfig, int], None] | None = None  # after each optimizer step, with the step number
    # Whether a training step may leave some trainable parameters out of the loss (LyCORIS's module_dropout skips a
    # whole layer's update): data-parallel training then looks for them every step (DDP's find_unused_parameters).
    # A method that cannot train data-parallel at all refuses in its own `check` (probe.cfg.train.world_size).
    skips_parameters: Callable[[DictConfig], bool] | None = None


METHODS: dict[str, Method] = {}


def register(name: str, *, save: Save, load: Load, formula: Formula, **declared: object):
    """Decorator: register `apply` under its config name with what the method declares (a formula
    is required: the tests check every method's trainable count against it)."""

    def wrap(apply: Apply) -> Apply:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice ({METHODS[name].apply.__module__} and {apply.__module__})")
        if "golden" in declared:  # model -> losses, as tuples of floats (a literal may write lists)
            declared["golden"] = {model: tuple(float(x) for x in losses) for model, losses in declared["golden"].items()}  # type: ignore[attr-defined]
        METHODS[name] = Method(name=name, apply=apply, save=save, load=load, formula=formula, **declared)  # type: ignore[arg-type]
        return apply

    return wrap


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError("method.name", name, f"one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def set_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> None:
    """requires_grad = predicate(parameter name), for every parameter."""
    for pname, param in model.named_parameters():
        param.requires_grad_(predicate(pname))


# --- saving and loading what a task trained ---------------------------------------------------

TRAINED_FILE = "trained.safetensors"


def save_trained(model: nn.Module, folder: Path) -> None:
    """The trainable tensors only, by parameter name (selected weights, own adapters, the head)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().to("cpu").clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(folder / TRAINED_FILE))


def load_trained(model: nn.Module, folder: Path) -> nn.Module:
    """Overwrite the saved tensors in place; every saved name must exist in the model."""
    folder = Path(folder)
    tensors = load_file(str(folder / TRAINED_FILE))
    params = dict(model.named_parameters())
    missing = sorted(set(tensors) - set(params))
    if missing:
        raise ValueError(f"{folder / TRAINED_FILE} holds tensors this model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    return model


def save_peft(model: nn.Module, folder: Path) -> None:
    """peft's adapter folder: the adapter (or prompt) weights, their config, and the task head."""
    model.save_pretrained(str(folder))
    (Path(folder) / "README.md").unlink(missing_ok=True)  # peft's model card: not needed to serve the task


def load_peft(model: nn.Module, folder: Path, method_cfg: DictConfig, task: Any, config: Any = None) -> nn.Module:
    """Onto a fresh base: wrap it. Onto a model already wrapped: add the task's adapter beside the
    others and make it the active one (one base, many tasks). `config`: a peft config to use instead
    of the folder's saved one (a type whose saved config drops the task head, bench/methods/peft_types.py)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        name = f"task{len(model.peft_config)}"
        if config is not None:
            model.add_adapter(name, config)
        model.load_adapter(str(folder), adapter_name=name)
        model.set_adapter(name)
        return model
    return PeftModel.from_pretrained(model, str(folder), **({"config": config} if config is not None else {}))


def head_modules(task: Any) -> list[str] | None:
    """peft's modules_to_save: a new classification head trains and is saved with the adapter (the
    registered head's `trained_modules`; None where it has none)."""
    from bench.models.heads import HEADS

    head = HEADS.get(getattr(task, "head", ""))
    return list(head.trained_modules) if head is not None and head.trained_modules else None


def int_at_least(method_cfg: DictConfig, key: str, low: int, what: str) -> int:
    value = method_cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"method.{key}", value, f"an integer >= {low} ({what})")
    return value


def one_of(method_cfg: DictConfig, key: str, valid: tuple[str, ...]) -> str:
    value = method_cfg.get(key)
    if value not in valid:
        raise ConfigError(f"method.{key}", value, f"one of {', '.join(valid)}")
    return str(value)


# --- what formulas count ---------------------------------------------------------------------

def head_params(model: nn.Module) -> int:
    """The new classification head's parameters (hidden x labels + labels; 0 for a generation model)."""
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith("head."))


def matches(name: str, targets: list[str]) -> bool:
    """peft's rule for a list of target modules: the full name, or its dotted suffix."""
    return any(name == t or name.endswith("." + t) for t in targets)


def own_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The model's own linear layers (the new head left out)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and not n.startswith("head")]
