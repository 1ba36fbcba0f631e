"""The SLURM launcher's parts (`hydra/launcher=slurm`; the class is hydra_plugins/peft_bench_slurm,
where Hydra looks for launchers): Hydra's submitit launcher, with what a sweep of records needs
from a real cluster.

Why not the plugin as it is (each seen on a one-node cluster, .ci/slurm.sh):
- submitit learns a job's state from `sacct`. A cluster without accounting (no slurmdbd: small
  clusters, ours) answers "accounting storage is disabled": submitit logged "Bypassing sacct
  error" at every poll, and a job that ended without writing its result (cancelled while pending,
  killed on a dead node) stayed UNKNOWN, so the sweep waited for it forever. Here the states come
  from `squeue --states=all` (the controller's own memory: every cluster has it), and a job the
  controller no longer lists has ended.
- the plugin returns `job.results()`, which raises for a job that ended without a result, and the
  sweep stopped there with a traceback. Here such a point gets a record (cancelled, naming the job
  and its state) unless its run wrote one, and the sweep goes on, so the relaunch runs it again.
- submitit's SIGUSR2 handler (the time limit is near: hydra.launcher.signal_delay_s before
  timeout_min) raised in the job, and the point (a process of its own) never heard of it: at the
  limit, SIGTERM recorded it `cancelled`, like a scancel. Here the job passes SIGUSR2 on and its
  point records itself `timeout` (bench.sweep.signals), as it does on the limit's SIGTERM (the
  controller says which SIGTERM it was: `job_timed_out`); the job returns that record.
- a job on the sweep's own host would follow the sweep and cancel its point when the sweep's
  process went away (bench.sweep.guard); a SLURM job belongs to the cluster: it finishes and
  keeps its record when the login that submitted it is lost (facebookresearch/hydra#3058).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import Any


log = logging.getLogger(__name__)
ENDED = "ENDED"  # the state of a job the controller no longer lists (it ended more than MinJobAge ago)


def in_slurm_job() -> bool:
    """This process runs inside a SLURM job (sbatch/srun set SLURM_JOB_ID)."""
    return bool(os.environ.get("SLURM_JOB_ID"))


def quiet_job_signals() -> None:
    """In a SLURM job's process, before its point starts. SIGTERM (scancel, the time limit itself)
    reaches every process of the job, the point included; SIGUSR2 (the time limit is near) reaches
    this process only, which passes it on. The point records itself (`cancelled`, `timeout`); this
    process waits for it and returns its record, so it must neither die nor raise meanwhile
    (submitit's own handlers did both)."""
    if not in_slurm_job():
        return
    signal.signal(signal.SIGTERM, _wait_for_the_point)
    signal.signal(signal.SIGUSR2, _pass_on)


def _wait_for_the_point(signum: int, frame: Any) -> None:
    log.info("SLURM sent %s: the running point records itself", signal.Signals(signum).name)


def _pass_on(signum: int, frame: Any) -> None:
    from bench.sweep.guard import running_points

    for proc in running_points():
        proc.send_signal(signum)


def job_timed_out() -> bool:
    """Whether this SLURM job reached its time limit: SIGTERM ends a job both at its limit and on
    scancel; only the controller knows which (squeue's state is TIMEOUT for the first)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%T|%r", "--jobs", job],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    state, _, reason = out.strip().partition("|")
    return state == "TIMEOUT" or reason == "TimeLimit"  # COMPLETING|TimeLimit while its processes end


def squeue_watcher() -> Any:
    """submitit's SLURM watcher, asking squeue instead of sacct."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueWatcher(SlurmInfoWatcher):
        def _make_command(self) -> list[str] | None:
            to_check = sorted({x.split("_")[0] for x in self._registered - self._finished})
            if not to_check:
                return None
            return ["squeue", "--states=all", "--noheader", "--format=%i|%T|%N", "--jobs", ",".join(to_check)]

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            text = string.decode() if isinstance(string, bytes) else string
            info = super().read_info("JobID|State|NodeList\n" + text)
            for job in self._registered - self._finished:  # not listed any more: it ended
                info.setdefault(job, {"JobID": job, "State": ENDED, "NodeList": ""})
            return info

    return SqueueWatcher(delay_s=60)

