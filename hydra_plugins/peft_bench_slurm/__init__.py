"""hydra/launcher=slurm (conf/hydra/launcher/slurm.yaml): Hydra's submitit launcher with squeue for
job states, a record for a job that ended without one, and no wait on a job that is gone. Why each:
bench/sweep/slurm.py. It lives in `hydra_plugins` because Hydra loads launchers only from there.

(No `from __future__ import annotations` here: Hydra executes plugin modules outside sys.modules.)"""

from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


class SlurmLauncher(SubmititSlurmLauncher):
    """hydra/launcher=slurm (conf/hydra/launcher/slurm.yaml)."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """In the SLURM job, first: submitit's own handlers would end the job on the time-limit
        warning while its point still writes; the point records itself (bench.sweep.slurm)."""
        from bench.sweep.slurm import quiet_job_signals

        quiet_job_signals()
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit
        from submitit.slurm.slurm import SlurmJob

        from bench.sweep.slurm import squeue_watcher

        SlurmJob.watcher = squeue_watcher()  # a class attribute: every job of this sweep polls squeue
        executor_map = submitit.AutoExecutor.map_array
        jobs: List[Any] = []

        def keep(executor: Any, fn: Any, *iterables: Any) -> List[Any]:  # the plugin's own submission; we keep its jobs
            jobs.extend(executor_map(executor, fn, *iterables))
            return []

        submitit.AutoExecutor.map_array = keep  # type: ignore[method-assign]
        try:
            super().launch(job_overrides, initial_job_idx)  # submits; returns nothing to wait for
        finally:
            submitit.AutoExecutor.map_array = executor_map  # type: ignore[method-assign]
        return [self._outcome(job, list(overrides), initial_job_idx + i) for i, (job, overrides) in enumerate(zip(jobs, job_overrides))]

    def _outcome(self, job: Any, overrides: List[str], idx: int) -> JobReturn:
        """The job's return, or, for a job that ended without one, its point's record (the run's
        own when it wrote one, else a record naming the job and its state: `timeout`, `cancelled`,
        or `failed` when the job itself died)."""
        from submitit.core.utils import FailedJobError

        try:
            returned = job.results()[0]
            if returned.status == JobStatus.COMPLETED:
                return returned
            exc = returned._return_value  # the job's own code raised (submitit's time-limit handler, before ours was set)
        except Exception as error:  # submitit's UncompletedJobError (no result) / FailedJobError (the job died)
            exc = error
        state = job.state
        why = str(exc).strip().splitlines()[0][:300]
        status = "timeout" if "timed-out" in why or state == "TIMEOUT" else "failed" if isinstance(exc, FailedJobError) else "cancelled"
        assert self.config is not None and self.hydra_context is not None
        from bench.sweep.callbacks import POINTER

        pointer = Path(str(self.config.hydra.sweep.dir)) / str(idx) / POINTER
        if pointer.is_file():  # the point's run wrote its record before the job ended
            path = pointer.read_text().strip()
        else:
            path = self._record_lost_job(overrides, status, f"SLURM job {job.job_id} ended as {state} without a result ({why})")
        print(f"job {job.job_id} ({' '.join(overrides)}): {state}; record {path}", flush=True)
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=path)

    def _record_lost_job(self, overrides: List[str], status: str, reason: str) -> str:
        """The record of a point whose job never wrote one: `cancelled` or `timeout` (a relaunch
        runs it again), or `failed` where the job itself raised."""
        from bench.run.pipeline import finish, new_record

        assert self.config is not None and self.hydra_context is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        record = new_record(cfg, str(self.config.hydra.sweep.dir))
        record["tracking"] = None
        return str(finish(record, Path(str(cfg.results_dir)), status, reason))
