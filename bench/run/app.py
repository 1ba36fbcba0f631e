"""The `run` verb, `peft-bench [run] [group=option ...] [key=value ...]`: one run; add `-m` for a sweep.
This is the Hydra app (bench.cli calls `run_app`); its other verbs are bench.cli's.

In a sweep every point runs in its own process, and a point whose config already has a
successful record in results_dir is skipped (force=true reruns it): re-launching an interrupted
sweep with the same command completes only the missing points. A point runs under a claim (a
lock in results_dir/.claims/), so two sweeps into one results_dir never run it twice, and a point
that failed max_attempts times is skipped too."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench.config import checks as preflight
from bench.sweep.callbacks import POINTER
from bench.config.compose import check_command_line
from bench.errors import ConfigError
from bench.records.store import check_max_attempts, check_results_dir, claim, config_hashes, failed_attempts, find_success
from bench.records.store import role
from bench.run import distributed  # torch-free at import: the launch is read before torch loads
from bench.report.tables import markdown_table
from bench.sweep import signals as interrupts
from bench.sweep.supervise import cores_for_job, run_isolated  # torch-free: before the plain checks
from bench.sweep.guard import watch_sweep
from bench.sweep.slurm import quiet_job_signals


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[2] / "conf"), config_name="config")  # absolute: the same under python -m bench and the peft-bench script
def app(cfg: DictConfig) -> str | None:
    """One run, or one point of a sweep; a sweep point returns its record's path (the tuning stage reads it)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:  # a sweep's point checks itself in its own process, into a failed record
        try:  # every check that needs no torch, before torch loads: a bad value answers in about half a second
            if (cfg.get("tune") or {}).get("enabled") is True:  # trials and finals are a sweep's points: a single run cannot hold them
                raise ConfigError("tune.enabled", True, "false for a single run: add -m (the tuning stage is a sweep)")
            distributed.adopt_launch(cfg)  # under torchrun: train.world_size is the number of processes it started
            preflight.check(cfg)
            check_results_dir(cfg.results_dir)  # before any work: a record that cannot be written would lose it
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            sys.exit(2)
        if int(cfg.train.world_size) > 1 and not distributed.launched():
            sys.exit(launch_data_parallel(cfg))
    from bench.run.pipeline import refused_again, run  # torch loads after the plain checks passed

    if hydra_cfg.mode != RunMode.MULTIRUN:
        interrupts.install()
        main = distributed.is_main()  # a data-parallel run's other ranks print nothing: rank 0 reports the run
        threads = distributed.threads_per_process() if distributed.launched() else cores_for_job(None)
        try:
            record = run(cfg, None, threads, checked=True)
        except ConfigError as exc:
            if main:
                print(f"config error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as exc:  # one line, not the traceback of wherever the run was
            if not main:
                sys.exit(130)
            path = getattr(exc, "record_path", None)
            where = f"its record is {path}" if path else "it stopped before its record began, so nothing was written"
            status = getattr(exc, "status", None) or interrupts.status_of(exc)  # timeout: a cluster's time limit; else cancelled
            print(("\n" if sys.stderr.isatty() else "") + f"run {status} ({str(exc) or 'Ctrl-C'}): {where}", file=sys.stderr)
            sys.exit(130)
        if not main:
            return None
        status = record["run"]["status"]
        print(f"\n{record['run']['id']}: {status}" + (f" ({record['run']['error']})" if record["run"]["error"] else ""))
        print(markdown_table([record]))
        print(f"record: {record['run'].get('path')}")
        print_tracking(record)
        if status != "success":
            sys.exit(1)
        return None

    watch_sweep()  # a joblib worker or submitit job: no point for a sweep that is gone, and die with it
    quiet_job_signals()  # a SLURM job: its point records scancel and the time limit; the job waits for that record
    sweep = str(hydra_cfg.sweep.dir)
    job_dir = Path(hydra_cfg.runtime.output_dir)
    # A tuning trial that was pruned or diverged is done too: rerunning it would repeat its verdict.
    trial = role(cfg) == "trial"
    digests, force = config_hashes(cfg), cfg.get("force") is True  # this point's hash first, then those its earlier records may carry (EARLIER_RULES)
    digest = digests[0]
    try:  # the sweeper checked these before launching; a point's own override is checked here
        check_results_dir(cfg.results_dir)
        max_attempts = check_max_attempts(cfg.get("max_attempts"))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    with claim(cfg.results_dir, digest):  # another sweep on this point: wait for it, then find its record
        # A tuned final counts as done only if its selection searched the lr the same way as this one.
        selection = OmegaConf.to_container(cfg.selection, resolve=True) if role(cfg) == "final" else None
        done = None if force else find_success(cfg.results_dir, digests, final=trial, selection=selection)  # type: ignore[arg-type]
        # A point its config refused (a ConfigError) is recorded once: validation, checked again here, would refuse it again.
        refused = None if force or done is not None else refused_again(cfg, digests)
        failed = [] if force or done is not None or refused is not None else failed_attempts(cfg.results_dir, digests)
        if done is not None:
            print(f"skip: {done.name} already holds a {'finished' if trial else 'successful'} run of this point (force=true reruns it)")
        elif refused is not None:
            done, why = refused
            print(f"skip: {done.name} holds this point refused by its config ({why}); a refusal is not retried (force=true reruns it)")
        elif len(failed) >= max_attempts:
            done = failed[-1]
            print(f"skip: this point failed {len(failed)} times (max_attempts={max_attempts}; the last: {done.name}); force=true reruns it")
        if done is not None:
            (job_dir / POINTER).write_text(str(done))
            return str(done)
        record = run_isolated(cfg, sweep, cores_for_job(hydra_cfg.launcher))  # one fresh process per point
    (job_dir / POINTER).write_text(str(record["run"]["path"]))
    print(f"\n{record['run']['id']}: {record['run']['status']}" + (f" ({record['run']['error']})" if record["run"]["error"] else ""))
    print_tracking(record)
    return str(record["run"]["path"])


def launch_data_parallel(cfg: DictConfig) -> int:
    """train.world_size=N in a plain process: every check here, once, the model's architecture on
    the meta device and the method's refusals included (no weights load), so a refusal exits 2
    before any process starts; then this very command again under torchrun with N processes
    (bench.run.distributed.relaunch), whose exit code is the run's."""
    from bench.config.plan import validate  # torch loads here: the plain checks passed

    try:
        validate(cfg, checked=True)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    return distributed.relaunch(int(cfg.train.world_size), sys.argv[1:])


def print_tracking(record: dict[str, Any]) -> None:
    """Where the tracker's copy went (W&B: and how to upload it when it is offline; MLflow: its store)."""
    tracked = record.get("tracking")
    if not tracked:
        return
    if tracked.get("backend") == "mlflow":
        print(f"MLflow: not tracked ({tracked['error']})" if tracked.get("error") else
              f"MLflow: run {tracked.get('run_id')} in experiment {tracked.get('experiment')} of {tracked.get('tracking_uri')}")
        return
    if tracked.get("error"):
        print(f"W&B: not tracked ({tracked['error']})")
    elif tracked.get("mode") == "offline":
        print(f"W&B: offline run in {tracked['dir']} (upload: wandb sync {tracked['dir']})")
    elif tracked.get("url"):
        print(f"W&B: {tracked['url']}")


def run_app(args: list[str]) -> None:
    """The `run` verb: the Hydra app over these arguments (Hydra reads sys.argv)."""
    try:
        if distributed.launched() and ("-m" in args or "--multirun" in args):  # every rank would run the whole sweep
            raise ConfigError("-m", "under torchrun", "a single run: a sweep runs each point in one process (launch it without torchrun)")
        preflight.check_overrides([a for a in args if not a.startswith("-")])  # a misspelt key (method.rr=8) is named with the valid ones, before Hydra composes
        check_command_line(args)  # model=nonexistent, +hydra.foo=bar: one line, not Hydra's traceback or silence
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *args]
    app()
