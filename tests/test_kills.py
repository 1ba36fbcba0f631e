"""Kills and signals under every launcher (bench/sweep/guard.py): killing a sweep, even with
kill -9, takes every running point and worker with it, each point records itself `cancelled`,
no new point starts; a signal sent to the sweep alone reaches its points at once; an interrupted
single run says so in one line; no temp folder outlives its owner; a second signal cannot cut
short a `cancelled` record.

The processes of a killed sweep are re-parented away from the test's tree, so the test finds them
by a unique environment variable that every one of them inherits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
import torch

import bench.run.pipeline as run_module
from bench.sweep import signals as interrupts
from bench.sweep import guard as sweepguard
from bench.records.store import load_records
from conftest import ROOT, build
from test_sweeps import SMALL, start, wait_for

TOKEN = "PEFT_BENCH_TEST_TOKEN"  # set by each test; inherited by every process the test starts
LONG = [*SMALL, "train.max_steps=100000", "train.log_every=20", "tracking=none", "threads=1"]
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
             "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]}


def marked(token: str) -> list[psutil.Process]:
    """Every process (but this one) whose environment carries the test's token."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(TOKEN) == token:
                found.append(proc)
        except psutil.Error:
            pass  # ended meanwhile, or not ours to read
    return found


def survivors(token: str) -> str:
    """What still runs of the test's processes, for a failure's message."""
    lines = []
    for proc in marked(token):
        try:
            lines.append(f"{proc.pid} ({proc.status()}, parent {proc.ppid()}): {' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            pass
    return "; ".join(lines)


def kill_all(token: str) -> None:
    """The test's own processes, wherever they were re-parented: none outlives a failed test."""
    for proc in marked(token):
        try:
            proc.kill()
        except psutil.Error:
            pass


def training(log: Path, sweep_dir: Path) -> int:
    """How many points have reached step 40: the sweep's log, and submitit's per-job logs."""
    files = [log, *sweep_dir.rglob("*.err")] if sweep_dir.is_dir() else [log]
    return sum(f.read_text(errors="replace").count("train 40/100000") for f in files if f.is_file())


def owned_folders(pids: set[int]) -> list[Path]:
    """Temp folders and stop marks named after any of these processes."""
    return [p for p in Path(tempfile.gettempdir()).glob(f"{sweepguard.FOLDER_PREFIX}*")
            if (m := sweepguard.OWNED.match(p.name)) and int(m.group(1).split("-")[0]) in pids]


@pytest.fixture
def token(monkeypatch) -> str:
    value = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN, value)
    yield value
    kill_all(value)


@pytest.mark.system
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "basic"])
def test_kill_9_of_a_parallel_sweep_takes_every_point_and_worker_with_it(tmp_path: Path, token: str, launcher: str):
    """Before the fix, joblib's loky workers (and their resource trackers) and submitit's jobs
    outlived a kill -9 of the sweep, their points trained on, and a worker started the third
    point ~22 s later."""
    results, log, sweep_dir = tmp_path / "results", tmp_path / "sweep.log", tmp_path / "sweep"
    points = "method.r=1,2,3" if launcher != "submitit_local" else "method.r=1,2"  # submitit starts every job at once
    proc = start(["-m", *LONG, points, *LAUNCHERS[launcher]], results, log, sweep_dir)
    try:
        running = 1 if launcher == "basic" else 2
        wait_for(lambda: training(log, sweep_dir) == running, 300, f"{running} points to be training")
        procs = marked(token)
        family, cmdlines = {p.pid for p in procs}, " ".join(" ".join(p.cmdline()) for p in procs)
        for kind in {"joblib": ["loky.backend.popen_loky_posix", "resource_tracker"],
                     "submitit_local": ["submitit.local._local", "submitit.core._submit"]}.get(launcher, []):
            assert kind in cmdlines  # the workers and trackers whose end is checked below
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        wait_for(lambda: not marked(token), 30, "every process of the killed sweep to end", lambda: survivors(token))
        print(f"{launcher}: every process gone {time.monotonic() - killed:.1f} s after the kill")
        time.sleep(20)  # an orphaned worker used to start the next point ~22 s after the kill
        assert not marked(token), "a process came back after the sweep was killed"
    finally:
        proc.kill()
        kill_all(token)
    records = load_records(results)
    assert [r["run"]["status"] for r in records] == ["cancelled"] * running
    assert all(r["run"]["error"] == "interrupted (SIGTERM)" for r in records)
    assert sorted(r["run"]["config"]["method"]["r"] for r in records) == [1, 2][:running]  # the third never started
    sweepguard.remove_stale_folders()  # what the next sweep does first (a point usually removed its folder itself)
    assert not owned_folders(family), "a temp folder outlived its killed owner"


@pytest.mark.system
@pytest.mark.parametrize("launcher,sig", [("basic", signal.SIGINT), ("basic", signal.SIGTERM), ("joblib", signal.SIGINT),
                                          ("submitit_local", signal.SIGTERM)])
def test_a_signal_to_the_sweep_alone_reaches_its_running_points_at_once(tmp_path: Path, token: str, launcher: str, sig: int):
    """Before the fix, SIGINT to the sweep's pid (not its process group) blocked ~61 s while the
    point trained on, then the point was killed without a record."""
    results, log, sweep_dir = tmp_path / "results", tmp_path / "sweep.log", tmp_path / "sweep"
    points = "method.r=1,2,3" if launcher != "submitit_local" else "method.r=1,2"  # submitit starts every job at once
    proc = start(["-m", *LONG, points, *LAUNCHERS[launcher]], results, log, sweep_dir)
    running = 1 if launcher == "basic" else 2
    try:
        wait_for(lambda: training(log, sweep_dir) == running, 300, f"{running} points to be training")
        family, sweep_owner = {p.pid for p in marked(token)}, sweepguard.identity(proc.pid)
        sent = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 130
        took = time.monotonic() - sent
        records = load_records(results)  # the sweep exits after its points have recorded themselves
        wait_for(lambda: not marked(token), 30, "every process of the stopped sweep to end")
    finally:
        proc.kill()
        kill_all(token)
    assert took < 15, f"the sweep took {took:.0f} s to stop"
    assert [r["run"]["status"] for r in records] == ["cancelled"] * running
    why = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert all(r["run"]["error"] == f"interrupted ({why})" for r in records)
    assert f"sweep stopped by {signal.Signals(sig).name}: {running} running point(s) got the signal" in log.read_text()
    assert len(load_records(results)) == running  # no point started after the signal
    # What is left is the sweep's stop mark (jobs start nothing while it waits); the next sweep removes it.
    assert owned_folders(family) == [sweepguard.stop_mark(sweep_owner)]
    sweepguard.remove_stale_folders()
    assert not owned_folders(family)


@pytest.mark.system
@pytest.mark.parametrize("sig,why", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_an_interrupted_single_run_says_so_in_one_line_and_exits_130(tmp_path: Path, sig: int, why: str):
    """Before the fix, Ctrl-C of a single run printed a 70-line traceback."""
    results, log = tmp_path / "results", tmp_path / "run.log"
    proc = start(LONG, results, log)
    try:
        wait_for(lambda: "train 40/100000" in log.read_text(), 120, "training to start")
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    [path] = results.glob("*.json")
    record = json.loads(path.read_text())
    assert record["run"]["status"] == "cancelled" and record["run"]["error"] == f"interrupted ({why})"
    text = log.read_text()
    after = [line for line in text[text.index("train 40/100000"):].split("\n")[1:] if line and not line.startswith("train ")]
    assert after == [f"run cancelled ({why}): its record is {path}"]  # progress lines aside
    assert "Traceback" not in log.read_text()


def test_a_point_folder_is_named_after_its_owner_and_removed_even_on_error(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError):
        with sweepguard.point_folder() as folder:
            assert folder.parent == tmp_path and folder.name.startswith(f"peft-bench-{sweepguard.identity()}-")
            (folder / "spec.json").write_text("{}")
            raise RuntimeError("the point failed")
    assert list(tmp_path.iterdir()) == []


def test_stale_folders_of_dead_owners_are_removed_and_live_or_foreign_ones_kept(monkeypatch, tmp_path: Path):
    """Before the fix every parent kill left a peft-bench-* folder behind for good."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner = sweepguard.identity(dead.pid)
    dead.wait()
    stale = tmp_path / f"peft-bench-{dead_owner}-abc"
    stale.mkdir()
    (stale / "result.json").write_text("{}")
    stale_mark = sweepguard.stop_mark(dead_owner)
    stale_mark.touch()
    live = tmp_path / f"peft-bench-{sweepguard.identity()}-def"
    live.mkdir()
    foreign = tmp_path / "peft-bench-x7k2q9"  # no owner in the name (an older version's, still in use)
    foreign.mkdir()
    assert sorted(sweepguard.remove_stale_folders()) == sorted([stale, stale_mark])
    assert sorted(tmp_path.iterdir()) == sorted([live, foreign])


def test_a_reused_pid_or_a_zombie_is_not_the_sweep():
    me = sweepguard.identity()
    pid, started = me.split("-")
    assert sweepguard.is_alive(me)
    assert not sweepguard.is_alive(f"{pid}-{int(started) - 1}")  # same pid, another process's start time
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = sweepguard.identity(child.pid)
    wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10, "the child to exit")
    assert psutil.pid_exists(child.pid) and not sweepguard.is_alive(owner)  # killed, not yet reaped: gone
    child.wait()


JOB = """
import os, sys, time
from bench.sweep import guard as sweepguard
os.environ[sweepguard.MARK] = sys.argv[1]
sweepguard.watch_sweep()
print("watching", flush=True)
with sweepguard.point_folder() as folder:
    point = sweepguard.start_point([sys.executable, "-c", sys.argv[2], str(folder / "cancelled")])
    print("point", point.pid, folder, flush=True)
    point.wait()
    print("point ended", flush=True)
time.sleep(30)  # the follower ends this process first
print("still here", flush=True)
"""
POINT = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, lambda *a: (Path(sys.argv[1]).write_text("cancelled"), time.sleep(0.5), sys.exit(130)))
while True:
    time.sleep(0.05)
"""


def test_a_job_follows_its_sweep_and_cancels_its_point_when_the_sweep_is_gone(tmp_path: Path):
    """The mechanism under joblib and submitit, in seconds: a stand-in sweep process dies; the job's
    follower SIGTERMs the point, lets it finish (its cancel handler runs), then ends the job."""
    sweep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    mark = f"{sweepguard.identity(sweep.pid)}@{socket.gethostname()}"
    job = subprocess.Popen([sys.executable, "-c", JOB, mark, POINT], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert job.stdout.readline() == "watching\n"
        _, pid, folder = job.stdout.readline().split()
        point = psutil.Process(int(pid))
        sweep.kill()
        sweep.wait()
        killed = time.monotonic()
        assert job.wait(timeout=10) == 130
        assert time.monotonic() - killed < 3  # polled every 0.5 s, plus the point's 0.5 s to record itself
        assert not point.is_running()
        out = job.stdout.read()
        assert "point ended" in out and "still here" not in out
        assert not Path(folder).exists()  # the job cleaned up its point before it went
    finally:
        sweep.kill()
        job.kill()
    refused = subprocess.run([sys.executable, "-c", JOB, mark, POINT], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 130 and "watching" not in refused.stdout  # no point for a sweep that is gone
    assert "not starting a point: its sweep" in refused.stderr


def test_a_second_signal_cannot_cut_short_the_cancelled_record(cfg_factory, monkeypatch):
    """SIGTERM interrupts the run; SIGINT and SIGTERM again while its cancelled record is written
    are ignored, and the record is whole."""
    cfg = cfg_factory("model=tiny-bert")

    def interrupted_training(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises here
        raise AssertionError("SIGTERM did not interrupt the run")

    real_finish = run_module.finish

    def finish_under_fire(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # both handlers run here
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(run_module, "validate", lambda cfg, checked=False: None)  # not what this test is about (and slow on a cold start)
    monkeypatch.setattr(run_module, "execute", interrupted_training)
    monkeypatch.setattr(run_module, "finish", finish_under_fire)
    interrupts.reset()
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        interrupts.install()
        with pytest.raises(KeyboardInterrupt) as caught:
            run_module.run(cfg, sweep="test")
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
        interrupts.reset()
    assert str(caught.value) == "SIGTERM"
    record = json.loads(Path(caught.value.record_path).read_text())
    assert record["run"]["status"] == "cancelled" and record["run"]["error"] == "interrupted (SIGTERM)"


class SignalInFinalizer:
    """Sends this process SIGTERM from its __del__, as the kernel's signal once landed in regex's
    Group.__del__: Python prints "Exception ignored in ..." and drops the KeyboardInterrupt."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here, inside the finalizer


@pytest.fixture
def handlers():
    """bench.sweep.signals' handlers for one test, then the test runner's own again."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.reset()
    interrupts.install()
    yield
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])
    interrupts.reset()


def test_a_signal_swallowed_by_a_finalizer_still_stops_training_at_the_next_step(cfg_factory, handlers):
    """Before the fix the point trained on: the first signal's interrupt was lost in the finalizer
    and every later signal was ignored (CI: a killed joblib sweep's points outlived it)."""
    from bench.methods import METHODS
    from bench.run.train import train

    cfg = cfg_factory("model=tiny-bert", "method=lora", "train.max_steps=50", "train.log_every=100")
    base, task, _ = build(cfg, n_train=8)
    model = METHODS["lora"].apply(base, cfg.method, task)
    steps = []

    def on_step(point):
        steps.append(point["step"])
        if point["step"] == 3:
            SignalInFinalizer()  # dropped at once: its __del__ runs, and swallows the interrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        train(model, task, cfg, torch.device("cpu"), on_step=on_step)
    assert str(caught.value) == "SIGTERM"
    assert steps == [1, 2, 3]  # stopped before step 4 began


def test_a_signal_swallowed_after_the_work_is_a_cancelled_record_not_a_success(cfg_factory, monkeypatch, handlers):
    """A run whose last phase swallowed the interrupt must not record success."""
    cfg = cfg_factory("model=tiny-bert")

    def finished_but_signalled(*args, **kwargs):
        SignalInFinalizer()
        return None  # the work "finished": no reason to stop

    monkeypatch.setattr(run_module, "validate", lambda cfg, checked=False: None)
    monkeypatch.setattr(run_module, "execute", finished_but_signalled)
    with pytest.raises(KeyboardInterrupt) as caught:
        run_module.run(cfg, sweep="test")
    record = json.loads(Path(caught.value.record_path).read_text())
    assert record["run"]["status"] == "cancelled" and record["run"]["error"] == "interrupted (SIGTERM)"
