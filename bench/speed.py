"""The speed switches (config `speed.*`): each changes how fast a run goes, not what it trains, and
each is recorded with the run so a step time is never read without them."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The speed section with its defaults (records made before it existed lack it)."""
    sp = cfg.get("speed") or {}
    return {"attention": sp.get("attention", "auto"), "precision": sp.get("precision", "fp32"), "compile": bool(sp.get("compile", False)),
            "gradient_checkpointing": bool(sp.get("gradient_checkpointing", False)), "fused_adamw": sp.get("fused_adamw", "auto")}


def autocast(cfg: DictConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for speed.precision=bf16 (matmuls in bf16, reductions and weights in fp32)."""
    if settings(cfg)["precision"] == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fused_adamw(cfg: DictConfig, device: torch.device) -> bool:
    """auto: the fused AdamW kernel on CUDA (one kernel for all parameters), torch's default elsewhere."""
    setting = settings(cfg)["fused_adamw"]
    return device.type == "cuda" if setting == "auto" else bool(setting)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations in the backward pass (non-reentrant, so frozen inputs and
    soft prompts need no special handling). The transformers model inside any wrapper is found."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing:
            if hasattr(module, "activation_checkpointing_enable"):  # transformers 5's name
                module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            return
    raise ValueError("speed.gradient_checkpointing: this model has no transformers block that supports it; set it to false")


def attention_used(model: nn.Module) -> str | None:
    """The attention kernel the loaded model actually runs (transformers may fall back from SDPA)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            return config._attn_implementation
    return None
