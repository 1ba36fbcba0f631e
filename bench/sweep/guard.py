"""A sweep's jobs and points die with the sweep, under every launcher.

Why: Hydra's joblib (loky) workers and submitit_local's jobs are not processes that die with the
sweep. Killed with `kill -9`, a sweep left them re-parented to PID 1: their points trained on, and
an idle worker started the next queued point ~22 s later, so a relaunch ran points twice. A point's
own process dies with its parent (bench.sweep.supervise.die_with_parent), but that parent is the job, not the
sweep. So:

- the sweep marks itself in the environment before its launcher starts any worker (`mark_sweep`,
  from the points sweeper's setup): pid + start time (a reused pid is not the sweep) + hostname;
- every job process that is not the sweep (`watch_sweep`, from the app) refuses to start a point
  for a sweep that is gone or stopping, and follows it: once it is gone, the job cancels its
  running point (SIGTERM: the point records itself `cancelled`) and exits. A SLURM job does not
  follow it, even on the sweep's host: it belongs to the cluster, and finishes with its record;
- SIGINT or SIGTERM sent to the sweep alone is passed on to its running points at once; the sweep
  waits for their `cancelled` records, then exits with 130. Meanwhile no job process exits or
  raises KeyboardInterrupt (a job ignores SIGINT: the sweep passes it on): joblib takes a dead
  worker or an interrupted task while the sweep lives for a broken pool and SIGKILLs the other
  workers with their points, mid-record;
- a point's temporary folder (its spec and result) is named after the process that owns it, so a
  later sweep removes the folders of owners that were killed before they could.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

MARK = "PEFT_BENCH_SWEEP"  # "<pid>-<start time>@<host>" of the sweep process, inherited by its jobs
FOLDER_PREFIX = "peft-bench-"  # temp folders (and stop marks) are peft-bench-<owner identity>-...
OWNED = re.compile(rf"^{FOLDER_PREFIX}(\d+-\d+)-")
POLL_S = 0.5  # how often a job checks that its sweep is still there
GRACE_S = 60.0  # how long a cancelled point may take to write its record before it is killed

_state = threading.Lock()  # guards _child: a point never starts unseen by the follower thread
_busy = threading.Lock()  # held by this process while it runs a point, cleanup included
_child: subprocess.Popen | None = None  # this process's running point
_folder: Path | None = None  # that point's temp folder
_follower: threading.Thread | None = None
_stopping = False


def identity(pid: int | None = None) -> str:
    """pid + the process's start time (in 1/100 s): a pid that the kernel reuses for another process
    does not match."""
    proc = psutil.Process(pid)
    return f"{proc.pid}-{round(proc.create_time() * 100)}"


def is_alive(owner: str) -> bool:
    """Whether the process `identity` named is still running (a zombie is not)."""
    try:
        proc = psutil.Process(int(owner.split("-")[0]))
        return identity(proc.pid) == owner and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def stop_mark(owner: str) -> Path:
    """The file a stopping sweep creates, so its jobs start no new point while it waits for the running ones."""
    return Path(tempfile.gettempdir()) / f"{FOLDER_PREFIX}{owner}-stopping"


def remove_stale_folders() -> list[Path]:
    """Remove the temp folders (and stop marks) whose owner process is gone; returns them.
    Names without an owner are left alone (another tool's, or a running older version's)."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        match = OWNED.match(path.name)
        if match is None or is_alive(match.group(1)):
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue  # another user's (the sticky /tmp keeps it), or removed meanwhile
        removed.append(path)
    return removed


def mark_sweep() -> None:
    """In the sweep process, before the launcher starts workers: mark the environment that every
    job inherits, remove stale temp folders, and pass SIGINT/SIGTERM on to the running points."""
    os.environ[MARK] = f"{identity()}@{socket.gethostname()}"
    remove_stale_folders()
    signal.signal(signal.SIGINT, _stop_sweep)
    signal.signal(signal.SIGTERM, _stop_sweep)


def running_points() -> list[psutil.Process]:
    """This process's descendants that are sweep points (`python -m bench.sweep.supervise`), under any launcher."""
    points = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.cmdline()[1:3] == ["-m", "bench.sweep.supervise"]:
                points.append(proc)
        except psutil.Error:
            pass  # it ended meanwhile
    return points


def _stop_sweep(signum: int, frame: Any) -> None:
    """The sweep's SIGINT/SIGTERM: its points get the signal, record themselves and end, then the sweep exits."""
    global _stopping
    if _stopping:
        return  # a second signal while the points write their records
    _stopping = True
    points = running_points()
    for proc in points:  # the signal first, so each record names it
        try:
            proc.send_signal(signum)
        except psutil.NoSuchProcess:
            pass
    stop_mark(identity()).touch()  # jobs start no new point from here on
    _, alive = psutil.wait_procs(points, timeout=GRACE_S)
    for proc in alive:
        proc.kill()
    if _folder is not None:  # the basic launcher: the point ran in this process's folder
        shutil.rmtree(_folder, ignore_errors=True)
    print(f"sweep stopped by {signal.Signals(signum).name}: {len(points)} running point(s) got the signal; each records "
          "itself as cancelled once its run has begun (one still loading writes nothing and reruns on the relaunch)",
          file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _watched() -> str | None:
    """The sweep this process is a job of, when it can follow it: None in the sweep itself, outside
    a marked sweep, and on another host."""
    owner, _, host = os.environ.get(MARK, "").partition("@")
    if not owner or host != socket.gethostname() or owner.split("-")[0] == str(os.getpid()):
        return None
    if os.environ.get("SLURM_JOB_ID"):  # a cluster's job outlives the login that submitted it (bench.sweep.slurm)
        return None
    return owner


class SweepStopping(RuntimeError):
    """The sweep is waiting for its running points' records: this job starts no new point."""


def refuse_for_a_stopped_sweep(owner: str) -> None:
    """No new point for a sweep that is gone (this job ends at once: nobody would read its result)
    or stopping (the job fails, and its worker stays until the sweep is gone; see the module's doc)."""
    if not is_alive(owner):
        if _folder is not None:
            shutil.rmtree(_folder, ignore_errors=True)
        print(f"not starting a point: its sweep (pid {owner.split('-')[0]}) is gone", file=sys.stderr, flush=True)
        os._exit(130)
    if stop_mark(owner).exists():
        raise SweepStopping(f"not starting a point: its sweep (pid {owner.split('-')[0]}) is stopping")


def _pass(signum: int, frame: Any) -> None:
    pass


def watch_sweep() -> None:
    """In a job of a sweep (a joblib worker, a submitit job): refuse to start a point for a sweep
    that is gone or stopping, and follow the sweep from a daemon thread for the rest of this process."""
    global _follower
    owner = _watched()
    if owner is None:
        return
    refuse_for_a_stopped_sweep(owner)
    if _follower is None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, _pass)  # Ctrl-C: the sweep passes it on to the points (a handler, not
            # SIG_IGN, which the point's process would inherit)
        _follower = threading.Thread(target=_follow, args=(owner,), name="peft-bench-sweepguard", daemon=True)
        _follower.start()


def _follow(owner: str) -> None:
    """Once the sweep is gone: SIGTERM the running point (it records `cancelled`), let this process
    finish that point (its cleanup included), then exit, so this worker runs nothing more."""
    while is_alive(owner):
        time.sleep(POLL_S)
    with _state:
        child = _child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
    if not _busy.acquire(timeout=GRACE_S) and child is not None:
        child.kill()
    os._exit(130)


@contextmanager
def point_folder() -> Iterator[Path]:
    """A temp folder for one point's spec and result, named after this process (see
    remove_stale_folders) and removed afterwards. While it exists, this process runs a point."""
    global _child, _folder
    with _busy:
        folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{identity()}-"))
        _folder = folder
        try:
            yield folder
        finally:
            with _state:
                _child, _folder = None, None
            shutil.rmtree(folder, ignore_errors=True)


def start_point(args: list[str]) -> subprocess.Popen:
    """Start a point's process (inside point_folder), unless this is a job of a sweep that is gone or stopping."""
    global _child
    owner = _watched()
    with _state:
        if owner is not None:
            refuse_for_a_stopped_sweep(owner)
        _child = subprocess.Popen(args)
        return _child
