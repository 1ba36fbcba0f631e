"""LoRA (through peft): beside each targeted frozen linear W (out x in), train B (out x r) and
A (r x in); the layer computes W x + s B A x with s = alpha / r (rsLoRA: alpha / sqrt(r)), and
B A can be merged into W for inference. DoRA also trains a magnitude vector per output feature.

Trainable parameters = sum over targeted linears of r * (in + out)
                       (+ out per targeted linear with DoRA)
                       (+ the targeted linears' bias sizes with bias=lora_only, every bias with bias=all)
                       + the task head (classifier: hidden * num_labels + num_labels).
Stored per task: the adapter (and the head), via peft's save_pretrained.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.errors import ConfigError
from bench.methods.registry import Probe, head_modules, head_params, int_at_least, load_peft, matches, one_of, own_linears, register, save_peft

BIAS = ("none", "lora_only", "all")
# Defaults for architectures peft has none for, in the spirit of its own (BERT's: query, value).
OUR_DEFAULTS: dict[str, dict[str, list[str]]] = {
    "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING": {"mpnet": ["q", "v"]},
    "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING": {"mpnet": ["k", "v", "output.dense"]},
    "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING": {"mpnet": ["output.dense"]},
}


def default_targets(model_type: str, mapping_name: str = "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING") -> list[str]:
    """peft's per-architecture default (for LoRA: the query/value projections), else ours."""
    from peft.utils import constants

    targets = getattr(constants, mapping_name).get(model_type) or OUR_DEFAULTS.get(mapping_name, {}).get(model_type)
    if not targets:
        raise ConfigError("method.target_modules", None, f"no default for model type {model_type!r}; name the modules")
    return list(targets)


def target_list(method_cfg: DictConfig, model_type: str) -> list[str] | str:
    targets = method_cfg.get("target_modules")
    if targets is None:
        return default_targets(model_type)
    if isinstance(targets, str):
        return targets if targets == "all-linear" else [targets]
    return [str(t) for t in OmegaConf.to_container(targets)]


def check_targets(method_cfg: DictConfig, probe: Probe) -> None:
    """Every named target must be a module of this model; the error lists the ones it has."""
    targets = method_cfg.get("target_modules")
    if targets is None or targets == "all-linear":
        return
    names = [n for n, _ in probe.model.named_modules() if n]
    wanted = [targets] if isinstance(targets, str) else list(targets)
    leaves = sorted({n.rsplit(".", 1)[-1] for n, m in probe.model.named_modules() if isinstance(m, nn.Linear)})
    for name in wanted:
        if not any(n == name or n.endswith("." + name) for n in names):
            raise ConfigError("method.target_modules", name, f"a module of this model, or all-linear; its linear layers are: {', '.join(leaves)}")


def check(method_cfg: DictConfig, probe: Probe | None) -> None:
    int_at_least(method_cfg, "r", 1, "the LoRA rank")
    alpha = method_cfg.get("alpha")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise ConfigError("method.alpha", alpha, "a number > 0 (scale = alpha / r)")
    dropout = method_cfg.get("dropout")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError("method.dropout", dropout, "a number in [0, 1)")
    one_of(method_cfg, "bias", BIAS)
    for key in ("use_rslora", "use_dora"):
        if not isinstance(method_cfg.get(key), bool):
            raise ConfigError(f"method.{key}", method_cfg.get(key), "true or false")
    if probe is not None:
        check_targets(method_cfg, probe)
        hidden = getattr(probe.model.config, "hidden_size", None) or getattr(probe.model.config, "d_model", None)
        if hidden and method_cfg.r > hidden:  # B·A cannot have a rank above the layers' width: only parameters wasted
            raise ConfigError("method.r", method_cfg.r, f"an integer in [1, {hidden}] (the LoRA rank; {probe.cfg.model.name}'s hidden size is {hidden})")


def targeted(base: nn.Module, method_cfg: DictConfig) -> list[nn.Linear]:
    """The linears LoRA wraps: all-linear = every linear but the output layer, else peft's name rule."""
    targets = target_list(method_cfg, base.config.model_type)
    if targets == "all-linear":
        return [m for n, m in own_linears(base) if not n.endswith("lm_head")]
    return [m for n, m in own_linears(base) if matches(n, list(targets))]


def count(base: nn.Module, method_cfg: DictConfig, task: object) -> int:
    layers, r = targeted(base, method_cfg), int(method_cfg.r)
    total = sum(r * (m.in_features + m.out_features) for m in layers)
    if method_cfg.use_dora:
        total += sum(m.out_features for m in layers)
    if method_cfg.bias == "lora_only":
        total += sum(m.bias.numel() for m in layers if m.bias is not None)
    elif method_cfg.bias == "all":
        total += sum(p.numel() for n, p in base.named_parameters() if n.endswith(".bias") and not n.startswith("head."))
    return total + head_params(base)


@register("lora", save=save_peft, load=load_peft, can_merge=True, check=check, formula=count,
          examples=(("method.r=4",), ("method.r=4", "method.use_dora=true", "method.use_rslora=true"),
                    ("method.r=4", "method.bias=lora_only"), ("method.r=4", "method.bias=all")),
          summary="low-rank B·A beside the targeted linear layers (+ a new task head); merges into W",
          knobs="`r`, `alpha`, `dropout`, `target_modules` (names, `all-linear`, null = peft's default), `bias` (`none`/`lora_only`/`all`), `use_rslora`, `use_dora`",
          golden={"tiny-bert": (0.7620141506195068, 0.8537542223930359, 0.8252068161964417),
                  "tiny-llama": (0.6713355779647827, 0.5190596580505371, 0.5629708766937256),
                  "tiny-mpnet": (0.6861892938613892, 0.8765006065368652, 0.8453105092048645),
                  "tiny-gemma3": (0.7263103127479553, 1.0703659057617188, 0.934867262840271)})
def apply_lora(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    from peft import LoraConfig, get_peft_model  # imported here: config validation stays fast

    config = LoraConfig(
        r=int(method_cfg.r),
        lora_alpha=float(method_cfg.alpha),
        lora_dropout=float(method_cfg.dropout),
        target_modules=target_list(method_cfg, model.config.model_type),
        bias=str(method_cfg.bias),
        use_rslora=bool(method_cfg.use_rslora),
        use_dora=bool(method_cfg.use_dora),
        modules_to_save=head_modules(task),
    )
    return get_peft_model(model, config)
