"""hydra/launcher=slurm on a real one-node SLURM cluster (.ci/slurm.sh start; CI starts it): the
sweep's points run as SLURM jobs, and what the local launchers promise holds there too: scancel
records `cancelled` and the relaunch reruns only that point, a time limit records `timeout` (rerun
by the relaunch, never counted as a failure), a sweep killed with -9 loses nothing that was
submitted, and two sweeps into one results_dir run each point once.

Without a cluster these tests skip, saying how to start one; with PEFT_BENCH_REQUIRE_SLURM=1 (CI)
a missing cluster fails them instead."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.records.store import failed_attempts, find_success, load_records

ROOT = Path(__file__).resolve().parents[1]


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in out.stdout.split())


if not _cluster_up() and os.environ.get("PEFT_BENCH_REQUIRE_SLURM") == "1":
    raise RuntimeError("PEFT_BENCH_REQUIRE_SLURM=1 but no SLURM node is up (.ci/slurm.sh start)")
cluster = pytest.mark.skipif(not _cluster_up(), reason="no SLURM cluster here: sudo .ci/slurm.sh start")
pytestmark = pytest.mark.system

# The README's cluster command (docs/clusters.md), on the test cluster's partition, one core a point.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=2"]
POINT = ["model=tiny-bert", "task=embedded-sentiment", "tracking=none"]
LONG = 200000  # steps no test waits for: such a point is stopped by scancel, a time limit or a kill


def _command(tmp: Path, name: str, *args: str, launcher: list[str] = SLURM) -> list[str]:
    return [sys.executable, "-m", "bench", "-m", *launcher, *POINT, f"results_dir={tmp / 'records'}",
            f"hydra.sweep.dir={tmp / name}", *args]


def _sweep(tmp: Path, name: str, *args: str, launcher: list[str] = SLURM, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_command(tmp, name, *args, launcher=launcher), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _start(tmp: Path, name: str, *args: str) -> subprocess.Popen:
    log = (tmp / f"{name}.log").open("w")
    return subprocess.Popen(_command(tmp, name, *args), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)


def _records(tmp: Path) -> list[dict]:
    return load_records(tmp / "records") if (tmp / "records").is_dir() else []


def _jobs(tmp: Path, name: str) -> dict[str, Path]:
    """{SLURM job id: its log} of a sweep's points (submitit's folder under the sweep dir)."""
    return {p.parent.name: p for p in (tmp / name / ".submitit").glob("*_*/*_log.err")}


def _wait(predicate, what: str, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(1)
    subprocess.run(["squeue"])
    raise AssertionError(f"timed out waiting for {what}")


def _training(tmp: Path, name: str) -> list[str]:
    """The jobs of this sweep whose point has begun to train (its progress line is in the job's log)."""
    return [job for job, log in _jobs(tmp, name).items() if "train " in log.read_text(errors="replace")]


def _queue_empty(job_prefix: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    return not any(j.startswith(job_prefix) for j in out)


@cluster
def test_points_run_as_slurm_jobs_and_their_records_equal_the_local_launchers(tmp_path):
    slurm = _sweep(tmp_path / "slurm", "sweep", "method=full,lora", "train.max_steps=5")
    assert slurm.returncode == 0, slurm.stdout[-3000:] + slurm.stderr[-3000:]
    assert "Bypassing sacct" not in slurm.stdout + slurm.stderr  # job states come from squeue
    local = _sweep(tmp_path / "local", "sweep", "method=full,lora", "train.max_steps=5", launcher=[])
    assert local.returncode == 0, local.stderr[-3000:]
    on_slurm = {r["run"]["method"]: r for r in _records(tmp_path / "slurm")}
    here = {r["run"]["method"]: r for r in _records(tmp_path / "local")}
    assert set(on_slurm) == set(here) == {"full", "lora"}
    for method in ("full", "lora"):
        a, b = on_slurm[method], here[method]
        assert a["run"]["status"] == b["run"]["status"] == "success"
        assert a["run"]["config_hash"] == b["run"]["config_hash"]  # the launcher is not part of a point's identity
        assert a["env"]["slurm_job"] and b["env"]["slurm_job"] is None
        assert a["env"]["slurm_job"] in _jobs(tmp_path / "slurm", "sweep")  # it ran as that job
        losses_a = [p["loss"] for p in a["curve"]]
        losses_b = [p["loss"] for p in b["curve"]]
        assert losses_a == pytest.approx(losses_b, rel=1e-4)  # deterministic tiny run; thread counts differ (1 vs the machine's)


@cluster
def test_scancel_records_cancelled_and_the_relaunch_reruns_only_that_point(tmp_path):
    args = ("method=lora", f"train.max_steps={LONG},4")
    sweep = _start(tmp_path, "first", *args)
    _wait(lambda: len(_records(tmp_path)) == 1 and len(_jobs(tmp_path, "first")) == 2, "the short point's record")
    long_job = next(j for j in _jobs(tmp_path, "first") if j != _records(tmp_path)[0]["env"]["slurm_job"])
    _wait(lambda: long_job in _training(tmp_path, "first"), "the long point training")
    subprocess.run(["scancel", long_job], check=True)
    assert sweep.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()[-3000:]
    by_steps = {r["run"]["config"]["train"]["max_steps"]: r for r in _records(tmp_path)}
    assert by_steps[4]["run"]["status"] == "success"
    assert by_steps[LONG]["run"]["status"] == "cancelled" and "SIGTERM" in by_steps[LONG]["run"]["error"]
    assert "cancelled" in (tmp_path / "first.log").read_text()  # the sweep's table says so

    again = _start(tmp_path, "again", *args)  # the relaunch: the short point is skipped, the cancelled one trains again
    _wait(lambda: len(_training(tmp_path, "again")) == 1, "the cancelled point training again")
    for job in _jobs(tmp_path, "again"):
        subprocess.run(["scancel", job], check=False)
    assert again.wait(timeout=120) == 0
    log = (tmp_path / "again.log").read_text()
    runs = _records(tmp_path)
    assert sum(r["run"]["config"]["train"]["max_steps"] == 4 for r in runs) == 1  # never run twice
    assert sum(r["run"]["config"]["train"]["max_steps"] == LONG and r["run"]["status"] == "cancelled" for r in runs) == 2, log[-2000:]


@cluster
def test_a_time_limit_records_timeout_and_the_point_is_run_again_not_counted_failed(tmp_path):
    """timeout_min=1: SLURM warns the job (SIGUSR2, signal_delay_s before the limit; its clock may send
    it up to a minute early) or ends it at the limit (SIGTERM); either way the point records `timeout`."""
    done = _sweep(tmp_path, "sweep", "method=lora", f"train.max_steps={LONG}", "hydra.launcher.timeout_min=1",
                  "hydra.launcher.signal_delay_s=30", timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = _records(tmp_path)
    assert record["run"]["status"] == "timeout" and "time limit" in record["run"]["error"]
    digest = record["run"]["config_hash"]
    assert failed_attempts(tmp_path / "records", digest) == []  # max_attempts does not count it
    assert find_success(tmp_path / "records", digest) is None  # so the relaunch runs it again
    assert "timeout" in done.stdout


@cluster
def test_a_sweep_killed_with_9_loses_no_submitted_point_and_the_relaunch_runs_nothing_twice(tmp_path):
    args = ("method=full,lora", "train.max_steps=400")
    sweep = _start(tmp_path, "first", *args)
    _wait(lambda: len(_training(tmp_path, "first")) == 2, "both points training")
    jobs = list(_jobs(tmp_path, "first"))
    sweep.send_signal(signal.SIGKILL)  # the login that submitted the sweep is gone
    sweep.wait()
    _wait(lambda: _queue_empty(jobs[0].split("_")[0]), "the submitted jobs to finish", timeout=300)
    first = _records(tmp_path)
    assert sorted(r["run"]["method"] for r in first) == ["full", "lora"]
    assert all(r["run"]["status"] == "success" for r in first)  # they finished without their sweep
    again = _sweep(tmp_path, "again", *args)
    assert again.returncode == 0, again.stderr[-2000:]
    logs = "".join(p.read_text() for p in (tmp_path / "again" / ".submitit").glob("*_*/*_log.out"))
    assert logs.count("skip:") == 2
    assert len(_records(tmp_path)) == 2  # nothing ran twice


@cluster
def test_two_sweeps_sharing_a_results_dir_run_each_point_once(tmp_path):
    args = ("method=full,lora", "train.max_steps=60")
    a, b = _start(tmp_path, "a", *args), _start(tmp_path, "b", *args)
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0, (tmp_path / "a.log").read_text()[-2000:] + (tmp_path / "b.log").read_text()[-2000:]
    runs = _records(tmp_path)
    assert sorted(r["run"]["method"] for r in runs) == ["full", "lora"]
    assert all(r["run"]["status"] == "success" for r in runs)
    for name in ("a", "b"):  # each sweep's table shows both points (one ran them, the other found them)
        assert (tmp_path / f"{name}.log").read_text().count("| success |") == 2


def test_the_readme_cluster_command_is_the_one_these_tests_run():
    """Runs without a cluster too (it reads files): the README's command is SLURM + POINT's point."""
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("python -m bench -m hydra/launcher=slurm"))
    assert line.split()[4:] == [*SLURM, *POINT[:2], "method=full,lora"]
