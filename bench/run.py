"""One run, top to bottom: validate -> load model + tokenizer -> load task -> apply method ->
train -> evaluate -> measure -> write the record. Every arrow is one plain function call."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from transformers.utils import logging as transformers_logging

from bench import env, estimate, forgetting, inference, measure, models, speed, sweepguard, tracking, tune
from bench.config import validate
from bench.errors import ConfigError
from bench.methods import get_method
from bench.progress import progress
from bench.record import SCHEMA_VERSION, config_hash, write_atomic, write_record
from bench.tasks import get_kind
from bench.tasks.cache import prepare_task
from bench.train import NonFiniteLoss, TrainResult, train


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
            "role": tune.role(cfg),  # trial (scored on validation) | final (tuned lr) | run (lr as configured)
            "study": tune.study_key(plain),  # the point that trials and finals share
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
    return write_record(results_dir, record)


def peak_memory(device: torch.device, rss_before_load: int, peak_reset: bool, phase: str) -> dict[str, Any]:
    """The peak since the last reset. CUDA: the allocator's peak; CPU: peak RSS above the pre-load RSS."""
    if device.type == "cuda":
        return {"device": "cuda", "measure": "max_memory_allocated", "phase": phase,
                "peak_bytes": torch.cuda.max_memory_allocated(device),
                "peak_reserved_bytes": torch.cuda.max_memory_reserved(device)}
    return {"device": "cpu", "phase": phase, "peak_bytes": measure.cpu_peak_bytes() - rss_before_load,
            "measure": "peak RSS minus RSS before the model was loaded" if peak_reset
            else "process-lifetime peak RSS minus pre-load RSS (peak reset unsupported)",
            "rss_before_load_bytes": rss_before_load}


def execute(cfg: DictConfig, record: dict[str, Any], family: str, tracker: tracking.Tracker, threads: int = 0) -> str | None:
    """The measured part of a run; fills `record` in place and returns why training stopped early
    (a tuning trial's pruner), or None. threads: the launcher's share of the cores for this job,
    used when cfg.threads is 0 (auto)."""
    if not sys.stderr.isatty():
        transformers_logging.disable_progress_bar()  # one bar per weight load is noise in logs
    device = pick_device(cfg.device)
    if int(cfg.threads) > 0 or threads > 0:
        torch.set_num_threads(int(cfg.threads) or threads)
    record["env"] = env.describe(device)
    seed_everything(int(cfg.seed))
    method = get_method(cfg.method.name)
    kind = get_kind(cfg.task.kind)
    head = kind.head_for(family)

    tokenizer = models.load_tokenizer(cfg.model)
    task, record["data"] = prepare_task(cfg, kind, tokenizer, family, method.trains)
    data = record["data"]
    print(f"data: {data['train_examples']:,} train + {data['eval_examples']:,} eval examples "
          + ("loaded from the tokenised cache" if data["cache"] == "hit" else "tokenised") + f" in {data['prepare_s']:.2f} s", file=sys.stderr)
    rss_before_load = measure.rss_bytes()  # the baseline of the CPU peak: data ready, no model yet
    t0 = time.perf_counter()
    model = models.load_model(cfg.model, head, task.num_labels, tokenizer, speed.settings(cfg)["attention"])
    load_s = time.perf_counter() - t0
    if cfg.forgetting.enabled:  # the base model's score on general text, before the method touches it
        chunks = forgetting.sample_chunks(cfg.forgetting, tokenizer)
        before = forgetting.score(model.to(device), head, chunks, device)
    model = method.apply(model, cfg.method, task).to(device)
    record["params"] = measure.param_counts(model)
    record["params"]["head_trainable"] = head == "classifier" and method.trains
    record["params"]["what_trains"] = method.summary

    def evaluate() -> dict[str, Any]:
        with speed.autocast(cfg, device):
            return task.evaluate(model, task, cfg.eval, device, progress)

    # The memory peak is reset just before training and read right after it (before the final
    # evaluation); a method that trains nothing is measured over its evaluation instead.
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    peak_reset = measure.reset_cpu_peak() if device.type == "cpu" else True
    pruner = tune.MedianPruner(cfg, record["run"]["study"], task.main_metric) \
        if record["run"]["role"] == "trial" and cfg.get("tune") and cfg.tune.get("prune") else None
    if method.trains:
        result = train(model, task, cfg, device, evaluate, on_step=tracker.log_step, should_stop=pruner.should_stop if pruner else None)
        memory = peak_memory(device, rss_before_load, peak_reset, phase="train")
        quality = evaluate()
    else:
        result = TrainResult(optimizer=None)
        quality = evaluate()
        memory = peak_memory(device, rss_before_load, peak_reset, phase="eval")
    peak = memory["peak_bytes"]
    memory["breakdown"] = measure.breakdown(model, result.optimizer, peak)
    # The estimator's prediction from the config and the longest batch, beside the measurement.
    predicted = estimate.predict(model, head, int(cfg.train.batch_size), result.max_seq_len or 1)
    predicted["peak_ratio"] = peak / predicted["total_bytes"] if predicted["total_bytes"] else None
    memory["estimate"] = predicted
    record["memory"] = memory

    steps = result.step_times_s
    timed = steps[int(cfg.train.timing_warmup_steps):] if len(steps) > int(cfg.train.timing_warmup_steps) else steps
    total_step_s = sum(steps)
    record["speed"] = {
        "steps": len(steps),
        "timing_warmup_steps": int(cfg.train.timing_warmup_steps),
        "step_time_median_s": statistics.median(timed) if timed else None,
        "samples_per_s": result.samples / total_step_s if total_step_s else None,
        "tokens_per_s": result.real_tokens / total_step_s if total_step_s else None,
        "padding_fraction": 1 - result.real_tokens / result.padded_tokens if result.padded_tokens else None,
        "train_wall_s": result.wall_s,
        "model_load_s": load_s,
        "switches": {**speed.settings(cfg), "attention_used": speed.attention_used(model),
                     "fused_adamw_used": bool(result.optimizer is not None and result.optimizer.defaults.get("fused"))},
    }
    record["quality"] = dict(quality)
    record["quality"]["main_metric"] = task.main_metric
    tracker.log_final(len(steps), quality)
    record["curve"] = result.curve
    if cfg.forgetting.enabled:
        after = forgetting.score(model, head, chunks, device)
        record["forgetting"] = forgetting.compare(head, before, after, chunks, cfg.forgetting)

    # Storage: exactly what must be kept for this task, measured from the files written.
    artifact_dir = Path(cfg.results_dir) / "artifacts" / record["run"]["id"]
    method.save(model, artifact_dir)
    record["storage"] = {"bytes": measure.dir_bytes(artifact_dir),
                         "files": sorted(str(p.relative_to(artifact_dir)) for p in artifact_dir.rglob("*") if p.is_file()),
                         "path": str(artifact_dir) if cfg.keep_artifacts else None}

    # Inference cost: served beside a fresh copy of the base model, in this process.
    if cfg.inference.enabled:
        base = models.load_model(cfg.model, head, task.num_labels, tokenizer, speed.settings(cfg)["attention"]) if method.trains else None
        record["inference"] = inference.measure(model, base, task, cfg.inference, device, method.can_merge)
        del base
    if not cfg.keep_artifacts:
        shutil.rmtree(artifact_dir, ignore_errors=True)
        try:
            artifact_dir.parent.rmdir()  # leave no empty artifacts/ folder behind
        except OSError:
            pass  # other runs' artifacts are still there
    return result.stopped


def conclude(record: dict[str, Any], results_dir: Path, tracker: tracking.Tracker, status: str, error: str | None = None) -> dict[str, Any]:
    """Write the record first (the truth), then mirror it to the tracker and close the tracker's run."""
    record["tracking"] = tracker.describe()
    record["run"]["path"] = str(finish(record, results_dir, status, error))
    tracker.close(record)
    return record


def run(cfg: DictConfig, sweep: str | None = None, threads: int = 0) -> dict[str, Any]:
    """Validate, run and record. A ConfigError is raised before anything is written unless the run
    is part of a sweep, where it becomes a failed record so the sweep goes on. An interrupt
    (Ctrl-C, or SIGTERM once `interrupt_on_sigterm` is set) writes a `cancelled` record, then goes on up."""
    results_dir = Path(cfg.results_dir)
    record = new_record(cfg, sweep)
    try:
        family = validate(cfg)
    except ConfigError as exc:
        if sweep is None:
            raise
        return conclude(record, results_dir, tracking.start(cfg, record), "failed", f"config: {exc}")
    tracker = tracking.start(cfg, record)
    try:
        stopped = execute(cfg, record, family, tracker, threads)  # the pruner's reason, if it stopped a trial
    except KeyboardInterrupt as exc:
        conclude(record, results_dir, tracker, "cancelled", f"interrupted ({str(exc) or 'Ctrl-C'})")
        exc.record_path = record["run"]["path"]  # type: ignore[attr-defined]  # the isolated child reports it
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        return conclude(record, results_dir, tracker, "oom", f"{type(exc).__name__}: {exc}")
    except NonFiniteLoss as exc:  # diverged: a failed row with its curve, never a success (and never a tuning choice)
        record["curve"] = exc.curve
        return conclude(record, results_dir, tracker, "failed", f"diverged: {exc}")
    except Exception as exc:  # a failed run is a row with its reason
        record["run"]["traceback"] = traceback.format_exc(limit=8)
        return conclude(record, results_dir, tracker, "failed", f"{type(exc).__name__}: {exc}")
    return conclude(record, results_dir, tracker, "pruned" if stopped else "success", stopped)


_interrupted = False  # set by the first SIGINT/SIGTERM; later ones are ignored


def _raise_interrupt(signum: int, frame: Any) -> None:
    """The first signal interrupts the run; a later one (Ctrl-C pressed twice, the sweep passing on
    a signal that the process group already delivered) is ignored, so it cannot cut short the
    `cancelled` record that the first one is writing."""
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    raise KeyboardInterrupt() if signum == signal.SIGINT else KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_sigterm() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (kill, a cluster's pre-emption, a sweep passing a signal on)
    become one KeyboardInterrupt: the run records itself as cancelled."""
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)


def die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel sends this process SIGTERM when its parent dies, even by kill -9, so a
    killed sweep leaves no orphan run behind (each orphan records itself as cancelled)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(1)


def child_main(spec_path: str, result_path: str) -> None:
    """`python -m bench.run SPEC RESULT`: one sweep point in this fresh process; the record's path
    goes to RESULT for the parent. An interrupted point exits with 130."""
    spec = json.loads(Path(spec_path).read_text())
    parent_pid = int(spec["parent_pid"])
    interrupt_on_sigterm()
    die_with_parent(parent_pid)
    interrupted = False
    try:
        path = run(OmegaConf.create(spec["cfg"]), spec["sweep"], int(spec["threads"]))["run"].get("path")
    except KeyboardInterrupt as exc:
        path, interrupted = getattr(exc, "record_path", None), True
    if os.getppid() == parent_pid:
        write_atomic(Path(result_path), {"path": path})
    else:  # the parent died (a killed sweep): nobody reads the result, so the folder goes (else the next sweep removes it)
        shutil.rmtree(Path(spec_path).parent, ignore_errors=True)
    if interrupted:
        sys.exit(130)


def run_isolated(cfg: DictConfig, sweep: str | None, threads: int = 0) -> dict[str, Any]:
    """Run in a fresh process. Why: Hydra's basic launcher runs a sweep's jobs in one process, and
    memory freed by one run stays in the heap for the next, so the next run's RSS peak above its
    baseline would be too low. A plain subprocess (not multiprocessing) works the same under every
    launcher (joblib's workers, submitit's jobs). A child killed outright (e.g. by the OOM killer)
    still gets a record. An interrupt here (Ctrl-C, or a signal that reached only this process)
    is passed on to the child, which records itself as cancelled; then the sweep stops. The spec
    and result live in a folder that bench.sweepguard names after this process, so it never
    outlives a sweep, and a job of a sweep that is gone starts no point."""
    with sweepguard.point_folder() as tmp:
        spec, result = tmp / "spec.json", tmp / "result.json"
        spec.write_text(json.dumps({"cfg": OmegaConf.to_container(cfg, resolve=True), "sweep": sweep,
                                    "threads": threads, "parent_pid": os.getpid()}))
        child = sweepguard.start_point([sys.executable, "-m", "bench.run", str(spec), str(result)])
        try:
            code = child.wait()
        except KeyboardInterrupt as exc:
            child.send_signal(signal.Signals.__members__.get(str(exc), signal.SIGINT))  # the same signal
            try:
                child.wait(timeout=sweepguard.GRACE_S)  # let it write its cancelled record
            except subprocess.TimeoutExpired:
                child.kill()
            raise
        path = json.loads(result.read_text()).get("path") if result.is_file() else None
    if path is not None:
        record = json.loads(Path(path).read_text())
        record["run"]["path"] = path
        return record
    record = new_record(cfg, sweep)
    how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    if code == -signal.SIGKILL:
        how += " (SIGKILL: the kernel's out-of-memory killer, or kill -9)"
    # The kernel's OOM killer is the usual sender of SIGKILL; SIGINT/SIGTERM before the child's handler was set is a cancel.
    status = "oom" if code == -signal.SIGKILL else "cancelled" if code in (-signal.SIGINT, -signal.SIGTERM, 130) else "failed"
    record["tracking"] = None
    record["run"]["path"] = str(finish(record, Path(cfg.results_dir), status, f"run process {how} before writing its record"))
    return record


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2])
