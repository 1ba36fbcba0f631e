"""Every method's training step time on one model, measured side by side: in one process, each
method on its own prepared copy of the model, `steps` steps per round, methods in turn round after
round (so machine noise falls on all alike), the median step (each round's first step left out:
it allocates the optimizer state). The figure is the ratio to LoRA r=32 on q,v, PEFT's baseline,
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
    times: dict[str, list[float]] = {name: [] for name in prepared}
    for name, (model, task, cfg_m) in prepared.items():  # warm-up: first-call allocations
        suite_train(model, task, cfg_m, 2)
    for r in range(int(opts.rounds)):
        order = list(prepared) if r % 2 == 0 else list(reversed(prepared))
        for name in order:
            model, task, cfg_m = prepared[name]
            times[name] += suite_train(model, task, cfg_m, int(opts.steps) + 1)
        print(f"round {r + 1}/{opts.rounds} done", flush=True)
    text = table(opts, cfg, times, refused, published_ratios(opts.peft_runs))
    print(text)
    if opts.output:
        Path(str(opts.output)).parent.mkdir(parents=True, exist_ok=True)
        Path(str(opts.output)).write_text(text + "\n")
        print(f"wrote {opts.output}")
    return 0


def table(opts: DictConfig, cfg: DictConfig, times: dict[str, list[float]], refused: dict[str, str], published: dict[str, tuple[str, float]]) -> str:
    ref = statistics.median(times["lora r32 (reference)"]) if times.get("lora r32 (reference)") else None
    lines = [f"Step time per method on {cfg.model.name} (batch {cfg.train.batch_size}, {opts.rounds} rounds x {opts.steps} steps, "
             f"median; one process, methods in turn), as a ratio to LoRA r=32 on q,v; PEFT's published ratio on "
             f"Llama-3.2-3B (L40S GPU) where PEFT ran the method. Command: peft-bench step-times "
             f"model={cfg.model.name} ... (conf/step-times.yaml).", "",
             "| method | step s | x LoRA r32 | PEFT's run | PEFT's x LoRA r32 |", "|---|---|---|---|---|"]
    for name, t in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
        med = statistics.median(t)
        run, ratio = published.get(name, ("", None))
        lines.append(f"| {name} | {med:.3f} | {med / ref:.2f} | {run} | {'' if ratio is None else f'{ratio:.2f}'} |" if ref else f"| {name} | {med:.3f} | | | |")
    for name, why in sorted(refused.items()):
        lines.append(f"| {name} | refused: {why} | | | |")
    return "\n".join(lines)
