"""One run, top to bottom: validate (bench.config.plan, a Plan) -> load tokenizer, task and model and
apply the method (bench.run.prepare) -> train -> evaluate -> measure -> write the record. Every arrow
is one plain function call; each record section has its helper below `execute`. A sweep's point
runs in its own process (bench.sweep.supervise)."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import statistics
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from transformers.utils import logging as transformers_logging

from bench.config.plan import Plan, validate
from bench.errors import ConfigError
from bench.measure import estimate
from bench.measure import figures as measure
from bench.measure import forgetting
from bench.measure import inference
from bench.methods import Method
from bench.models import sources as models
from bench.models.heads import get_head
from bench.records import env
from bench.records import tracking
from bench.records.store import REFUSED_PREFIX, SCHEMA_VERSION, check_artifact_room, config_hash, find_refusal, role, run_seconds, study_key, umask, write_record
from bench.run import distributed
from bench.run import speed
from bench.run.prepare import Prepared, load_base, prepare
from bench.run.progress import progress
from bench.run.train import NonFiniteLoss, TrainResult, train
from bench.sweep import signals as interrupts
from bench.sweep import tune
from bench.tasks import Task


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_record(cfg: DictConfig, sweep: str | None) -> dict[str, Any]:
    """The record's skeleton, filled as the run goes; status is decided at the end."""
    now = datetime.now(timezone.utc)
    digest = config_hash(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True)
    run_id = f"{now:%Y%m%d-%H%M%S-%f}-{cfg.model.name}-{cfg.task.name}-{cfg.method.name}-s{cfg.seed}-{digest[:8]}"
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": run_id,
            "config_hash": digest,
            "model": str(cfg.model.name),
            "task": str(cfg.task.name),
            "method": str(cfg.method.name),
            "seed": int(cfg.seed) if isinstance(cfg.seed, int) else cfg.seed,
            "sweep": sweep,
            "started_at": now.isoformat(),
            "finished_at": None,
            "status": "running",
            "error": None,
            "random_weights": cfg.model.source == "config",
            "world_size": int(cfg.train.get("world_size", 1)),  # processes that trained it data-parallel (1: one process)
            "role": role(cfg),  # trial (scored on validation) | final (tuned lr) | run (lr as configured)
            "study": study_key(plain),  # the point that trials and finals share
            "config": plain,
        },
        **({"selection": OmegaConf.to_container(cfg.selection, resolve=True)} if cfg.get("selection") else {}),
    }


def finish(record: dict[str, Any], results_dir: Path, status: str, error: str | None = None) -> Path:
    """Close the record and write it: into results_dir, or beside it when results_dir refuses it
    (`write_record` says where on stderr), so a run's work is never lost."""
    record["run"]["status"] = status
    record["run"]["error"] = error
    record["run"]["finished_at"] = datetime.now(timezone.utc).isoformat()
    selection = record.get("selection")
    if status == "success" and isinstance(selection, dict) and selection.get("cost_s") is not None and run_seconds(record["run"]):
        selection["cost_ratio"] = round(float(selection["cost_s"]) / float(run_seconds(record["run"]) or 1.0), 3)  # tuning's cost in units of this final
    return write_record(results_dir, record)


def execute(cfg: DictConfig, record: dict[str, Any], plan: Plan, tracker: tracking.Tracker, threads: int = 0) -> str | None:
    """The measured part of a run; fills `record` in place and returns why training stopped early
    (a tuning trial's pruner), or None. threads: the launcher's share of the cores for this job,
    used when cfg.threads is 0 (auto)."""
    if not sys.stderr.isatty():
        transformers_logging.disable_progress_bar()  # one bar per weight load is noise in logs
    if int(cfg.threads) > 0 or threads > 0:
        torch.set_num_threads(int(cfg.threads) or threads)
    device, method = plan.device, plan.method
    main = distributed.is_main()  # rank 0 (a plain run's one process) evaluates, measures and records; other ranks only train
    record["env"] = env.describe(device)
    seed_everything(int(cfg.seed))  # the same seed on every rank: the same head and adapter draws, the same batches
    ready = prepare(cfg, plan, record, score_base=bool(cfg.forgetting.enabled) and main)  # fills record["data"]
    model, task = ready.model.to(device), ready.task
    record["model"] = model_section(cfg, model)
    record["params"] = params_section(model, plan)
    artifact_dir = Path(cfg.results_dir) / "artifacts" / record["run"]["id"]
    if cfg.keep_artifacts and main:  # before training: a results_dir that cannot hold them would fail the run at its end
        check_artifact_room(cfg.results_dir, saved_tensor_bytes(model))

    by_loss = tune.scored_metric(cfg) == "loss" and record["run"]["role"] == "trial"  # a trial scored by the loss on its references: no generation

    def evaluate() -> dict[str, Any]:
        with speed.autocast(cfg, device):
            if by_loss:
                return task.score_loss(model, task, cfg.eval, device, progress)  # type: ignore[misc]  (checked: the kind has one)
            return task.evaluate(model, task, cfg.eval, device, progress)

    # The memory peak is reset just before training and read right after it (before the final
    # evaluation); a method that trains nothing is measured over its evaluation instead.
    flops = None if record["run"]["role"] == "trial" else count_flops(cfg, plan, task, model)  # before the peak's reset: its extra step is not in the peak (every rank: peaks measured alike); a trial's speed is not reported, and its extra step would be tuning cost
    peak_reset = measure.reset_peak(device)
    should_stop = trial_pruner(cfg, record)
    if method.trains:
        # Data-parallel, rank 0 alone evaluates (periodically and at the end), with the unwrapped
        # model on the whole eval split; the other ranks wait for it at their next step.
        result = train(model, task, cfg, device, evaluate if main else None, on_step=tracker.log_step, should_stop=should_stop)
        memory = measure.peak_memory(device, ready.rss_before_load, peak_reset, phase="train")
        peaks = distributed.gather(memory["peak_bytes"])  # every rank's training peak, in rank order (a plain run: its own)
        if not main:
            return None  # this rank's part is done: rank 0 records the run
        quality = evaluate()
    else:  # (never data-parallel: validation refuses train.world_size > 1 for a method that trains nothing)
        result = TrainResult(optimizer=None)
        quality = evaluate()
        memory = measure.peak_memory(device, ready.rss_before_load, peak_reset, phase="eval")
        peaks = [memory["peak_bytes"]]
    memory["peak_bytes_per_rank"] = peaks
    record["memory"] = memory_section(memory, model, plan.head, result, int(cfg.train.batch_size), int(cfg.train.get("world_size", 1)))
    record["speed"] = speed_section(cfg, result, model, ready.load_s, flops, device)
    record["quality"] = {**quality, "main_metric": "loss" if by_loss else task.main_metric}
    tracker.log_final(len(result.step_times_s), quality)
    record["curve"] = result.curve
    if cfg.forgetting.enabled:  # the same general text as before the method was applied
        chunks, before = ready.base_score
        record["forgetting"] = forgetting.compare(plan.head, before, forgetting.score(model, plan.head, chunks, device), chunks, cfg.forgetting)
    record["storage"] = storage_section(method, model, artifact_dir, cfg.keep_artifacts)
    if cfg.inference.enabled:
        record["inference"] = inference_section(cfg, plan, ready, model)
    return result.stopped


def model_section(cfg: DictConfig, model: nn.Module) -> dict[str, Any]:
    """The base as loaded: its dtype, its quantization (model.quantize) and what the quantized
    weights hold: how many linear layers and weights, their stored bytes and their constants'."""
    dtype, quantize = str(cfg.model.get("dtype", "float32")), cfg.model.get("quantize")
    quantized = models.quantized_weights(model)
    return {"name": str(cfg.model.name), "dtype": dtype, "quantize": quantize, "double_quant": bool(cfg.model.get("double_quant", False)),
            "weights_dtype": quantize or dtype,  # how the base's linear layers are stored
            "quantized_layers": len(quantized), "quantized_params": sum(measure.logical_numel(p) for p in quantized),
            "quantized_bytes": measure.tensor_bytes(quantized),
            "quantization_constants_bytes": measure.tensor_bytes(measure.quant_constants(model))}


def params_section(model: nn.Module, plan: Plan) -> dict[str, Any]:
    """Parameter counts after the method is applied, and what trains."""
    params = measure.param_counts(model)
    params["head_trainable"] = get_head(plan.head).new_head and plan.method.trains
    params["what_trains"] = plan.method.summary
    return params


def trial_pruner(cfg: DictConfig, record: dict[str, Any]) -> Callable[[int, dict[str, Any]], str | None] | None:
    """A tuning trial's pruner (its should_stop: the median rule, on what the trial is scored by), or
    None for every other run and for successive halving's trials, which stop at their rung's budget
    (train.stop_after)."""
    if record["run"]["role"] == "trial" and cfg.get("tune") and cfg.tune.get("prune"):
        pruner = tune.pruner_for(cfg, record["run"]["study"], tune.scored_metric(cfg))
        return pruner.should_stop if pruner is not None else None
    return None


def memory_section(memory: dict[str, Any], model: nn.Module, head: str, result: TrainResult, batch_size: int,
                   world_size: int = 1) -> dict[str, Any]:
    """The measured peak with its breakdown, and beside it the estimator's prediction from the
    config and the longest batch. Data-parallel: rank 0's peak against the estimator's one device
    of world_size under DDP (its share of the batch, and DDP's gradient buckets)."""
    peak = memory["peak_bytes"]
    memory["breakdown"] = measure.breakdown(model, result.optimizer, peak)
    if world_size > 1:
        predicted = estimate.predict_devices(model, head, batch_size, result.max_seq_len or 1, world_size)
        total = predicted["data_parallel"]["ddp_bytes"]
    else:
        predicted = estimate.predict(model, head, batch_size, result.max_seq_len or 1)
        total = predicted["total_bytes"]
    predicted["peak_ratio"] = peak / total if total else None
    memory["estimate"] = predicted
    return memory


def count_flops(cfg: DictConfig, plan: Plan, task: Task, model: nn.Module) -> tuple[float, int] | None:
    """(training FLOPs, padded tokens) of the first training batch, or None (speed.count_flops off,
    or nothing trains)."""
    if not plan.method.trains or not plan.speed.count_flops or not task.train:
        return None
    batch = task.collate(task.train[: int(cfg.train.batch_size)])
    return speed.step_flops(model, batch, cfg, plan.device), int(batch["attention_mask"].numel())


def speed_section(cfg: DictConfig, result: TrainResult, model: nn.Module, load_s: float,
                  flops: tuple[float, int] | None = None, device: torch.device | None = None) -> dict[str, Any]:
    """Step times after the warm-up steps, throughput over every step, the switches in force, and
    the FLOP rate: FLOPs per padded token (counted on the first batch) x the padded tokens trained /
    the time of every step; MFU divides it by the card's measured bf16 peak (CUDA only). Per token,
    since batches differ in length; attention's share grows with length, so it is approximate
    where lengths vary."""
    steps, warmup = result.step_times_s, int(cfg.train.timing_warmup_steps)
    timed = steps[warmup:] if len(steps) > warmup else steps
    total_step_s = sum(steps)
    per_token = flops[0] / flops[1] if flops and flops[1] else None
    tflops = per_token * result.padded_tokens / total_step_s / 1e12 if per_token and total_step_s else None
    peak = speed.peak_tflops(device) if tflops and device is not None else None
    return {
        "steps": len(steps),
        "timing_warmup_steps": warmup,
        "step_time_median_s": statistics.median(timed) if timed else None,
        "samples_per_s": result.samples / total_step_s if total_step_s else None,
        "tokens_per_s": result.real_tokens / total_step_s if total_step_s else None,
        "padding_fraction": 1 - result.real_tokens / result.padded_tokens if result.padded_tokens else None,
        "train_wall_s": result.wall_s,
        "model_load_s": load_s,
        "flops_per_token": per_token,
        "tflops_per_s": tflops,
        "peak_tflops": peak,
        "mfu": tflops / peak if tflops and peak else None,
        "switches": {**speed.settings(cfg), "attention_used": speed.attention_used(model),
                     "fused_adamw_used": bool(result.optimizer is not None and result.optimizer.defaults.get("fused"))},
    }


def saved_tensor_bytes(model: nn.Module) -> int:
    """What a method's save will write, sized before training: the tensors that train (each once,
    a tied weight too) x their dtype's size. Every method saves what it trains (full: every
    parameter, an adapter: its own weights and the head, none: nothing), beside small configs."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def measured(folder: Path, path: str | None) -> dict[str, Any]:
    """The storage section of the files in `folder`: their bytes on disk and names."""
    return {"bytes": measure.dir_bytes(folder),
            "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
            "path": path}


def write_failure(exc: BaseException) -> bool:
    """An exception of the filesystem refusing a write (a full disk, `ulimit -f`): an OSError, or
    safetensors' own error wrapping one ("I/O error: File too large (os error 27)")."""
    return isinstance(exc, OSError) or (type(exc).__name__ == "SafetensorError" and "I/O error" in str(exc))


def storage_section(method: Method, model: nn.Module, artifact_dir: Path, keep: bool) -> dict[str, Any]:
    """Exactly what must be kept for this task, measured from the files the method writes.

    Kept (keep_artifacts=true): written into a hidden folder beside artifact_dir, then renamed to
    it, so a save that fails (the disk filled up during training) leaves nothing behind; the room
    was checked before training (`check_artifact_room`). Not kept: written into a temporary folder
    outside results_dir, measured and removed, so nothing goes into results_dir; where even that
    cannot be written, the figure is the tensors' bytes (`saved_tensor_bytes`) and the section says
    so (`estimated`), rather than failing a finished run over its measurement."""
    if keep:
        artifact_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=artifact_dir.parent, prefix=f".{artifact_dir.name}.", suffix=".partial"))
        try:
            os.chmod(staging, 0o777 & ~umask())  # mkdtemp's 0700 would hide the artifacts from a team sharing results_dir
            method.save(model, staging)
            os.rename(staging, artifact_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            try:
                artifact_dir.parent.rmdir()  # leave no empty artifacts/ folder behind
            except OSError:
                pass  # other runs' artifacts are there
            raise
        return measured(artifact_dir, str(artifact_dir))
    with tempfile.TemporaryDirectory(prefix="peft-bench-storage-") as tmp:
        folder = Path(tmp) / artifact_dir.name
        try:
            method.save(model, folder)
        except Exception as exc:
            if not write_failure(exc):
                raise
            return {"bytes": saved_tensor_bytes(model), "files": [], "path": None,
                    "estimated": f"the tensors' bytes: their files could not be written to be measured ({exc})"}
        return measured(folder, None)


def inference_section(cfg: DictConfig, plan: Plan, ready: Prepared, model: nn.Module) -> dict[str, Any]:
    """Inference cost: the trained model served beside a fresh copy of the base model, in this process."""
    base = load_base(cfg, plan, ready.task, ready.tokenizer) if plan.method.trains else None
    return inference.measure(model, base, ready.task, cfg.inference, plan.device, plan.method.can_merge,
                             autocast=lambda: speed.autocast(cfg, plan.device))


def conclude(record: dict[str, Any], results_dir: Path, tracker: tracking.Tracker, status: str, error: str | None = None) -> dict[str, Any]:
    """Write the record first (the truth), then mirror it to the tracker and close the tracker's run."""
    record["tracking"] = tracker.describe()
    record["run"]["path"] = str(finish(record, results_dir, status, error))
    tracker.close(record)
    return record


def run(cfg: DictConfig, sweep: str | None = None, threads: int = 0, checked: bool = False) -> dict[str, Any]:
    """Validate, run and record. A ConfigError is raised before anything is written unless the run
    is part of a sweep, where it becomes a failed record so the sweep goes on. `checked`: the
    caller ran the plain checks already (bench.run.app, before torch loaded); they run once. An interrupt
    (Ctrl-C, or SIGTERM once bench.sweep.signals.install is set) writes a `cancelled` record (SIGUSR2, a
    cluster's time-limit warning: `timeout`), then goes on up."""
    results_dir = Path(cfg.results_dir)
    record = new_record(cfg, sweep)
    try:
        distributed.check_launch(cfg)  # train.world_size > 1: this process must be one of that many torchrun processes
        plan = validate(cfg, checked=checked)
    except ConfigError as exc:
        if sweep is None:
            raise
        record["run"]["refused"] = True  # a property of the config, not of this attempt: a relaunch skips it (refused_again)
        return conclude(record, results_dir, tracking.start(cfg, record), "failed", f"{REFUSED_PREFIX}{exc}")
    if not distributed.is_main():
        return train_other_rank(cfg, record, plan, threads)
    tracker = tracking.start(cfg, record)
    try:
        if distributed.launched():  # join a data-parallel run (on CUDA: this rank's GPU)
            plan = dataclasses.replace(plan, device=distributed.init(plan.device))
        stopped = execute(cfg, record, plan, tracker, threads)  # the pruner's reason, if it stopped a trial
        interrupts.check()  # a signal whose interrupt was swallowed is a cancel, never a success
    except KeyboardInterrupt as exc:
        interrupts.recording()
        status = interrupts.status_of(exc)
        why = f"the cluster's time limit ({str(exc) or 'Ctrl-C'})" if status == "timeout" else f"interrupted ({str(exc) or 'Ctrl-C'})"
        conclude(record, results_dir, tracker, status, why)
        exc.record_path = record["run"]["path"]  # type: ignore[attr-defined]  # the isolated child reports it
        exc.status = status  # type: ignore[attr-defined]  # the single run's one line names it (asked of SLURM once)
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        return conclude(record, results_dir, tracker, "oom", f"{type(exc).__name__}: {exc}")
    except NonFiniteLoss as exc:  # diverged: a failed row with its curve, never a success (and never a tuning choice)
        record["curve"] = exc.curve
        return conclude(record, results_dir, tracker, "failed", f"diverged: {exc}")
    except Exception as exc:  # a failed run is a row with its reason
        record["run"]["traceback"] = traceback.format_exc(limit=8)
        return conclude(record, results_dir, tracker, "failed", f"{type(exc).__name__}: {exc}")
    finally:
        distributed.finish()  # leave a data-parallel run's process group (a plain run: nothing)
    return conclude(record, results_dir, tracker, "pruned" if stopped else "success", stopped)


def train_other_rank(cfg: DictConfig, record: dict[str, Any], plan: Plan, threads: int) -> dict[str, Any]:
    """A data-parallel run's rank other than 0: it trains its slices and writes nothing (no record,
    no tracker, no artifacts). A loss that diverged diverged on every rank alike, so rank 0 records
    it and this rank ends quietly; any other error goes up, and torchrun then stops the run (rank 0
    records it as failed or cancelled)."""
    try:
        plan = dataclasses.replace(plan, device=distributed.init(plan.device))
        execute(cfg, record, plan, tracking.Tracker(), threads)
    except NonFiniteLoss:
        pass
    finally:
        distributed.finish()
    return record


def refused_again(cfg: DictConfig, digest: str | tuple[str, ...]) -> tuple[Path, str] | None:
    """(record, refusal) when results_dir holds this point's refusal by its config and validation
    (no weights: a second or so) still refuses it the same way, so a sweep's relaunch skips the
    point instead of recording the same refusal again. None when there is no refusal, or when the
    config now passes or is refused otherwise: whether some checks pass depends on the machine
    (data under data_root, a cached model, CUDA), so such a point runs again and records why."""
    found = find_refusal(cfg.results_dir, digest)
    if found is None:
        return None
    try:
        validate(cfg)
    except ConfigError as exc:
        return found if str(exc) == found[1] else None
    except Exception:  # not a refusal: the point's own run records it
        return None
    return None
