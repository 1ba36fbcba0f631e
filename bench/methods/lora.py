"""LoRA (through peft): beside each targeted frozen linear W (out x in), train B (out x r) and
A (r x in); the layer computes W x + (alpha / r) B A x, and B A can be merged into W.

Trainable parameters = sum over targeted linears of r * (in + out)
                       + the task head (classifier: hidden * num_labels + num_labels).
Stored per task: the adapter (and the head), via peft's save_pretrained.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.errors import ConfigError
from bench.methods import register


def default_targets(model_type: str) -> list[str]:
    """peft's per-architecture default (query/value projections)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
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


def check(method_cfg: DictConfig, module_names: list[str] | None) -> None:
    r = method_cfg.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ConfigError("method.r", r, "an integer >= 1 (the LoRA rank)")
    alpha = method_cfg.get("alpha")
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ConfigError("method.alpha", alpha, "a number > 0 (scale = alpha / r)")
    dropout = method_cfg.get("dropout")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError("method.dropout", dropout, "a number in [0, 1)")
    targets = method_cfg.get("target_modules")
    if module_names is None or targets is None or targets == "all-linear":
        return
    wanted = [targets] if isinstance(targets, str) else list(targets)
    leaves = sorted({n.rsplit(".", 1)[-1] for n in module_names})
    for name in wanted:
        if not any(n == name or n.endswith("." + name) for n in module_names):
            raise ConfigError("method.target_modules", name, f"a module of this model, or all-linear; it has: {', '.join(leaves)}")


def save_adapter(model: nn.Module, folder: Path) -> None:
    model.save_pretrained(str(folder))


@register("lora", save=save_adapter, can_merge=True, check=check, needs_module_names=True)
def apply_lora(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    from peft import LoraConfig, get_peft_model  # imported here: config validation stays fast

    config = LoraConfig(
        r=int(method_cfg.r),
        lora_alpha=float(method_cfg.alpha),
        lora_dropout=float(method_cfg.dropout),
        target_modules=target_list(method_cfg, model.config.model_type),
        bias="none",
        modules_to_save=["head"] if getattr(task, "head", "") == "classifier" else None,
    )
    return get_peft_model(model, config)
