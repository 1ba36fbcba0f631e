"""The points sweeper: a sweep given as a list of points, each a line of overrides that may hold
its own comma lists, crossed with the shared `params` (seeds, say). Why: Hydra's basic sweeper only
builds one cartesian product, so a preset cannot put `method=full` and `method=lora method.r=1,2,4`
in one sweep (`method.r` does not exist on `method=full`). It lives in `hydra_plugins` because
Hydra loads sweepers only from there. conf/config.yaml makes it the default sweeper, so every
`-m` sweep and preset goes through it.

With `tune.enabled=true` it runs the tuning stage (bench/sweep/tune.py) instead of the jobs as given:
each point's learning-rate trials on a validation split carved from train, then the point's
finals, one per seed of the sweep, at the chosen learning rate. With `adaptive_seeds.enabled=true`
it then adds seeds where a point cannot yet be told apart from the reference (bench/sweep/seeds.py).

(No `from __future__ import annotations` here: Hydra executes plugin modules outside sys.modules,
where dataclasses cannot resolve string annotations.)"""

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class PointsSweeperConf:
    _target_: str = "hydra_plugins.peft_bench_sweeper.PointsSweeper"
    points: List[str] = field(default_factory=list)  # one line of overrides per point; comma lists expand
    params: Optional[Dict[str, str]] = None  # crossed with every point, e.g. {seed: "0,1,2"}


ConfigStore.instance().store(group="hydra/sweeper", name="points", node=PointsSweeperConf, provider="peft-bench")


class PointsSweeper(Sweeper):
    def __init__(self, points: Optional[List[str]] = None, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__()
        self.points = list(points or [])
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.job_idx = 0  # jobs launched so far: each launch numbers its job folders after the last
        self.launcher: Optional[Launcher] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from bench.sweep.guard import mark_sweep

        mark_sweep()  # before the launcher starts workers: its jobs follow this process, and die with it
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    def jobs(self, arguments: List[str], parser: OverridesParser) -> List[List[str]]:
        """Every point's jobs, in order: the point's overrides crossed with params and the command
        line (a later one wins on a shared key); a job that two points both produce runs once."""
        jobs: List[List[str]] = []
        for point in self.points or [""]:
            axes: Dict[str, List[str]] = {}
            shared = [f"{k}={v}" for k, v in self.params.items()]
            for override in parser.parse_overrides(shared + point.split() + list(arguments)):
                key = override.get_key_element()
                if override.is_sweep_override():
                    axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
                else:
                    axes[key] = [f"{key}={override.get_value_element_as_str()}"]
            for job in itertools.product(*axes.values()):
                if list(job) not in jobs:
                    jobs.append(list(job))
        return jobs

    def launch(self, jobs: List[List[str]]) -> List[Any]:
        """Launch jobs after every one of them composes; returns what each job returned (its record's path)."""
        assert self.launcher is not None
        if not jobs:
            return []
        self.validate_batch_is_legal(jobs)  # every job composes before the first one starts
        results = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
        self.job_idx += len(jobs)
        return [result.return_value for result in results]  # raises if a job raised

    def compose(self, overrides: List[str]) -> DictConfig:
        assert self.config is not None and self.hydra_context is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def check_shared_knobs(self, jobs: List[List[str]]) -> None:
        """The schema's knobs that no point overrides hold for every point: a bad one (tune.trials=1,
        keep_artifacts=yes) refuses the sweep before anything launches, not once per point."""
        from bench.config.checks import NOT_TRAINING
        from bench.config.schema import SCHEMA, check_value
        from bench.errors import ConfigError

        sets = [{o.split("=", 1)[0].lstrip("+~"): o.partition("=")[2] for o in job} for job in jobs]
        jobs_knob = (self.config.hydra.get("launcher") or {}).get("n_jobs")
        if jobs_knob is not None and (not isinstance(jobs_knob, int) or isinstance(jobs_knob, bool) or jobs_knob == 0):
            raise ConfigError("hydra.launcher.n_jobs", jobs_knob, "an integer other than 0 (points at a time; -1 = one per core)")
        swept = {k for k in set().union(*sets) if len({s.get(k) for s in sets}) > 1}  # set differently (or not at all) by some point
        trains = "method" not in swept and self.config.method.get("name") not in NOT_TRAINING
        from bench.config.compose import CONF

        seeds = self.config.get("adaptive_seeds") or {}
        methods = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
        if seeds.get("enabled") and methods and seeds.get("reference") not in methods:  # checked before any point runs, not after the sweep
            raise ConfigError("adaptive_seeds.reference", seeds.get("reference"), "a method name (conf/method/<name>.yaml), e.g. full")
        if "tracking" not in swept and not any(k.startswith("tracking.") for k in swept):
            from bench.config.checks import check_tracking

            check_tracking(self.config)  # tracking=mlflow without mlflow installed: the whole sweep is refused, not each point
        for section, knobs in SCHEMA.items():
            node = self.config if not section else self.config.get(section)
            for key in knobs:
                name = f"{section}.{key}" if section else key
                if node is not None and key in node and name not in swept and section not in swept:
                    check_value(section, key, node.get(key), trains)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        import sys

        from bench.errors import ConfigError
        from bench.records.store import check_results_dir

        jobs = self.jobs(arguments, OverridesParser.create(config_loader=self.hydra_context.config_loader))
        # Before anything launches (or the sweep folder is made): every results_dir the jobs write to
        # takes a record, or the whole sweep is refused; otherwise every point would train for nothing.
        default = self.config.get("results_dir")
        given = [[o.split("=", 1)[1] for o in job if o.split("=", 1)[0].lstrip("+") == "results_dir"] for job in jobs]
        try:
            for results_dir in sorted({values[-1] if values else default for values in given} or {default}, key=str):
                check_results_dir(results_dir)
            self.check_shared_knobs(jobs)  # max_attempts among them
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            sys.exit(2)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        from bench.sweep.seeds import until_decided

        if not (self.config.get("tune") or {}).get("enabled"):
            return [until_decided(jobs, self.launch(jobs), self.compose, self.launch)]
        from bench.sweep.tune import run_tuning

        finals: List[List[str]] = []
        try:
            paths = run_tuning(jobs, self.compose, self.launch, finals_out=finals)
        except ConfigError as exc:  # before any trial starts: the field, the value and what is valid
            print(f"config error: {exc}", file=sys.stderr)
            sys.exit(2)
        return [until_decided(finals, paths, self.compose, self.launch)]  # adaptive_seeds.enabled: more seeds where undecided
