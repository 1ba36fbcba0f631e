"""Any method type PEFT ships, declared by one YAML: conf/method/<name>.yaml with `peft_type:` is
registered here, at import, as a method like every other (no Python per method).

    name: oft
    peft_type: OFT                # a member of peft.utils.PeftType
    config: {oft_block_size: 32}  # keyword arguments of its config class (peft's defaults for the rest)
    trainable:                    # the trainable count, written by hand from the method's paper/code
      per_target: "(fan_in // oft_block_size) * oft_block_size * (oft_block_size - 1) // 2"
      once: "0"                   # parameters made once, not per targeted module
    about: {summary: ..., examples: ..., refuses: ..., golden: ..., check: ...}

The count is `sum(per_target over the targeted modules) + once + the task head`. The expressions
see, per targeted module, `fan_in`, `fan_out` (a linear's features; an embedding's rows and width;
a norm's width twice) and `has_bias` (0/1); for the model, `hidden`, `layers`, `vocab` and
`n_targets`; and every scalar field of the built peft config by its name (so `r` is peft's default
when the YAML leaves it out). Functions: min, max, ceil, floor, sqrt, log2, gcd, int, sum.
`about.check` holds the count by hand on tiny-bert and tiny-llama (tests/test_all_methods.py holds
the formula to it), so the formula is checked against arithmetic, not against peft's own count.

Targets are the YAML's `config.target_modules`, else peft's default for the type and the
architecture, else LoRA's (what peft itself falls back to for most types), else ours for MPNet.
Save, load, the swap of tasks on one base and merging go through peft. What peft refuses for a
shape (a block size that does not divide a width) is refused before any weights load: the check
applies the config to the model built on the meta device.

`optimizer:` names an optimizer-side variant (LoRA+: B at a higher lr; LoRA-FA: A frozen, B's
gradient projected), made through peft's own constructors (`make_optimizer` below, the loop's one
hook for any method); `step_hook:` names a peft model method the loop calls after each optimizer
step with the step number (AdaLoRA's `update_and_allocate`).
"""

from __future__ import annotations

import ast
import copy
import math
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.errors import ConfigError
from bench.methods.registry import METHODS, Probe, head_modules, head_params, load_peft, matches, register, save_peft

CONF_METHODS = Path(__file__).resolve().parents[2] / "conf" / "method"
FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "ceil": math.ceil, "floor": math.floor, "sqrt": math.sqrt,
                                            "log2": math.log2, "gcd": math.gcd, "int": int, "sum": sum, "abs": abs}
OPTIMIZERS = ("loraplus", "lorafa")
FAMILIES = ("encoder", "decoder", "encoder-decoder")
# Defaults for architectures peft has none for (as lora.py's; MPNet names its projections q, k, v, o)
OUR_TARGETS = {"mpnet": ["q", "v"]}
NORMS = (nn.LayerNorm,)


# --------------------------------------------------------------------------- the formula's language
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.Name, ast.Load,
            ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd,
            ast.And, ast.Or, ast.Not, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Tuple, ast.List)


def parse_expression(text: Any, field: str) -> ast.Expression:
    """An arithmetic expression over names (no attributes, subscripts or lambdas): refused as a
    ConfigError naming the field otherwise."""
    try:
        tree = ast.parse(str(text), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(field, text, f"an arithmetic expression ({exc.msg})") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED) or (isinstance(node, ast.Call) and not isinstance(node.func, ast.Name)):
            raise ConfigError(field, text, f"an arithmetic expression over names and {', '.join(FUNCTIONS)} (no {type(node).__name__})")
    return tree


def evaluate(text: Any, names: dict[str, Any], field: str) -> Any:
    tree = parse_expression(text, field)
    unknown = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(names) - set(FUNCTIONS))
    if unknown:
        raise ConfigError(field, text, f"an expression over {', '.join(sorted(names))} (unknown: {', '.join(unknown)})")
    return eval(compile(tree, field, "eval"), {"__builtins__": {}}, {**FUNCTIONS, **names})  # noqa: S307 (names and operators only, checked above)


# --------------------------------------------------------------------------- peft's config
def config_class(peft_type: Any) -> type:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import PeftType

    valid = [t.value for t in PeftType]
    if peft_type not in valid:
        raise ConfigError("method.peft_type", peft_type, f"a member of peft.utils.PeftType: {', '.join(valid)}")
    return PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]


def default_targets(peft_type: str, model_type: str) -> list[str] | None:
    from peft.utils import constants

    for mapping in (f"TRANSFORMERS_MODELS_TO_{peft_type}_TARGET_MODULES_MAPPING", "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING"):
        found = getattr(constants, mapping, {}).get(model_type)
        if found:
            return list(found)
    return OUR_TARGETS.get(model_type)


def kwargs_of(method_cfg: DictConfig, model: nn.Module | None, task: Any) -> dict[str, Any]:
    """The config class's keyword arguments: the YAML's, the resolved targets, the task head."""
    cls = config_class(method_cfg.get("peft_type"))
    kwargs = OmegaConf.to_container(method_cfg.get("config") or OmegaConf.create({}), resolve=True)
    assert isinstance(kwargs, dict)
    fields = cls.__dataclass_fields__
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ConfigError(f"method.config.{unknown[0]}", kwargs[unknown[0]], f"a field of peft's {cls.__name__}: {', '.join(sorted(f for f in fields if not f.startswith('_')))}")
    if model is not None and "target_modules" in fields and kwargs.get("target_modules") is None and "target_modules" in _targeting(cls):
        targets = default_targets(str(method_cfg.peft_type), model.config.model_type)
        if targets is None:
            raise ConfigError("method.config.target_modules", None, f"module names: peft has no default for model type {model.config.model_type!r}")
        kwargs["target_modules"] = targets
    if task is not None and "modules_to_save" in fields:
        kwargs["modules_to_save"] = head_modules(task)
    return kwargs


def _targeting(cls: type) -> set[str]:
    """The fields that name modules for this type (LN tuning and trainable tokens have defaults of their own)."""
    from peft import LNTuningConfig, TrainableTokensConfig

    return set() if cls in (LNTuningConfig, TrainableTokensConfig) else {"target_modules"}


def build_config(method_cfg: DictConfig, model: nn.Module | None, task: Any) -> Any:
    """peft's config object; its own checks (a rank above a width, a wrong combination) are a
    ConfigError on method.config."""
    cls = config_class(method_cfg.get("peft_type"))
    kwargs = kwargs_of(method_cfg, model, task)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError("method.config", OmegaConf.to_container(method_cfg.get("config") or {}), f"settings peft's {cls.__name__} accepts: {exc}") from None


# --------------------------------------------------------------------------- the count
def _names_of(peft_config: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(peft_config).items() if isinstance(v, (int, float)) and not k.startswith("_")}


def targeted(base: nn.Module, peft_config: Any) -> list[tuple[str, nn.Module]]:
    """The modules peft wraps, by its rule: a list names a module or a dotted suffix; a string is a
    regex over the full name; all-linear is every linear but the output layer. The head is never one."""
    import re

    targets = getattr(peft_config, "target_modules", None)
    found = []
    for name, module in base.named_modules():
        if not name or name.startswith("head") or not hasattr(module, "weight"):
            continue
        if targets == "all-linear":
            hit = isinstance(module, nn.Linear) and not name.endswith("lm_head")
        elif isinstance(targets, str):
            hit = re.fullmatch(targets, name) is not None
        else:
            hit = matches(name, list(targets or []))
        if hit:
            found.append((name, module))
    return found


def shape_of(module: nn.Module) -> dict[str, int]:
    if isinstance(module, nn.Linear):
        fan_in, fan_out = module.in_features, module.out_features
    elif isinstance(module, nn.Embedding):
        fan_in, fan_out = module.num_embeddings, module.embedding_dim
    else:  # a norm (LayerNorm, RMSNorm): its width
        fan_in = fan_out = int(module.weight.numel())
    bias = getattr(module, "bias", None)
    return {"fan_in": fan_in, "fan_out": fan_out, "has_bias": int(isinstance(bias, nn.Parameter))}


def model_names(base: nn.Module, n_targets: int) -> dict[str, int]:
    c = base.config
    hidden = getattr(c, "hidden_size", None) or getattr(c, "d_model", None) or 0
    layers = getattr(c, "num_hidden_layers", None) or getattr(c, "num_layers", None) or 0
    return {"hidden": int(hidden), "layers": int(layers), "vocab": int(getattr(c, "vocab_size", 0) or 0), "n_targets": n_targets}


def count(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    """The YAML's formula on this base: sum(per_target) + once + the task head."""
    peft_config = build_config(method_cfg, base, task)
    spec = method_cfg.trainable
    names = _names_of(peft_config)
    modules = targeted(base, peft_config)
    total = sum(evaluate(spec.per_target, {**names, **model_names(base, len(modules)), **shape_of(m)}, "method.trainable.per_target")
                for _, m in modules) if spec.get("per_target") is not None else 0
    total += evaluate(spec.get("once", 0), {**names, **model_names(base, len(modules))}, "method.trainable.once")
    return int(total) + head_params(base)


# --------------------------------------------------------------------------- check, apply, optimizer
def check(method_cfg: DictConfig, probe: Probe | None) -> None:
    """Before any model loads: the type, its fields and peft's own checks; with the meta model,
    the families it applies to and what peft refuses for these shapes."""
    name = str(method_cfg.name)
    build_config(method_cfg, None, None)
    trainable = method_cfg.get("trainable")
    if trainable is None or trainable.get("per_target") is None and trainable.get("once") is None:
        raise ConfigError("method.trainable", trainable, "per_target and/or once: the trainable count as expressions")
    for key in ("per_target", "once"):
        if trainable.get(key) is not None:
            parse_expression(trainable[key], f"method.trainable.{key}")
    optimizer = method_cfg.get("optimizer")
    if optimizer is not None and optimizer.get("kind") not in OPTIMIZERS:
        raise ConfigError("method.optimizer.kind", optimizer.get("kind"), f"one of {', '.join(OPTIMIZERS)} (or optimizer: null, AdamW)")
    if probe is None:
        return
    families = list(method_cfg.get("families") or FAMILIES)
    if probe.family not in families:
        raise ConfigError("method", name, f"a method for {probe.cfg.model.name}'s family ({probe.family}): {name} applies to {' and '.join(families)} models only")
    from peft import get_peft_model

    peft_config = build_config(method_cfg, probe.model, None)
    try:  # the meta model: names and shapes, no weights, so peft's shape checks run in milliseconds
        get_peft_model(copy.deepcopy(probe.model), peft_config)
    except ValueError as exc:
        raise ConfigError("method.config", OmegaConf.to_container(method_cfg.get("config") or {}), f"settings that fit {probe.cfg.model.name}: peft says: {exc}") from None
    except Exception:  # an init that computes on weights (SVD, QR) cannot run on the meta device: the real apply checks it
        pass


def apply(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    from peft import get_peft_model

    wrapped = get_peft_model(model, build_config(method_cfg, model, task))
    if (method_cfg.get("optimizer") or {}).get("kind") == "lorafa":  # LoRA-FA trains B only: A stays at its init
        for pname, param in wrapped.named_parameters():
            if "lora_A" in pname:
                param.requires_grad_(False)
    return wrapped


def make_optimizer(model: nn.Module, method_cfg: DictConfig, lr: float, weight_decay: float, betas: tuple[float, float]) -> Any:
    """The method's optimizer-side variant through peft's constructors (None: the loop's AdamW)."""
    import torch

    optimizer = method_cfg.get("optimizer")
    if optimizer is None:
        return None
    if optimizer.kind == "loraplus":
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=float(optimizer.lr_ratio),
                                         weight_decay=weight_decay, betas=betas)
    from peft.optimizers import create_lorafa_optimizer

    lora = model.peft_config["default"]
    return create_lorafa_optimizer(model, r=int(lora.r), lora_alpha=int(lora.lora_alpha), lr=lr, weight_decay=weight_decay)


def step_hook(model: nn.Module, method_cfg: DictConfig, step: int) -> None:
    """After each optimizer step: the peft model's own per-step work (AdaLoRA's budget allocation)."""
    hook = method_cfg.get("step_hook")
    if hook:
        getattr(model.base_model, str(hook))(step)


# --------------------------------------------------------------------------- registration
def knobs_of(spec: DictConfig) -> str:
    set_here = ", ".join(f"`{k}`" for k in (spec.get("config") or {}))
    return f"`config.*`: any field of peft's {spec.peft_type} config" + (f" (set here: {set_here})" if set_here else "")


def register_yaml(path: Path) -> None:
    spec = OmegaConf.load(path)
    about = spec.get("about") or {}
    examples = tuple(tuple(str(o) for o in example) for example in (about.get("examples") or [[]]))
    register(str(spec.name), save=save_peft, load=load_peft, formula=count, check=check,
             can_merge=bool(spec.get("can_merge", False)), summary=str(about.get("summary", "")), knobs=knobs_of(spec),
             examples=examples, refuses=tuple(str(r) for r in about.get("refuses") or ()),
             golden={m: tuple(v) for m, v in (about.get("golden") or {}).items()},
             source=str(path), optimizer=make_optimizer, step_hook=step_hook)(apply)


def discover() -> None:
    """Register every conf/method/*.yaml that names a peft_type (its file name is its name)."""
    for path in sorted(CONF_METHODS.glob("*.yaml")):
        text = path.read_text()
        if "\npeft_type:" in "\n" + text and path.stem not in METHODS:
            register_yaml(path)


discover()
