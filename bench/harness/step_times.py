"""Every method's training step time on one model, measured side by side: in one process, each
method on its own prepared copy of the model, `steps` steps at a time right beside as many of the
reference's (LoRA r=32 on q,v, PEFT's baseline), round after round, the median step (each burst's
first step left out: it allocates the optimizer state). A load that drifts over the minutes the
whole table takes falls on a method and its adjacent reference alike: the figure is the median over
rounds of method / adjacent reference,
beside the ratio PEFT published on Llama-3.2-3B (its run's train_time over lora-rank32's), where
PEFT ran the method. A benchmark prints figures and asserts nothing.

    peft-bench step-times task=sst2 output=results/reference/methods-minilm-tuned/step-times.md
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError
from bench.harness.perf import setup, suite_train
from bench.config.compose import compose
from bench.methods import METHODS

PEFT_NAMES = {"dora": "lora-rank32-dora", "lorafa": "lora-rank32-lorafa", "full": "full-finetuning"}  # ours -> PEFT's run, where not `<name>--`
PREFERRED = ("default", "rank32")  # of several PEFT runs of one method, the one that ran its defaults


def published_ratios(folder: str | None) -> dict[str, tuple[str, float]]:
    """method -> (PEFT's run name, its train_time / lora-rank32's), from PEFT's result files."""
    if not folder or not Path(folder).is_dir():
        return {}
    times = {}
    for path in sorted(Path(folder).glob("*.json")):
        info = json.loads(path.read_text()).get("train_info", {})
        if info.get("status") == "success" and info.get("train_time"):
            times[path.stem.replace("--llama-3.2-3B", "")] = float(info["train_time"])
    base = times.get("lora-rank32")
    if not base:
        return {}
    found = {}
    for method in METHODS:
        if method in PEFT_NAMES:
            runs = [PEFT_NAMES[method]] if PEFT_NAMES[method] in times else []
        else:
            runs = sorted((r for r in times if r.split("-")[0] == method), key=lambda r: (not any(p in r for p in PREFERRED), r))
        if runs:
            found[method] = (runs[0], times[runs[0]] / base)
    return found


def contestants(opts: DictConfig) -> dict[str, list[str]]:
    """name -> overrides: the reference first, then each method with its YAML's defaults."""
    chosen = list(opts.methods) if OmegaConf.is_list(opts.methods) else [opts.methods]
    names = [str(n) for n in chosen] or [n for n, m in sorted(METHODS.items()) if m.trains]
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ConfigError("methods", unknown[0], f"[] (every method) or a list of: {', '.join(sorted(METHODS))}")
    return {"lora r32 (reference)": [str(o) for o in opts.reference], **{n: [f"method={n}"] for n in names}}


def verb(opts: DictConfig, cfg: DictConfig | None, extra: list[str]) -> int:
    """`peft-bench step-times` (its keys: conf/step-times.yaml; other overrides apply to every method)."""
    for key in ("steps", "rounds"):
        if not isinstance(opts[key], int) or opts[key] < 1:
            raise ConfigError(key, opts[key], "an integer >= 1")
    assert cfg is not None
    runs = [f"model={cfg.model.name}", f"train.batch_size={cfg.train.batch_size}", *extra]
    prepared: dict[str, tuple[Any, Any, DictConfig]] = {}
    refused: dict[str, str] = {}
    for name, overrides in contestants(opts).items():
        cfg_m = compose(["tracking=none", *runs, *overrides])
        try:
            model, task = setup(cfg_m)
        except ConfigError as exc:  # a method that does not apply to this model: its declared refusal
            refused[name] = str(exc)
            continue
        prepared[name] = (model, task, cfg_m)
        print(f"prepared {name}", flush=True)
    ref = next(iter(prepared))
    times: dict[str, list[float]] = {name: [] for name in prepared}
    ratios: dict[str, list[float]] = {name: [] for name in prepared}
    for name, (model, task, cfg_m) in prepared.items():  # warm-up: first-call allocations
        suite_train(model, task, cfg_m, 2)
    for r in range(int(opts.rounds)):
        order = [n for n in prepared if n != ref]
        order = order if r % 2 == 0 else order[::-1]
        for name in order:  # each method beside a fresh reference measurement: a drift in the machine's load cancels
            pair = (ref, name) if r % 2 == 0 else (name, ref)
            got = {n: statistics.median(suite_train(*prepared[n][:2], prepared[n][2], int(opts.steps) + 1)) for n in pair}
            times[name].append(got[name])
            times[ref].append(got[ref])
            ratios[name].append(got[name] / got[ref])
        print(f"round {r + 1}/{opts.rounds} done", flush=True)
    ratios[ref] = [1.0]
    text = table(opts, cfg, times, ratios, refused, published_ratios(opts.peft_runs))
    print(text)
    if opts.output:
        Path(str(opts.output)).parent.mkdir(parents=True, exist_ok=True)
        Path(str(opts.output)).write_text(text + "\n")
        print(f"wrote {opts.output}")
    return 0


def table(opts: DictConfig, cfg: DictConfig, times: dict[str, list[float]], ratios: dict[str, list[float]], refused: dict[str, str],
          published: dict[str, tuple[str, float]]) -> str:
    lines = [f"Step time per method on {cfg.model.name} (batch {cfg.train.batch_size}, {opts.rounds} rounds x {opts.steps} steps; one "
             f"process; each method timed right beside the reference, LoRA r=32 on q,v, and its ratio the median over rounds of "
             f"method / adjacent reference), beside PEFT's published ratio on Llama-3.2-3B (L40S GPU) where PEFT ran the method. "
             f"Command: peft-bench step-times model={cfg.model.name} ... (conf/step-times.yaml).", "",
             "| method | step s (median) | x LoRA r32 | PEFT's run | PEFT's x LoRA r32 |", "|---|---|---|---|---|"]
    for name in sorted(times, key=lambda n: statistics.median(ratios[n])):
        run, ratio = published.get(name, ("", None))
        lines.append(f"| {name} | {statistics.median(times[name]):.3f} | {statistics.median(ratios[name]):.2f} | {run} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} |")
    for name, why in sorted(refused.items()):
        lines.append(f"| {name} | refused: {why} | | | |")
    return "\n".join(lines)
