"""The trade-off benchmark: full fine-tuning vs LoRA vs prompt tuning on the two offline models,
each a point of the preset conf/experiment/benchmark.yaml (a sweep of the one app: claims, resume and
max_attempts apply; a relaunch runs only what is missing), printing every measured memory part
beside the estimator's prediction and the inference cost as ratios to the base model measured in
the same process.

    peft-bench benchmark                    # minilm-l6 on SST-2, smollm2-135m on DialogSum (~12 min on 2 cores)
    peft-bench benchmark models=tiny        # the same on tiny random models (seconds; cost only)

Records go to results_dir (default results/reference/benchmark); the report reads them back.
A benchmark prints figures; it asserts nothing about speed (shared machines are noisy).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.config.compose import sweep_preset
from bench.errors import ConfigError
from bench.records.store import load_records

METHODS = ("full", "lora", "prompt_tuning")  # the order of the tables' rows
PRESETS = {"offline": ("benchmark", ("minilm-l6", "smollm2-135m")), "tiny": ("benchmark_tiny", ("tiny-bert", "tiny-llama"))}
PARTS = [("weights", "weights_bytes", "weights_bytes"), ("gradients", "gradients_bytes", "gradients_bytes"),
         ("optimizer state", "optimizer_state_bytes", "optimizer_state_bytes"),
         ("activations + other", "activations_and_other_bytes", "activations_bytes")]


def _mib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**20:,.1f}"


def memory_table(records: list[dict[str, Any]]) -> str:
    """One row per run: each measured part beside its prediction (MiB), and the peak."""
    head = "| model | method | " + " | ".join(f"{p} meas / pred" for p, _, _ in PARTS) + " | peak meas / pred |"
    lines = [head, "|" + "---|" * (3 + len(PARTS))]
    for r in records:
        mem = r.get("memory") or {}
        if r["run"]["status"] != "success" or "estimate" not in mem:
            lines.append(f"| {r['run']['model']} | {r['run']['method']} | {r['run']['status']}: {(r['run']['error'] or '')[:100]} |")
            continue
        b, e = mem["breakdown"], mem["estimate"]
        cells = [f"{_mib(b[m])} / {_mib(e[p])}" for _, m, p in PARTS]
        lines.append(f"| {r['run']['model']} | {r['run']['method']} | " + " | ".join(cells)
                     + f" | {_mib(mem['peak_bytes'])} / {_mib(e['total_bytes'])} |")
    return "\n".join(lines)


def tradeoff_table(records: list[dict[str, Any]]) -> str:
    """Parameters, speed, storage, forgetting and quality: the rest of each run's trade-offs."""
    lines = ["| model | method | trainable params | step s (median) | tokens/s | storage MiB | forgetting (before -> after) | quality |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r["run"]["status"] != "success":
            continue
        p, sp, q, f = r["params"], r["speed"], r["quality"], r.get("forgetting") or {}
        forget = f"{f['measure']} {f['before']:.3f} -> {f['after']:.3f}" if f else ""
        main = q["main_metric"]
        quality = "(random weights)" if r["run"].get("random_weights") else f"{main} {q[main]:.3f}"
        lines.append(f"| {r['run']['model']} | {r['run']['method']} | {p['trainable']:,} ({p['percent']:.2f}%) | "
                     f"{sp['step_time_median_s']:.3f} | {sp['tokens_per_s']:,.0f} | {r['storage']['bytes'] / 2**20:,.2f} | {forget} | {quality} |")
    return "\n".join(lines)


def inference_table(records: list[dict[str, Any]]) -> str:
    """Latency per example (ms) at batch 1 and batched, and the ratio to the base model."""
    lines = ["| model | method | variant | batch 1 ms/example | ratio to base | batched ms/example | ratio to base | tokens/s (batched) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        inf = r.get("inference")
        if not inf or r["run"]["status"] != "success":
            continue
        batched = f"batch_{inf['batch_size']}"
        for variant in ("base", "model", "merged"):
            if variant not in inf:
                continue
            row, ratio = inf[variant], inf.get("ratio_to_base", {}).get(variant, {})
            name = variant + (f" (+{inf['extra_input_tokens']} virtual tokens)" if variant == "model" and inf["extra_input_tokens"] else "")
            tps = row[batched].get("tokens_per_s")
            lines.append(f"| {r['run']['model']} | {r['run']['method']} | {name} | {row['batch_1']['latency_per_example_s'] * 1000:.1f} | "
                         f"{ratio.get('batch_1', 1.0):.2f} | {row[batched]['latency_per_example_s'] * 1000:.1f} | {ratio.get(batched, 1.0):.2f} | "
                         f"{'' if tps is None else f'{tps:,.0f}'} |")
    return "\n".join(lines)


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench benchmark` (its keys: conf/benchmark.yaml; the run's overrides go to every point)."""
    if opts.models not in PRESETS:
        raise ConfigError("models", opts.models, f"one of {', '.join(PRESETS)}")
    preset, models = PRESETS[opts.models]
    results_dir = Path(opts.results_dir)
    if opts.sweep:  # the preset's points: a relaunch runs only the missing ones
        code = sweep_preset(preset, results_dir, overrides)
        if code != 0:
            print(f"the benchmark's sweep exited with {code}; tabulating the records it wrote", file=sys.stderr)
    records = sorted((r for r in load_records(results_dir) if r["run"]["model"] in models) if results_dir.is_dir() else [],
                     key=lambda r: (r["run"]["model"], METHODS.index(r["run"]["method"]) if r["run"]["method"] in METHODS else 9))
    print("\nTrade-offs (quality from short runs: a cost benchmark, not a quality ranking):\n")
    print(tradeoff_table(records))
    print("\nMemory (MiB), measured / predicted by `peft-bench estimate`:\n")
    print(memory_table(records))
    print("\nInference cost beside the base model (same process, interleaved):\n")
    print(inference_table(records))
    return 0 if records else 1
