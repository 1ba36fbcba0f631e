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


def step_flops(model: nn.Module, batch: dict[str, torch.Tensor], cfg: DictConfig, device: torch.device) -> float:
    """FLOPs of one training forward and backward on `batch`, counted by torch (matmuls and
    attention: the model FLOPs of MFU, so gradient checkpointing's recompute is not counted). The
    random state is put back and the gradients dropped: the run trains exactly as without it."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = model.training
    model.train()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        with FlopCounterMode(display=False) as counter:
            with autocast(cfg, device):
                loss = model(**batch).loss
            loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return float(counter.get_total_flops())


_PEAK_TFLOPS: dict[str, float | None] = {}


def peak_tflops(device: torch.device) -> float | None:
    """The card's bf16 matmul rate, measured here once per process (8192^3 products, mean of 10
    after 3 warm-ups): MFU's denominator. None off CUDA (a CPU's peak is not a useful yardstick)."""
    if device.type != "cuda":
        return None
    key = str(device)
    if key not in _PEAK_TFLOPS:
        import time

        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(device)
        _PEAK_TFLOPS[key] = 10 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12
        del a, b
        torch.cuda.empty_cache()
    return _PEAK_TFLOPS[key]
