"""The cost curve: how training step time and peak memory grow with model size and with sequence
length, for full fine-tuning, LoRA and prompt tuning, with the fitted power-law exponent of each.

The cells are the points of a preset of the one app (conf/experiment/cost_curve.yaml: Llama-shaped
models from conf/model/ with random weights, task=synthetic), so each is a record like any run's;
this module runs the preset when asked and reads the records into the two tables:

    peft-bench cost results_dir=results/reference/cost-curve   # runs what is missing (~6 min on 2 cores), then the tables
    peft-bench cost results_dir=DIR sweep=false                  # the tables from records already there
    peft-bench cost results_dir=/tmp/cost quick=true           # toy sizes: the machinery in a minute
    peft-bench cost results_dir=DIR device=cuda speed.precision=bf16   # any config override goes to every point

The tables (cost-<device>.md) are written beside the records. The exponent k of cost ~ x^k is the
least-squares slope in log-log space.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.config.compose import sweep_preset
from bench.records.store import load_records

METHODS = ("full", "lora", "prompt_tuning")


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x: cost ~ x^k."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    var = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var if var else None


def cells(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per successful synthetic-task record: model, method, base parameters, length, step time, peak."""
    rows = []
    for r in records:
        cfg = r["run"]["config"]
        if r["run"]["status"] != "success" or cfg["task"].get("kind") != "synthetic" or not r.get("speed"):
            continue
        params = r["params"]
        base = params["total"] if params["trainable"] == params["total"] else params["total"] - params["trainable"]
        rows.append({"model": r["run"]["model"], "method": r["run"]["method"], "params": base, "seq_len": int(cfg["task"]["seq_len"]),
                     "batch": int(cfg["train"]["batch_size"]), "device": r["memory"]["device"],
                     "step_s": r["speed"]["step_time_median_s"], "peak_bytes": r["memory"]["peak_bytes"]})
    return rows


def curves(rows: list[dict[str, Any]]) -> str:
    """Two tables: cost against model size at the length most models share, and against length on
    the model measured at the most lengths, each with its exponents."""
    if not rows:
        return "No successful synthetic-task records."
    by_seq: dict[int, set[str]] = {}
    by_model: dict[str, set[int]] = {}
    for r in rows:
        by_seq.setdefault(r["seq_len"], set()).add(r["model"])
        by_model.setdefault(r["model"], set()).add(r["seq_len"])
    fixed_seq = max(by_seq, key=lambda s: (len(by_seq[s]), -s))
    fixed_model = max(by_model, key=lambda m: (len(by_model[m]), m))
    out = []
    for axis, pick, xkey in (("model size", lambda r: r["seq_len"] == fixed_seq, "params"),
                             ("sequence length", lambda r: r["model"] == fixed_model, "seq_len")):
        picked = [r for r in rows if pick(r)]
        xs = sorted({r[xkey] for r in picked})
        title = f"### Step time and peak memory against {axis}" + (f" (seq_len {fixed_seq})" if xkey == "params" else f" ({fixed_model})")
        head = "| method | " + " | ".join(f"{x / 1e6:.1f}M" if xkey == "params" else str(x) for x in xs) + " | exponent k (time, memory) |"
        lines = [title, "", head, "|---|" + "---|" * (len(xs) + 1)]
        for method in METHODS:
            by_x = {r[xkey]: r for r in picked if r["method"] == method}
            shown = [f"{by_x[x]['step_s']:.3f} s, {by_x[x]['peak_bytes'] / 2**20:,.0f} MiB" if x in by_x else "" for x in xs]
            have = [x for x in xs if x in by_x]
            kt = exponent(have, [by_x[x]["step_s"] for x in have])
            km = exponent(have, [max(by_x[x]["peak_bytes"], 1) for x in have])
            lines.append(f"| {method} | " + " | ".join(shown) + f" | {_k(kt)}, {_k(km)} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _k(k: float | None) -> str:
    return "" if k is None else f"{k:.2f}"


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench cost` (its keys: conf/cost.yaml; the run's overrides go to every point)."""
    results = Path(opts.results_dir)
    if opts.sweep:  # the preset's points: a relaunch runs only the missing ones
        preset = "cost_curve_quick" if opts.quick else "cost_curve"
        code = sweep_preset(preset, results, overrides)
        if code != 0:
            print(f"the cost-curve sweep exited with {code}; tabulating the records it wrote", file=sys.stderr)
    rows = cells(load_records(results)) if results.is_dir() else []
    failed = [r for r in load_records(results) if r["run"]["status"] != "success"] if results.is_dir() else []
    devices = sorted({r["device"] for r in rows}) or ["cpu"]
    for device in devices:
        mine = [r for r in rows if r["device"] == device]
        batch = ", ".join(str(b) for b in sorted({r["batch"] for r in mine}))
        text = f"## Cost curve on {device} (batch {batch}, random weights, records in {results})\n\n" + curves(mine)
        if failed:
            text += "\n\nFailed points: " + "; ".join(f"{r['run']['id']}: {(r['run']['error'] or '?')[:120]}" for r in failed)
        print("\n" + text)
        if mine:
            (results / f"cost-{device}.md").write_text(text + "\n")
            print(f"written: {results / f'cost-{device}.md'}")
    return 0 if rows and not failed else 1
