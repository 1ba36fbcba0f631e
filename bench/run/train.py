"""One lean training loop for every method: AdamW, warm-up then linear/cosine/constant decay,
gradient accumulation, clipping, periodic evaluation. It never asks which method it is training:
it trains whatever has requires_grad=True."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from omegaconf import DictConfig

from bench.sweep import signals as interrupts

from bench.methods import get_method
from bench.models.heads import get_head
from bench.run import distributed
from bench.run import speed
from bench.run.progress import progress
from bench.tasks import Task


class NonFiniteLoss(RuntimeError):
    """The loss diverged (NaN, infinite, or a windowed mean over train.diverge_factor x its reference,
    see `divergence`): the run fails with this reason instead of training on, and keeps the curve
    up to that step."""

    def __init__(self, message: str, curve: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.curve = curve or []


DIVERGE_WINDOW = 5  # steps averaged before comparing with the reference: one noisy batch is no divergence
CHANCE_LOSS = math.log(2)  # nats: the cross-entropy of a uniform guess over two classes, the fewest a task has


def divergence(losses: list[float], factor: float) -> str | None:
    """Why a run whose losses so far are `losses` (step 1 first, the current step last) has diverged,
    or None while it has not.

    A non-finite loss diverged, whatever the factor. Otherwise, with factor > 0 and at least
    DIVERGE_WINDOW steps, the run diverged when the mean of its last DIVERGE_WINDOW losses exceeds
    factor x reference, where reference = max(step 1's loss, CHANCE_LOSS). Step 1's loss is the one
    taken before any update, so a run that blows up early cannot raise its own yardstick. The floor
    is the loss of a uniform guess over two classes (ln 2 = 0.693 nats; every cross-entropy task has
    at least two outcomes, so chance level is at least that): a run that starts from a model already
    fitting its task (a first loss of 0.0003, say) is judged against chance, not against a near-zero
    loss that noise alone multiplies tenfold. So a run fails only on a rise that is both relative
    (factor x where it started) and absolute (factor x chance: 6.9 nats for factor 10, a geometric
    mean probability of the right answer near 0.001: confidently wrong), which is divergence, not wobble.
    """
    step, last = len(losses), losses[-1]
    if not math.isfinite(last):
        return f"loss is {last} at step {step}"
    if factor <= 0 or step < DIVERGE_WINDOW:
        return None
    mean = statistics.mean(losses[-DIVERGE_WINDOW:])
    reference = max(losses[0], CHANCE_LOSS)
    if mean > factor * reference:
        return (f"mean loss {mean:.4g} over steps {step - DIVERGE_WINDOW + 1}-{step} is over {factor:g}x {reference:.4g}, "
                f"the larger of the first step's loss {losses[0]:.4g} and chance level ln 2")
    return None


@dataclass
class TrainResult:
    optimizer: torch.optim.Optimizer | None
    step_times_s: list[float] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    real_tokens: int = 0  # attention-mask ones: padding excluded
    padded_tokens: int = 0  # every position the model computed, padding included
    max_seq_len: int = 0  # the longest padded batch: what the activation peak scales with
    wall_s: float = 0.0
    stopped: str | None = None  # why training stopped before max_steps (the pruner), else None


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at each step: linear warm-up, then the chosen decay."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_ = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress_)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress_))
        return 1.0

    return factor


def epoch_orders(features: list[dict], batch_size: int, seed: int, group_by_length: bool = False) -> Iterator[list[int]]:
    """Each epoch's example order, reshuffled from the run's seed. With group_by_length, examples
    of similar length sit next to each other, so a batch's dynamic padding pads little. Public so
    that bench.harness.perf can feed its bare loop and Trainer the very same order."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(features), generator=gen).tolist()
        yield length_grouped(order, features, batch_size, gen) if group_by_length else order


def batches(features: list[dict], batch_size: int, seed: int, collate: Callable,
            group_by_length: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches in epoch_orders' order."""
    for order in epoch_orders(features, batch_size, seed, group_by_length):
        for b in range(max(1, len(order) // batch_size)):  # the last partial batch is dropped
            yield collate([features[i] for i in order[b * batch_size : (b + 1) * batch_size]])


GROUP_WINDOW = 50  # batches per window sorted by length: wide enough to pad little, narrow enough to stay random


def length_grouped(order: list[int], features: list[dict], batch_size: int, gen: torch.Generator) -> list[int]:
    """Sort each window of GROUP_WINDOW batches of a shuffled order by length, cut it into batches,
    then shuffle the batches: each batch holds similar lengths, and which batch comes next is random.
    Only whole batches are kept, as without grouping."""
    window = GROUP_WINDOW * batch_size
    groups: list[list[int]] = []
    for w in range(0, len(order), window):
        part = sorted(order[w : w + window], key=lambda i: len(features[i]["input_ids"]))
        groups += [part[b : b + batch_size] for b in range(0, len(part) - batch_size + 1, batch_size)]
    if not groups:  # fewer examples than one batch: keep them all, as without grouping
        return order
    return [i for g in torch.randperm(len(groups), generator=gen).tolist() for i in groups[g]]


def train(model: torch.nn.Module, task: Task, cfg: DictConfig, device: torch.device,
          evaluate: Callable[[], dict[str, Any]] | None = None,
          on_step: Callable[[dict[str, Any]], None] | None = None,
          should_stop: Callable[[int, dict[str, Any]], str | None] | None = None) -> TrainResult:
    """Train for cfg.train.max_steps optimizer steps (or stop after train.stop_after of them, on the
    same schedule: a successive-halving trial's rung); returns timings and the loss curve.
    on_step gets each curve point as it is made (a tracker's live curves); should_stop gets each
    periodic evaluation and returns a reason to stop early (a tuning trial's pruner), or None.

    Data-parallel (bench.run.distributed): every rank draws the same global batches and trains on
    its slice through DistributedDataParallel; each curve point's loss is the mean over the ranks
    (the global batch's), and the result's counts are totals over the ranks. Only rank 0 is given
    `evaluate` (the caller's choice): it evaluates the unwrapped model while the others wait."""
    tcfg = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return TrainResult(optimizer=None)
    method = get_method(str(cfg.method.name))
    head = get_head(task.head)
    betas = (float(tcfg.adam_beta1), float(tcfg.adam_beta2))
    optimizer = method.optimizer(model, cfg.method, float(tcfg.lr), float(tcfg.weight_decay), betas) if method.optimizer else None
    if optimizer is None:  # AdamW over the trainable parameters (a method's variant, LoRA+ or LoRA-FA, brings its own)
        optimizer = torch.optim.AdamW(params, lr=float(tcfg.lr), weight_decay=float(tcfg.weight_decay), betas=betas,
                                      **({"fused": True} if speed.fused_adamw(cfg, device) else {}))
    if speed.settings(cfg)["gradient_checkpointing"]:
        speed.enable_gradient_checkpointing(model)
    skips = method.skips_parameters is not None and method.skips_parameters(cfg.method)
    ddp_model = distributed.wrap(model, device, find_unused=skips)  # DistributedDataParallel under torchrun, else the model itself
    step_model = torch.compile(ddp_model) if speed.settings(cfg)["compile"] else ddp_model  # the same parameters, compiled forward
    max_steps = int(tcfg.max_steps)  # the schedule's length
    last = min(max_steps, int(tcfg.get("stop_after") or max_steps))  # the steps trained
    warmup = int(round(float(tcfg.warmup_ratio) * max_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(str(tcfg.schedule), warmup, max_steps))
    # The global batches, the same on every rank; each rank trains on its slice (distributed.shard)
    data = batches(task.train, int(tcfg.batch_size), int(cfg.seed), task.collate, bool(tcfg.get("group_by_length", False)))
    accum = int(tcfg.grad_accum_steps)
    result = TrainResult(optimizer=optimizer)
    bar = progress(last, "train", every=int(tcfg.log_every), quiet=not distributed.is_main())
    factor = float(tcfg.get("diverge_factor", 0) or 0)
    losses: list[float] = []  # every step's loss, for the divergence rule
    model.train()
    start = time.perf_counter()
    for step in range(1, last + 1):
        interrupts.check()  # a signal whose KeyboardInterrupt a finalizer swallowed
        t0 = time.perf_counter()
        loss_sum = 0.0
        for micro in range(accum):
            whole = next(data)  # the global micro-batch: the same on every rank
            batch = {k: v.to(device) for k, v in distributed.shard(whole).items()}  # this rank's slice (a plain run: all of it)
            weight = distributed.loss_weight(whole, head)  # this slice's share of the whole batch's loss (a plain run: 1)
            if ddp_model is not model:  # all-reduce the gradients once per step, with the last micro-batch (nanoGPT's way)
                ddp_model.require_backward_grad_sync = micro == accum - 1  # type: ignore[assignment]
            with speed.autocast(cfg, device):
                loss = step_model(**batch).loss * weight
            (loss / accum).backward()
            loss_sum += float(loss.detach())
            result.samples += int(batch["input_ids"].shape[0])
            result.real_tokens += int(batch["attention_mask"].sum())
            result.padded_tokens += int(batch["attention_mask"].numel())
            result.max_seq_len = max(result.max_seq_len, int(batch["input_ids"].shape[1]))
        loss_value = distributed.mean(loss_sum / accum, device)  # the global batch's loss: every rank sees the same value
        losses.append(loss_value)
        reason = divergence(losses, factor)
        if reason is not None:
            raise NonFiniteLoss(reason, result.curve)
        if float(tcfg.max_grad_norm) > 0:
            torch.nn.utils.clip_grad_norm_(params, float(tcfg.max_grad_norm))
        optimizer.step()
        scheduler.step()
        if method.step_hook is not None:
            method.step_hook(model, cfg.method, step)
        optimizer.zero_grad(set_to_none=True)  # free the gradients (as Trainer does): zeroing them cost full fine-tuning ~6% a step
        dt = time.perf_counter() - t0
        result.step_times_s.append(dt)
        point: dict[str, Any] = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0], "step_time_s": dt}
        due = int(tcfg.eval_every) > 0 and step % int(tcfg.eval_every) == 0
        if evaluate is not None and due and step < last:
            point["eval"] = {k: v for k, v in evaluate().items() if k != "per_example"}  # the final evaluation keeps them, a curve point does not
            model.train()
        result.curve.append(point)
        if on_step is not None:
            on_step(point)
        bar.set_postfix_str(f"loss {loss_value:.4f}, step time (median of last 20): {statistics.median(result.step_times_s[-20:]):.2f} s")
        bar.update(1)
        if should_stop is not None and "eval" in point:
            result.stopped = should_stop(step, point["eval"])
            if result.stopped:
                break
    bar.close()
    result.wall_s = time.perf_counter() - start
    result.samples, result.real_tokens, result.padded_tokens = distributed.total([result.samples, result.real_tokens, result.padded_tokens], device)
    return result
