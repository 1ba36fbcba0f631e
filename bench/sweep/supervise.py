"""Process supervision of runs: each sweep point in a fresh process (`run_isolated`, whose child
is `python -m bench.sweep.supervise SPEC RESULT`), signals turned into a `cancelled` record, a point
that dies with its parent, and each job's share of the cores.

Why a module of its own: this is about processes, not about what a run measures (bench.run.pipeline).
It loads no torch itself: bench.run.app takes `cores_for_job` from here before the plain checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.sweep import signals as interrupts

from bench.sweep import guard as sweepguard
from bench.records.store import write_atomic


def cores_for_job(launcher: Any) -> int:
    """CPU threads for one job: the cores this process may use, shared among the jobs that the
    launcher runs at once (joblib: n_jobs; submitit: cpus_per_task). 0 = torch's default."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    target = str(launcher.get("_target_", "")).lower() if launcher is not None else ""
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs") or -1)
        parallel = n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)  # joblib: -1 = all cpus
        return max(1, cores // parallel)
    if ("submitit" in target or "slurm" in target) and launcher.get("cpus_per_task"):  # hydra_plugins.peft_bench_slurm too
        return int(launcher.cpus_per_task)
    return 0


def die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel sends this process SIGTERM when its parent dies, even by kill -9, so a
    killed sweep leaves no orphan run behind (each orphan records itself as cancelled)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(1)


def child_main(spec_path: str, result_path: str) -> None:
    """`python -m bench.sweep.supervise SPEC RESULT`: one sweep point in this fresh process; the record's
    path goes to RESULT for the parent. An interrupted point exits with 130."""
    from bench.run.pipeline import run  # torch first: a signal while it loads ends the process outright, as a cancel

    spec = json.loads(Path(spec_path).read_text())
    parent_pid = int(spec["parent_pid"])
    interrupts.install()
    die_with_parent(parent_pid)
    interrupted, why = False, None
    try:
        path = run(OmegaConf.create(spec["cfg"]), spec["sweep"], int(spec["threads"]))["run"].get("path")
    except KeyboardInterrupt as exc:
        path, interrupted, why = getattr(exc, "record_path", None), True, str(exc)
    if os.getppid() == parent_pid:
        write_atomic(Path(result_path), {"path": path, "signal": why})  # the signal names the status of a point stopped before its record began
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
    and result live in a folder that bench.sweep.guard names after this process, so it never
    outlives a sweep, and a job of a sweep that is gone starts no point."""
    from bench.run.pipeline import finish, new_record  # the record of a child that died without writing one

    with sweepguard.point_folder() as tmp:
        spec, result = tmp / "spec.json", tmp / "result.json"
        spec.write_text(json.dumps({"cfg": OmegaConf.to_container(cfg, resolve=True), "sweep": sweep,
                                    "threads": threads, "parent_pid": os.getpid()}))
        child = sweepguard.start_point([sys.executable, "-m", "bench.sweep.supervise", str(spec), str(result)])
        try:
            code = child.wait()
        except KeyboardInterrupt as exc:
            child.send_signal(signal.Signals.__members__.get(str(exc), signal.SIGINT))  # the same signal
            try:
                child.wait(timeout=sweepguard.GRACE_S)  # let it write its cancelled record
            except subprocess.TimeoutExpired:
                child.kill()
            raise
        result_of = json.loads(result.read_text()) if result.is_file() else {}
        path = result_of.get("path")
    if path is not None:
        record = json.loads(Path(path).read_text())
        record["run"]["path"] = path
        return record
    record = new_record(cfg, sweep)
    how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    if code == -signal.SIGKILL:
        how += " (SIGKILL: the kernel's out-of-memory killer, or kill -9)"
    # The kernel's OOM killer is the usual sender of SIGKILL; SIGINT/SIGTERM before the child's handler was set is a cancel.
    status = ("oom" if code == -signal.SIGKILL else "cancelled" if code in (-signal.SIGINT, -signal.SIGTERM, 130)
              else "timeout" if code == -signal.SIGUSR2 else "failed")
    if result_of.get("signal") is not None:  # stopped by a signal before its record began: SIGUSR2 is a time limit
        status = interrupts.status_of(KeyboardInterrupt(result_of["signal"]))
        how += f" ({result_of['signal'] or 'SIGINT'})"
    if status == "timeout":
        how += ": the cluster's time limit"
    record["tracking"] = None
    record["run"]["path"] = str(finish(record, Path(cfg.results_dir), status, f"run process {how} before writing its record"))
    return record


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2])
