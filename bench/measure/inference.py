"""Inference cost: what serving the fine-tuned model costs, beside the base model in the same
process (so the ratio is fair on a shared, noisy machine).

Classification: latency per example at batch 1 and at `inference.batch_size`. Generation: the same
latencies for greedy decoding of exactly `inference.max_new_tokens` tokens per example (no early
stop at EOS, so every variant does the same work), and generated tokens per second.
Variants: `base` (a fresh copy of the base model), `model` (as trained: LoRA unmerged, soft prompt
prepended, adapters hooked), and `merged` for methods that can fold into the weights (LoRA, IA3).
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from typing import Any, Callable

import torch
from omegaconf import DictConfig
from torch import nn

from bench.run.generate import soft_prompt
from bench.tasks import Task, get_kind


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(model: nn.Module, runners: list[Callable[[nn.Module], int]], device: torch.device) -> tuple[float, int]:
    """Seconds and generated tokens to serve every batch once."""
    _sync(device)
    start = time.perf_counter()
    tokens = sum(run(model) for run in runners)
    _sync(device)
    return time.perf_counter() - start, tokens


def merge_fidelity(model: nn.Module, merged: nn.Module, task: Task, features: list[dict], device: torch.device,
                   autocast: Callable[[], Any]) -> dict[str, Any]:
    """How far the merged model's outputs drift from the unmerged one's on the served examples, at
    the run's precision: the largest absolute difference of their logits, and merged minus
    unmerged loss (users ask: peft#1388 saw 2.1178 -> 2.1214 in bf16)."""
    kind = get_kind(task.kind)
    batch = {k: v.to(device) for k, v in (kind.score_batch or (lambda t, f: t.collate(f)))(task, features).items()}
    with autocast():
        out_model, out_merged = model(**batch), merged(**batch)
    diff = (out_merged.logits.float() - out_model.logits.float()).abs().max()
    return {"max_abs_logit_diff": float(diff), "loss_unmerged": float(out_model.loss), "loss_merged": float(out_merged.loss),
            "loss_diff": float(out_merged.loss) - float(out_model.loss), "examples": len(features)}


@torch.no_grad()
def measure(model: nn.Module, base: nn.Module | None, task: Task, icfg: DictConfig, device: torch.device,
            can_merge: bool, autocast: Callable[[], Any] = contextlib.nullcontext) -> dict[str, Any]:
    """Latencies of each variant, interleaved over `inference.repeats` rounds (medians kept)."""
    features = task.eval[: int(icfg.examples)]
    if not features:
        return {"skipped": "no evaluation examples"}
    variants: dict[str, nn.Module] = {"model": model}
    if base is not None:
        variants["base"] = base.to(device)
    if can_merge:
        variants["merged"] = copy.deepcopy(model).merge_and_unload()
    new = int(icfg.max_new_tokens)
    bs = int(icfg.batch_size)
    kind = get_kind(task.kind)  # how its examples are served: a forward pass, or generation
    shapes = {"batch_1": [kind.serve(task, [f], device, new) for f in features],
              f"batch_{bs}": [kind.serve(task, features[i : i + bs], device, new) for i in range(0, len(features), bs)]}
    for m in variants.values():
        m.eval()
        shapes["batch_1"][0](m)  # warm-up: first-call allocations and kernel selection
    times: dict[str, dict[str, list[float]]] = {v: {s: [] for s in shapes} for v in variants}
    tokens: dict[str, dict[str, int]] = {v: {} for v in variants}
    for _ in range(int(icfg.repeats)):
        for shape, runners in shapes.items():
            for name, m in variants.items():  # interleaved: drift hits every variant alike
                seconds, generated = _time(m, runners, device)
                times[name][shape].append(seconds)
                tokens[name][shape] = generated
    out: dict[str, Any] = {"examples": len(features), "batch_size": bs, "repeats": int(icfg.repeats),
                           "extra_input_tokens": soft_prompt(model)[2]}
    if kind.generates:
        out["max_new_tokens"] = new
    for name in variants:
        out[name] = {}
        for shape in shapes:
            seconds = statistics.median(times[name][shape])
            row = {"latency_per_example_s": seconds / len(features)}
            if kind.generates:
                row["generated_tokens"] = tokens[name][shape]
                row["tokens_per_s"] = tokens[name][shape] / seconds if seconds else None
            out[name][shape] = row
    if "merged" in variants:
        out["merge_fidelity"] = merge_fidelity(model, variants["merged"], task, features, device, autocast)
    if "base" in variants:
        out["ratio_to_base"] = {name: {shape: out[name][shape]["latency_per_example_s"] / out["base"][shape]["latency_per_example_s"]
                                       for shape in shapes} for name in variants if name != "base"}
    return out
