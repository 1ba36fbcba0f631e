"""Signals become one KeyboardInterrupt, and a swallowed one is raised again.

Why a module of its own: a run's loops (training steps, evaluation batches, generation) must
check it, and they should not import process supervision (bench.sweep.supervise) to do so.

Why the check: Python ignores an exception raised while a finalizer runs (a `__del__`, a weakref
callback: it prints "Exception ignored in ..." and goes on). A signal handled at that moment was
lost: a SIGTERM from a sweep's follower landed in `regex`'s `Group.__del__`, the point trained on,
and since later signals are ignored (they must not cut short the `cancelled` record), nothing
stopped it. So the first signal is remembered, and `check()` at every step raises it again until
the run has begun writing its record (`recording()`)."""

from __future__ import annotations

import signal
from typing import Any

_signal: int | None = None  # the first SIGINT/SIGTERM/SIGUSR2 this process got, None before any
_recording = False  # the run is writing its cancelled record: check() raises nothing more


def _interrupt(signum: int) -> KeyboardInterrupt:
    """KeyboardInterrupt() for Ctrl-C, KeyboardInterrupt('SIGTERM') for a kill: the record names it."""
    return KeyboardInterrupt() if signum == signal.SIGINT else KeyboardInterrupt(signal.Signals(signum).name)


def _handle(signum: int, frame: Any) -> None:
    """The first signal interrupts the run; a later one (Ctrl-C pressed twice, the sweep passing on
    a signal that the process group already delivered) is ignored, so it cannot cut short the
    `cancelled` record that the first one is writing."""
    global _signal
    if _signal is not None:
        return
    _signal = signum
    raise _interrupt(signum)


TIME_LIMIT = "SIGUSR2"  # a scheduler's warning that the job's time limit is near (SLURM's --signal=USR2@s, which submitit sets)


def install() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (kill, scancel, a sweep passing a signal on) become one
    KeyboardInterrupt: the run records itself as cancelled. SIGUSR2 does too, and the run records
    itself `timeout`: its relaunch runs it again."""
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGUSR2, _handle)


def status_of(exc: KeyboardInterrupt) -> str:
    """The record's status for this interrupt: `timeout` for the time-limit warning, and for the
    SIGTERM of a SLURM job that reached its limit (bench.sweep.slurm.job_timed_out), else `cancelled`."""
    if str(exc) == TIME_LIMIT:
        return "timeout"
    if str(exc) == "SIGTERM":
        from bench.sweep.slurm import job_timed_out

        return "timeout" if job_timed_out() else "cancelled"
    return "cancelled"


def check() -> None:
    """Raise the signal this process got, if its KeyboardInterrupt was swallowed: called at every
    training step and evaluation batch, and before a run records success."""
    if _signal is not None and not _recording:
        raise _interrupt(_signal)


def recording() -> None:
    """The run has caught the interrupt and writes its `cancelled` record: check() stays quiet."""
    global _recording
    _recording = True


def reset() -> None:
    """Forget a signal (tests that run several interrupted runs in one process)."""
    global _signal, _recording
    _signal, _recording = None, False
