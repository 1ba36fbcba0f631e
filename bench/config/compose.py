"""The one way to compose a config: Hydra's compose API over conf/, as the command line does
(defaults, groups, experiments), for every verb's primary config (bench.cli), the harnesses and the
tests; and the checks of a command line that Hydra itself would answer with a traceback or not at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from bench.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose(overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = False, config_name: str = "config") -> DictConfig:
    """conf/<config_name>.yaml (the run's config.yaml, or a verb's primary config) with these
    overrides, composed by Hydra as the command line composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import MissingConfigException

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        try:
            return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
        except MissingConfigException as exc:  # model=nope: name the group and its options, not Hydra's search path
            check_command_line(list(overrides))
            raise ConfigError("config", " ".join(overrides), str(exc).splitlines()[0]) from None


def check_command_line(args: list[str]) -> None:
    """What Hydra would refuse with a traceback (exit 1) or accept silently, refused as one line
    first: a group option with no YAML (model=nonexistent, also inside a comma list), and an
    addition to Hydra's own settings (+hydra.foo=bar: Hydra ignores it, so a typo would pass)."""
    dirs = [CONF] + [Path(args[i + 1]) for i, a in enumerate(args[:-1]) if a in ("--config-dir", "-cd")]
    dirs += [Path(a.split("=", 1)[1]) for a in args if a.startswith("--config-dir=")]
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if key.startswith("+") and key.lstrip("+").startswith("hydra."):
            raise ConfigError(key.lstrip("+"), value, "an existing Hydra setting (hydra.run.dir, hydra.sweep.dir, hydra.launcher.n_jobs, ...); "
                              "Hydra's settings take no additions")
        group = key.lstrip("+~")
        if "." in group or group.startswith("hydra") or not any((d / group).is_dir() for d in dirs):
            continue
        for option in value.split(","):
            option = option.strip()
            if option in ("", "null") or any((d / group / f"{option}.yaml").is_file() for d in dirs):
                continue
            options = sorted({q.stem for d in dirs if (d / group).is_dir() for q in (d / group).glob("*.yaml")})
            raise ConfigError(group, option, f"one of {', '.join(options)} (conf/{group}/)")


def sweep_preset(preset: str, results_dir: Path, overrides: list[str]) -> int:
    """Run an experiment preset as a sweep of the app (`python -m bench -m experiment=...`) into
    results_dir; a relaunch runs only its missing points. Returns the sweep's exit code."""
    return subprocess.call([sys.executable, "-m", "bench", "-m", f"experiment={preset}", f"results_dir={results_dir}", *overrides])
