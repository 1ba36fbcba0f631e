"""The one way to compose a config outside `python -m bench`: Hydra's compose API over conf/,
as the command line does (defaults, groups, experiments), for the harnesses (bench.harness.gpu,
bench.harness.cost, bench.harness.perf, bench.harness.benchmark, bench.measure.estimate) and the tests.

A harness takes its own options (`out=DIR`, `smoke=true`) and Hydra overrides on one command
line; `split_args` tells them apart and refuses what is neither, so a bare word or a misspelt key
is an error naming it, never silently dropped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from bench.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose(overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = False) -> DictConfig:
    """conf/config.yaml with these overrides, composed by Hydra as the command line composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import MissingConfigException

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        try:
            return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
        except MissingConfigException as exc:  # model=nope: name the group and its options, not Hydra's search path
            for arg in overrides:
                group, _, option = arg.partition("=")
                folder = CONF / group
                if folder.is_dir() and "/" not in group and not (folder / f"{option}.yaml").is_file():
                    options = ", ".join(sorted(q.stem for q in folder.glob("*.yaml")))
                    raise ConfigError(group, option, f"one of {options} (conf/{group}/)") from None
            raise ConfigError("config", " ".join(overrides), str(exc).splitlines()[0]) from None


def split_args(argv: list[str], options: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the harness's options, filled from `options`' defaults; the Hydra overrides). An argument
    is `name=value` for an option, or an override of the config (`train.batch_size=8`,
    `model=smollm2-135m`, `+key=value`): its keys are checked as the command line checks them.
    A bare word is refused, naming the options and an override's form."""
    from bench.config.checks import check_overrides, known_keys

    chosen, overrides, top = dict(options), [], known_keys()[""]
    named = f"an option ({', '.join(f'{k}=' for k in options)}) or a config override such as train.batch_size=8"
    for arg in argv:
        name, eq, value = arg.partition("=")
        if not eq or not name:
            raise ConfigError("argument", arg, f"name=value: {named}")
        if name in options:
            chosen[name] = value
        elif name[0] not in "+~" and "." not in name and "/" not in name and name not in top:
            raise ConfigError(name, value, f"{named}; the config's top-level keys and groups: {', '.join(sorted(top))}")
        else:
            overrides.append(arg)
    check_overrides(overrides)
    return chosen, overrides


def sweep_preset(preset: str, results_dir: Path, overrides: list[str]) -> int:
    """Run an experiment preset as a sweep of the app (`python -m bench -m experiment=...`) into
    results_dir; a relaunch runs only its missing points. Returns the sweep's exit code."""
    return subprocess.call([sys.executable, "-m", "bench", "-m", f"experiment={preset}", f"results_dir={results_dir}", *overrides])
