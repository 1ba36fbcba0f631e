"""The trade-off benchmark: full fine-tuning vs LoRA vs prompt tuning on the two offline models,
each run in its own process, printing every measured memory part beside the estimator's prediction
and the inference cost as ratios to the base model measured in the same process.

    python -m bench.harness.benchmark                    # minilm-l6 on SST-2, smollm2-135m on DialogSum (~12 min on 2 cores)
    python -m bench.harness.benchmark models=tiny        # the same on tiny random models (seconds; cost only)

Records go to results_dir (default results/reference/benchmark); the report reads them back.
A benchmark prints figures; it asserts nothing about speed (shared machines are noisy).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.config.compose import compose, split_args
from bench.errors import ConfigError

from bench.records.store import load_records
from bench.sweep.supervise import run_isolated

METHODS = ("full", "lora", "prompt_tuning")
SUITES = {  # model, task, overrides that keep each run to a minute or two on 2 CPU cores
    "offline": [
        ("minilm-l6", "sst2", ["inference.repeats=3", "train.max_steps=30", "train.batch_size=16", "eval.max_examples=200"]),
        ("smollm2-135m", "dialogsum", ["inference.repeats=2", "train.max_steps=6", "train.batch_size=4", "eval.max_examples=8",
                                       "eval.max_new_tokens=32", "task.max_source_tokens=256"]),
    ],
    "tiny": [
        ("tiny-bert", "embedded-sentiment", ["train.max_steps=5", "train.batch_size=8", "eval.max_examples=16"]),
        ("tiny-llama", "dialogsum", ["train.max_steps=3", "train.batch_size=2", "eval.max_examples=4",
                                     "eval.max_new_tokens=8", "task.max_source_tokens=128"]),
    ],
}
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


def main(argv: list[str] | None = None) -> int:
    try:  # its options, and config overrides (train.max_steps=50) for every run
        args, overrides = split_args(sys.argv[1:] if argv is None else argv,
                                 {"models": "offline", "results_dir": "results/reference/benchmark", "report_only": "false"})
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    suite = args["models"]
    if suite not in SUITES:
        print(f"models={suite} is not valid: one of {', '.join(SUITES)}", file=sys.stderr)
        return 2
    results_dir = Path(args["results_dir"])
    if args.get("report_only") != "true":
        for model, task, extra in SUITES[suite]:
            for method in METHODS:
                cfg = compose([f"model={model}", f"task={task}", f"method={method}", f"results_dir={results_dir}",
                               "keep_artifacts=false", *extra, *overrides])
                rec = run_isolated(cfg, sweep=f"benchmark:{suite}")
                print(f"{model} {method}: {rec['run']['status']}", flush=True)
    models = {m for m, _, _ in SUITES[suite]}
    records = sorted((r for r in load_records(results_dir) if r["run"]["model"] in models),
                     key=lambda r: (r["run"]["model"], METHODS.index(r["run"]["method"]) if r["run"]["method"] in METHODS else 9))
    print("\nTrade-offs (quality from short runs: a cost benchmark, not a quality ranking):\n")
    print(tradeoff_table(records))
    print("\nMemory (MiB), measured / predicted by `python -m bench.measure.estimate`:\n")
    print(memory_table(records))
    print("\nInference cost beside the base model (same process, interleaved):\n")
    print(inference_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
