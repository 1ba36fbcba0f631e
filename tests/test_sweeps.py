"""Sweeps through the real command line: resume by config hash, kills that never leave a record
that reads as good, and the same records under the basic, joblib and submitit_local launchers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.records.store import load_records
from conftest import ROOT
from wandb_log import read_offline_run

SMALL = ["model=tiny-bert", "method=lora", "train.batch_size=4", "eval.max_examples=8", "eval.batch_size=8",
         "inference.examples=2", "inference.batch_size=2", "forgetting.max_chunks=1"]


def bench(args: list[str], results: Path, sweep_dir: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    where = [f"results_dir={results}"] + ([f"hydra.sweep.dir={sweep_dir}"] if sweep_dir else [])
    return subprocess.run([sys.executable, "-m", "bench", *args, *where], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start(args: list[str], results: Path, log: Path, sweep_dir: Path | None = None) -> subprocess.Popen:
    where = [f"results_dir={results}"] + ([f"hydra.sweep.dir={sweep_dir}"] if sweep_dir else [])
    # SIGINT back to its default in the child: a shell's background job (as a CI runner may start
    # us) inherits SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
    return subprocess.Popen([sys.executable, "-m", "bench", *args, *where], cwd=ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, timeout: float, what: str, detail=None) -> None:
    """Poll `condition` until it holds; else fail naming `what` (and `detail()`, what was seen)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {detail()}" if detail else ""))
        time.sleep(0.2)


def offline_runs(results: Path) -> list[Path]:
    return sorted((results / "wandb").glob("offline-run-*"))


@pytest.mark.system
def test_rerunning_a_sweep_runs_nothing_and_force_reruns_a_point(tmp_path: Path):
    results = tmp_path / "results"
    sweep = ["-m", *SMALL, "method.r=1,2", "train.max_steps=2"]
    first = bench(sweep, results, tmp_path / "sweep1")
    assert first.returncode == 0, first.stderr[-3000:]
    records = load_records(results)
    assert sorted(r["run"]["config"]["method"]["r"] for r in records) == [1, 2]
    assert all(r["run"]["status"] == "success" for r in records)
    runs = offline_runs(results)
    assert len(runs) == 2  # one offline W&B run per point, grouped by the sweep
    for folder in runs:
        wb = read_offline_run(folder)
        assert wb["run"]["run_group"] == str(tmp_path / "sweep1") and wb["run"]["job_type"] == "lora"
        assert wb["exit_code"] == 0

    again = bench(sweep, results, tmp_path / "sweep2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skip: ") == 2
    assert len(load_records(results)) == 2 and len(offline_runs(results)) == 2  # nothing ran
    assert "2 points in this sweep" in again.stdout  # the table still shows both points

    forced = bench(["-m", *SMALL, "method.r=1", "train.max_steps=2", "force=true"], results, tmp_path / "sweep3")
    assert forced.returncode == 0 and "skip: " not in forced.stdout
    assert len(load_records(results)) == 3


@pytest.mark.system
def test_a_killed_sweep_leaves_no_orphan_and_its_relaunch_runs_only_the_missing_points(tmp_path: Path):
    """kill -9 of the sweep mid-point: the point's process dies with it and records itself as
    cancelled; the same command again skips the finished point and completes the rest."""
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    sweep = ["-m", *SMALL, "method.r=1,2,3", "train.max_steps=300", "train.log_every=25", "tracking=none"]
    proc = start(sweep, results, log, tmp_path / "sweep1")
    try:
        wait_for(lambda: len(load_records(results)) == 1, 240, "the first point's record")
        wait_for(lambda: log.read_text().count("train 50/300") == 2, 120, "the second point to be training")
        point = psutil.Process(proc.pid).children(recursive=True)
        assert point, "the sweep runs its point in a child process"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(point, timeout=60)
        assert not alive, "a point outlived its killed sweep"
    finally:
        proc.kill()
    records = load_records(results)
    assert sorted(r["run"]["status"] for r in records) == ["cancelled", "success"]
    cancelled = next(r for r in records if r["run"]["status"] == "cancelled")
    assert cancelled["run"]["error"] == "interrupted (SIGTERM)" and cancelled["run"]["config"]["method"]["r"] == 2
    assert not list(results.glob(".*.tmp"))

    relaunch = bench(sweep, results, tmp_path / "sweep2", timeout=400)
    assert relaunch.returncode == 0, relaunch.stderr[-3000:]
    assert relaunch.stdout.count("skip: ") == 1
    done = [r for r in load_records(results) if r["run"]["status"] == "success"]
    assert sorted(r["run"]["config"]["method"]["r"] for r in done) == [1, 2, 3]


@pytest.mark.system
def test_ctrl_c_records_cancelled_and_kill_9_leaves_nothing_that_reads_as_good(tmp_path: Path):
    args = [*SMALL, "train.max_steps=100000", "train.log_every=20", "tracking=none"]
    for how, sig in (("ctrl-c", signal.SIGINT), ("kill-9", signal.SIGKILL)):
        results, log = tmp_path / how, tmp_path / f"{how}.log"
        proc = start(args, results, log)
        try:
            wait_for(lambda: "train 40/100000" in log.read_text(), 120, "training to start")
            proc.send_signal(sig)
            assert proc.wait(timeout=60) != 0
        finally:
            proc.kill()
        records = load_records(results)
        if how == "ctrl-c":
            assert [r["run"]["status"] for r in records] == ["cancelled"]
            assert records[0]["run"]["error"] == "interrupted (Ctrl-C)"
        else:
            assert records == []  # killed outright: no record at all, so nothing a resume would skip
        for path in results.glob("*.json"):
            json.loads(path.read_text())  # nothing half-written under a record's name


@pytest.mark.system
def test_every_launcher_gives_the_same_records(tmp_path: Path):
    """The same 2-point sweep gives equal figures under the basic, joblib and submitit_local
    launchers (one thread each, so the arithmetic is the same); parallel points write separate,
    whole records and one W&B run each."""
    launchers = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                 "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]}
    figures = {}
    for name, launcher in launchers.items():
        results = tmp_path / name
        proc = bench(["-m", *SMALL, "method.r=1,4", "train.max_steps=3", "threads=1", *launcher], results, tmp_path / f"sweep-{name}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        records = {r["run"]["config"]["method"]["r"]: r for r in load_records(results)}
        assert sorted(records) == [1, 4] and all(r["run"]["status"] == "success" for r in records.values())
        assert all(r["env"]["torch_threads"] == 1 for r in records.values())
        assert len(offline_runs(results)) == 2 and not list(results.glob(".*.tmp"))
        figures[name] = {r: (rec["run"]["config_hash"], rec["params"]["trainable"], [p["loss"] for p in rec["curve"]],
                             rec["quality"]["accuracy"]) for r, rec in records.items()}
    assert figures["joblib"] == figures["basic"] and figures["submitit_local"] == figures["basic"]


@pytest.mark.parametrize("launcher,cores,expected", [
    (None, 8, 0),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 8, 4),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}, 2, 1),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 6}, 64, 6),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", "cpus_per_task": None}, 8, 0),
])
def test_each_parallel_job_gets_its_share_of_the_cores(monkeypatch, launcher, cores: int, expected: int):
    from omegaconf import OmegaConf

    import bench.run.app as entry

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert entry.cores_for_job(OmegaConf.create(launcher) if launcher else None) == expected


@pytest.mark.system
def test_a_points_preset_sweeps_each_method_on_its_own_axes(tmp_path: Path):
    """prompt_tuning_sizes holds prompt tuning (with its prompt length) and full fine-tuning (which
    has none) in one sweep (the points sweeper); model= and seed= on the command line replace the
    preset's lists."""
    results = tmp_path / "results"
    proc = bench(["-m", "experiment=prompt_tuning_sizes", "model=tiny-bert", "seed=0", "task=embedded-sentiment", "train.max_steps=1",
                  "train.batch_size=4", "eval.max_examples=8", "inference.enabled=false", "forgetting.enabled=false",
                  "tracking=none"], results, tmp_path / "sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    points = sorted((r["run"]["method"], r["run"]["config"]["method"].get("num_virtual_tokens") or 0) for r in load_records(results))
    assert points == [("full", 0), ("prompt_tuning", 20)]
    assert all(r["run"]["model"] == "tiny-bert" and r["run"]["status"] == "success" for r in load_records(results))
