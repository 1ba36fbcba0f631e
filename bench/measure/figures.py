"""Cost figures, defined as docs/report.md states them: parameter counts from requires_grad, peak memory (CUDA
allocator peak, or CPU peak RSS above the pre-load baseline), and the memory breakdown."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import psutil
import torch
from torch import nn


def logical_numel(p: torch.Tensor) -> int:
    """A parameter's weights as the model sees them: a bitsandbytes 4-bit weight's data is its packed
    bytes (two weights a byte); its quant_state keeps the shape it stands for."""
    shape = getattr(getattr(p, "quant_state", None), "shape", None)
    return int(math.prod(shape)) if shape is not None else p.numel()


def quant_constants(model: nn.Module) -> list[torch.Tensor]:
    """The tensors a quantized base (bitsandbytes) keeps beside its weights' data, which are not
    parameters: 4-bit: each layer's per-block absmax and 16-value code (double quantization: the
    absmax in 8 bits, its own absmax, code and offset); int8: one fp32 scale per row (SCB, which
    the layer moves from its weight to its state at its first forward). [] for any other model."""
    found: dict[int, torch.Tensor] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None:
            tensors = [state.absmax, state.code, getattr(state, "offset", None)]
            if getattr(state, "state2", None) is not None:
                tensors += [state.state2.absmax, state.state2.code]
        elif type(weight).__name__ == "Int8Params":
            tensors = [getattr(weight, "SCB", None), getattr(getattr(module, "state", None), "SCB", None)]
        else:
            continue
        found.update((id(t), t) for t in tensors if isinstance(t, torch.Tensor))
    return list(found.values())


def param_counts(model: nn.Module) -> dict[str, float]:
    """Unique parameters (tied weights counted once), after the method is applied; a quantized
    weight counts the weights it stands for (`logical_numel`)."""
    seen: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        seen[id(p)] = p
    total = sum(logical_numel(p) for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return {"total": total, "trainable": trainable, "percent": 100.0 * trainable / max(total, 1)}


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def reset_cpu_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_peak_bytes() -> int:
    """VmHWM: the highest resident set since the last reset (Linux), else the current RSS."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss_bytes()


def reset_peak(device: torch.device) -> bool:
    """Start the peak over: the CUDA allocator's peak, or the CPU's peak RSS. False when the CPU
    peak cannot be reset (the peak read later is then the process's lifetime peak)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        return True
    return reset_cpu_peak() if device.type == "cpu" else True


def peak_memory(device: torch.device, rss_before_load: int, peak_reset: bool, phase: str) -> dict[str, Any]:
    """The peak since the last reset. CUDA: the allocator's peak; CPU: peak RSS above the pre-load RSS."""
    if device.type == "cuda":
        return {"device": "cuda", "measure": "max_memory_allocated", "phase": phase,
                "peak_bytes": torch.cuda.max_memory_allocated(device),
                "peak_reserved_bytes": torch.cuda.max_memory_reserved(device)}
    return {"device": "cpu", "phase": phase, "peak_bytes": cpu_peak_bytes() - rss_before_load,
            "measure": "peak RSS minus RSS before the model was loaded" if peak_reset
            else "process-lifetime peak RSS minus pre-load RSS (peak reset unsupported)",
            "rss_before_load_bytes": rss_before_load}


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def breakdown(model: nn.Module, optimizer: torch.optim.Optimizer | None, peak: int) -> dict[str, int]:
    """Weights, trainable weights, gradients, optimizer state (from its tensors) and the rest of
    the peak (activations, temporaries and allocator/runtime overhead)."""
    params = {id(p): p for p in model.parameters()}.values()
    weights = tensor_bytes(params) + tensor_bytes(quant_constants(model))  # a quantized base: its data + its constants
    trainable = tensor_bytes(p for p in params if p.requires_grad)
    # One gradient per trainable weight, alive from the backward pass through the optimizer step (so
    # at the peak); the loop frees them between steps (zero_grad(set_to_none=True), the faster way),
    # so they are counted from the weights rather than read after training.
    grads = trainable if optimizer is not None else 0
    opt = 0
    if optimizer is not None:
        opt = sum(tensor_bytes(state.values()) for state in optimizer.state.values())
    return {
        "weights_bytes": weights,
        "trainable_weights_bytes": trainable,
        "gradients_bytes": grads,
        "optimizer_state_bytes": opt,
        "activations_and_other_bytes": max(peak - weights - grads - opt, 0),
    }


def dir_bytes(folder: Path) -> int:
    """Bytes on disk of every file under folder."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def threads() -> int:
    return torch.get_num_threads()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
