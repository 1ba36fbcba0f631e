"""Any method type PEFT ships, declared by one YAML: conf/method/<name>.yaml with `peft_type:` is
registered here, at import, as a method like every other (no Python per method).

    name: oft
    peft_type: OFT                # a member of peft.utils.PeftType
    config: {oft_block_size: 32}  # keyword arguments of its config class (peft's defaults for the rest)
    trainable:                    # the trainable count, written by hand from the method's paper/code
      per_target: "(fan_in // oft_block_size) * oft_block_size * (oft_block_size - 1) // 2"
      once: "0"                   # parameters made once, not per targeted module
      requires: ["fan_in % oft_block_size == 0"]  # what the count assumes of every target: else refused before loading
    about: {summary: ..., examples: ..., refuses: ..., golden: ..., check: ...}

The count is `sum(per_target over the targeted modules) + once + the task head`. The expressions
see, per targeted module, `fan_in`, `fan_out` (a linear's features; an embedding's rows and width;
a norm's width twice) and `has_bias` (0/1); for the model, `hidden`, `layers`, `vocab` and
`n_targets`; and every scalar field of the built peft config by its name (so `r` is peft's default
when the YAML leaves it out; None for an unset option; a list of numbers as a list). Functions: min,
max, ceil, floor, sqrt, log2, gcd, int, sum, abs, round, len.
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
                                            "log2": math.log2, "gcd": math.gcd, "int": int, "sum": sum, "abs": abs,
                                            "round": round,  # round: as peft rounds (TinyLoRA's groups)
                                            "len": len}  # len: of a list field (trainable tokens' token_indices)
OPTIMIZERS = ("loraplus", "lorafa")
FAMILIES = ("encoder", "decoder", "encoder-decoder")
# Defaults for architectures peft has none for (as lora.py's; MPNet names its projections q, k, v, o)
OUR_TARGETS = {"mpnet": ["q", "v"]}
# LN tuning where peft has no mapping (peft's LNTUNING mapping lacks BERT and MPNet): every LayerNorm
OUR_NORM_TARGETS = {"bert": ["LayerNorm"], "mpnet": ["LayerNorm"]}


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
        if not isinstance(node, _ALLOWED) or (isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS)):
            raise ConfigError(field, text, f"an arithmetic expression over names and {', '.join(FUNCTIONS)} (no {type(node).__name__})")
    return tree


def evaluate(text: Any, names: dict[str, Any], field: str) -> Any:
    tree = parse_expression(text, field)
    unknown = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(names) - set(FUNCTIONS))
    if unknown:
        raise ConfigError(field, text, f"an expression over {', '.join(sorted(names))} (unknown: {', '.join(unknown)})")
    try:
        return eval(compile(tree, field, "eval"), {"__builtins__": {}}, {**FUNCTIONS, **names})  # noqa: S307 (names and operators only, checked above)
    except (ArithmeticError, TypeError, ValueError) as exc:  # 0 as a divisor, None in arithmetic: these settings do not fit the formula
        shown = ", ".join(f"{k}={v}" for k, v in sorted(names.items()) if k in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)})
        raise ConfigError(field, text, f"an expression that these settings can evaluate ({type(exc).__name__}: {exc}; {shown})") from None


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

    if peft_type == "LN_TUNING":  # norms, never LoRA's linears (peft's mapping is named LNTUNING)
        found = constants.TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING.get(model_type)
        return list(found) if found else OUR_NORM_TARGETS.get(model_type)
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
    if model is not None and "target_modules" in fields and kwargs.get("target_modules") is None:
        targets = _input_embedding(model) if _embeds(cls) else default_targets(str(method_cfg.peft_type), model.config.model_type)
        if targets is None:
            raise ConfigError("method.config.target_modules", None, f"module names: peft has no default for model type {model.config.model_type!r}")
        kwargs["target_modules"] = targets
    if task is not None and "modules_to_save" in fields:
        kwargs["modules_to_save"] = head_modules(task)
    return kwargs


def _embeds(cls: type) -> bool:
    """Trainable tokens: its default target is the input embedding, not a mapping's modules."""
    from peft import TrainableTokensConfig

    return cls is TrainableTokensConfig


def _input_embedding(model: nn.Module) -> list[str] | None:
    """The input embedding's name, as peft finds it (model.get_input_embeddings(); our classifiers wrap a backbone that has it)."""
    owner = model if hasattr(model, "get_input_embeddings") else getattr(model, "backbone", None)
    embedding = owner.get_input_embeddings() if hasattr(owner, "get_input_embeddings") else None
    return next(([name] for name, m in model.named_modules() if embedding is not None and m is embedding), None)


def build_config(method_cfg: DictConfig, model: nn.Module | None, task: Any) -> Any:
    """peft's config object; its own checks (a rank above a width, a wrong combination) are a
    ConfigError on method.config."""
    cls = config_class(method_cfg.get("peft_type"))
    kwargs = kwargs_of(method_cfg, model, task)
    try:
        config = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError("method.config", OmegaConf.to_container(method_cfg.get("config") or {}), f"settings peft's {cls.__name__} accepts: {exc}") from None
    if task is not None and "modules_to_save" not in cls.__dataclass_fields__:  # trainable tokens: no such field, but
        config.modules_to_save = head_modules(task)  # peft trains and saves the head when the object names it (load() below)
    return config


# --------------------------------------------------------------------------- the count
def _names_of(peft_config: Any) -> dict[str, Any]:
    # numbers, flags and strings (a variant: ROAD's `variant == 'road_2'`, MiSS's `init_weights == 'mini'`), None
    # (an unset option: `r == None`) and lists of numbers (`len(token_indices)`)
    return {k: v for k, v in vars(peft_config).items() if not k.startswith("_") and (v is None or isinstance(v, (int, float, str))
            or isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))}


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
    modules = targeted(probe.model, peft_config)
    for rule in trainable.get("requires") or ():  # what the formula assumes of every target (peft may adjust silently)
        for module_name, module in modules:
            names = {**_names_of(peft_config), **model_names(probe.model, len(modules)), **shape_of(module)}
            if not evaluate(rule, names, "method.trainable.requires"):
                shape = ", ".join(f"{k}={v}" for k, v in shape_of(module).items())
                raise ConfigError("method.config", OmegaConf.to_container(method_cfg.get("config") or {}),
                                  f"settings where {rule} for every targeted module ({module_name} of {probe.cfg.model.name} has {shape})")
    if not probe.trial_apply:  # the estimator applies it next; apply() answers peft's refusal the same way
        return
    try:  # the meta model: names and shapes, no weights, so peft's shape checks run in milliseconds
        get_peft_model(copy.deepcopy(probe.model), peft_config)
    except ValueError as exc:
        raise ConfigError("method.config", OmegaConf.to_container(method_cfg.get("config") or {}), f"settings that fit {probe.cfg.model.name}: peft says: {exc}") from None
    except Exception:  # an init that computes on weights (SVD, QR) cannot run on the meta device: the real apply checks it
        pass


def moves_the_base(peft_config: Any) -> bool:
    """A LoRA init that replaces W by its residual (PiSSA, OLoRA): the saved adapter must be
    converted to a plain LoRA on the original W, or a fresh base would not reproduce the task."""
    init = getattr(peft_config, "init_lora_weights", True)
    return isinstance(init, str) and init.startswith(("pissa", "olora"))


def apply(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    from peft import get_peft_model

    peft_config = build_config(method_cfg, model, task)
    on_meta = any(p.is_meta for p in model.parameters())  # the estimator's model: shapes, no weights
    if on_meta and moves_the_base(peft_config):
        peft_config.init_lora_weights = True  # PiSSA's and OLoRA's factors have LoRA's shapes; their values need weights
    try:
        wrapped = get_peft_model(model, peft_config)
    except ValueError as exc:  # peft's own refusal of these settings for these shapes
        raise ConfigError("method.config", OmegaConf.to_container(method_cfg.get("config") or {}),
                          f"settings that fit this model: peft says: {exc}") from None
    except (NotImplementedError, RuntimeError) as exc:
        if not on_meta:
            raise
        raise ConfigError("method", str(method_cfg.name), f"a method the estimator can apply without weights: {method_cfg.name}'s init "
                          f"computes on them (peft: {str(exc).splitlines()[0][:120]})") from None
    if moves_the_base(peft_config):  # keep the initial factors: save() writes the task as a LoRA on the original W
        wrapped.bench_initial_factors = {saved_key(n): p.detach().clone() for n, p in wrapped.named_parameters() if ".lora_" in n}
    for pname, param in wrapped.named_parameters():  # AdaLoRA's rank counter: peft 0.21 re-creates it trainable when it casts
        if ".ranknum." in f"{pname}.":  # adapters to fp32 on a bf16 model; it is a constant
            param.requires_grad_(False)
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


def saved_key(param_name: str) -> str:
    """A LoRA factor's key in peft's saved file: its parameter name without the adapter's name."""
    return param_name.replace(".default.", ".")


def load(model: nn.Module, folder: Path, method_cfg: DictConfig, task: Any) -> nn.Module:
    """load_peft; for a type whose config has no modules_to_save field (trainable tokens), the task head
    is named on the loaded config object again, as build_config named it (peft's saved config drops it)."""
    from peft import PeftConfig

    head = head_modules(task) if task is not None else None
    if not head or "modules_to_save" in config_class(method_cfg.get("peft_type")).__dataclass_fields__:
        return load_peft(model, folder, method_cfg, task)
    config = PeftConfig.from_pretrained(str(folder))
    config.modules_to_save = head
    return load_peft(model, folder, method_cfg, task, config=config)


def save(model: nn.Module, folder: Path) -> None:
    """peft's adapter folder; after an init that moved the base (W0 = W - s B0 A0), the task is
    W0 + s B A = W + s (B A - B0 A0): written as the LoRA of rank 2r with A' = [A; A0] and
    B' = [B, -B0] at the same scale (peft's own conversion, done here because peft's breaks on a
    model with a trained head)."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    save_peft(model, folder)
    initial = getattr(model, "bench_initial_factors", None)
    if initial is None:
        return
    weights_file, config_file = Path(folder) / "adapter_model.safetensors", Path(folder) / "adapter_config.json"
    tensors = load_file(str(weights_file))
    for key, start in initial.items():
        if key in tensors:
            now = tensors[key]
            tensors[key] = torch.cat([now, start.to(now.dtype)], dim=0) if ".lora_A." in key else torch.cat([now, -start.to(now.dtype)], dim=1)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(weights_file), metadata={"format": "pt"})
    config = json.loads(config_file.read_text())
    factor = math.sqrt(2) if config.get("use_rslora") else 2  # the same scale at rank 2r
    config.update(r=2 * int(config["r"]), lora_alpha=float(config["lora_alpha"]) * factor, init_lora_weights=True)
    config["alpha_pattern"] = {k: v * factor for k, v in (config.get("alpha_pattern") or {}).items()}
    config["rank_pattern"] = {k: 2 * v for k, v in (config.get("rank_pattern") or {}).items()}
    config_file.write_text(json.dumps(config, indent=2))


# --------------------------------------------------------------------------- registration
def knobs_of(spec: DictConfig) -> str:
    set_here = ", ".join(f"`{k}`" for k in (spec.get("config") or {}))
    return f"`config.*`: any field of peft's {spec.peft_type} config" + (f" (set here: {set_here})" if set_here else "")


def skipping(rule: str | None) -> Callable[[DictConfig], bool] | None:
    """about.skips_parameters (an expression over the built peft config's fields, such as
    `module_dropout > 0`) as the registry's `skips_parameters`; None where the YAML has none."""
    if rule is None:
        return None
    return lambda method_cfg: bool(evaluate(rule, _names_of(build_config(method_cfg, None, None)), "about.skips_parameters"))


def register_yaml(path: Path) -> None:
    spec = OmegaConf.load(path)
    about = spec.get("about") or {}
    examples = tuple(tuple(str(o) for o in example) for example in (about.get("examples") or [[]]))
    register(str(spec.name), save=save, load=load, formula=count, check=check,
             can_merge=bool(spec.get("can_merge", False)), summary=str(about.get("summary", "")), knobs=knobs_of(spec),
             examples=examples, refuses=tuple(str(r) for r in about.get("refuses") or ()),
             golden={m: tuple(v) for m, v in (about.get("golden") or {}).items()},
             source=str(path), optimizer=make_optimizer, step_hook=step_hook, skips_parameters=skipping(about.get("skips_parameters")))(apply)


def discover() -> None:
    """Register every conf/method/*.yaml that names a peft_type (its file name is its name)."""
    for path in sorted(CONF_METHODS.glob("*.yaml")):
        text = path.read_text()
        if "\npeft_type:" in "\n" + text and path.stem not in METHODS:
            register_yaml(path)


discover()
