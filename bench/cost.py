"""The cost curve: how training step time and peak memory grow with model size and with sequence
length, for full fine-tuning, LoRA and prompt tuning, with the fitted power-law exponent of each.

    python -m bench.cost                         # CPU: Llama-shaped models from 7M to SmolLM2-135M's shape (~6 min on 2 cores)
    python -m bench.cost out=results/reference/cost-curve   # also writes the table and the points
    python -m bench.cost quick=true              # toy sizes: the machinery in a minute

Models are built from config (random weights: cost only) with SmolLM2's vocabulary, trained on
random tokens of fixed length by the suite's own loop. Each cell runs in its own process, so its
memory peak is its own (peak RSS above the RSS before the model was built; on CUDA the allocator's
peak). The exponent k of cost ~ x^k is the least-squares slope in log-log space.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

METHODS = ("full", "lora", "prompt_tuning")
VOCAB = 49152  # SmolLM2's
SIZES = {  # name -> Llama shape (hidden, layers, intermediate, heads, kv heads); the last is SmolLM2-135M's
    "llama-h128-l4": (128, 4, 512, 4, 2),
    "llama-h256-l8": (256, 8, 768, 4, 2),
    "llama-h384-l16": (384, 16, 1024, 6, 2),
    "llama-h576-l30": (576, 30, 1536, 9, 3),
}
QUICK = {"llama-h32-l2": (32, 2, 64, 4, 2), "llama-h64-l4": (64, 4, 128, 4, 2)}
SEQ_LENS = (64, 128, 256, 512)


def measure_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """One (model, method, seq_len) cell in this process: build, train `steps` steps, read the peak."""
    from bench import measure
    from bench.gpu import base_cfg, build, synthetic_task
    from bench.methods import get_method
    from bench.train import train

    device = torch.device(spec["device"])
    hidden, layers, inter, heads, kv = spec["shape"]
    size = dict(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=inter, num_attention_heads=heads,
                num_key_value_heads=kv, vocab_size=VOCAB, tie_word_embeddings=True, max_position_embeddings=4096)
    overrides = {"train.batch_size": spec["batch"], "train.max_steps": spec["steps"], "train.log_every": 10**9,
                 "train.warmup_ratio": 0.0, "speed.precision": "bf16" if device.type == "cuda" else "fp32"}
    if spec["method"] == "prompt_tuning":
        overrides["method.init"] = "random"
    cfg = base_cfg(spec["method"], overrides)
    task = synthetic_task("causal_lm", VOCAB, spec["batch"], spec["seq_len"], 0)
    toy = dict(size, hidden_size=8, num_hidden_layers=1, intermediate_size=8, num_attention_heads=2, num_key_value_heads=1, vocab_size=16)
    get_method(spec["method"]).apply(build("llama", toy, "causal_lm", device), cfg.method, task)  # imports paid before the baseline
    rss_before = measure.rss_bytes()
    measure.reset_cpu_peak()
    base = build("llama", size, "causal_lm", device)
    base_params = measure.param_counts(base)["total"]
    model = get_method(spec["method"]).apply(base, cfg.method, task).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = train(model, task, cfg, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else measure.cpu_peak_bytes() - rss_before
    counts = measure.param_counts(model)
    return {**{k: spec[k] for k in ("model", "method", "seq_len", "batch")}, "params": base_params, "trainable": counts["trainable"],
            "step_s": statistics.median(result.step_times_s[2:] or result.step_times_s), "peak_bytes": peak}


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """measure_cell in a fresh process (its own memory peak); a failure becomes a row with its reason."""
    proc = subprocess.run([sys.executable, "-m", "bench.cost", "cell=" + json.dumps(spec)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**{k: spec[k] for k in ("model", "method", "seq_len", "batch")}, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x: cost ~ x^k."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    var = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var if var else None


def curves(rows: list[dict[str, Any]], fixed_model: str, fixed_seq: int) -> str:
    """Two tables: cost against model size at fixed_seq, and against seq_len on fixed_model, each with its exponents."""
    ok = [r for r in rows if "error" not in r]
    out = []
    for axis, pick, xkey, xname in (("model size", lambda r: r["seq_len"] == fixed_seq, "params", "params"),
                                    ("sequence length", lambda r: r["model"] == fixed_model, "seq_len", "seq_len")):
        cells = [r for r in ok if pick(r)]
        xs = sorted({r[xkey] for r in cells})
        title = f"### Step time and peak memory against {axis}" + (f" (seq_len {fixed_seq})" if xkey == "params" else f" ({fixed_model})")
        head = "| method | " + " | ".join(f"{x / 1e6:.1f}M" if xkey == "params" else str(x) for x in xs) + " | exponent k (time, memory) |"
        lines = [title, "", head, "|---|" + "---|" * (len(xs) + 1)]
        for method in METHODS:
            by_x = {r[xkey]: r for r in cells if r["method"] == method}
            shown = [f"{by_x[x]['step_s']:.3f} s, {by_x[x]['peak_bytes'] / 2**20:,.0f} MiB" if x in by_x else "" for x in xs]
            have = [x for x in xs if x in by_x]
            kt = exponent(have, [by_x[x]["step_s"] for x in have])
            km = exponent(have, [max(by_x[x]["peak_bytes"], 1) for x in have])
            lines.append(f"| {method} | " + " | ".join(shown) + f" | {_k(kt)}, {_k(km)} |")
        out.append("\n".join(lines))
    failed = [r for r in rows if "error" in r]
    if failed:
        out.append("Failed cells: " + "; ".join(f"{r['model']} {r['method']} seq {r['seq_len']}: {r['error'][:120]}" for r in failed))
    return "\n\n".join(out)


def _k(k: float | None) -> str:
    return "" if k is None else f"{k:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    if "cell" in args:  # the child: one cell, its result as a JSON line
        print(json.dumps(measure_cell(json.loads(args["cell"]))))
        return 0
    quick = args.get("quick", "false") == "true"
    device = args.get("device", "cuda" if torch.cuda.is_available() else "cpu")
    sizes, seqs = (QUICK, (16, 32)) if quick else (SIZES, SEQ_LENS)
    batch, steps = (2, 4) if quick else (int(args.get("batch", 4)), int(args.get("steps", 6)))
    fixed_seq, fixed_model = seqs[1], list(sizes)[-2]
    cells = [(m, fixed_seq) for m in sizes] + [(fixed_model, s) for s in seqs if s != fixed_seq]
    print(f"{len(cells) * len(METHODS)} cells on {device}, batch {batch}, {steps} steps each (median of the last {steps - 2})", flush=True)
    rows, start = [], time.perf_counter()
    for model, seq_len in cells:
        for method in METHODS:
            rows.append(run_cell({"model": model, "shape": sizes[model], "method": method, "seq_len": seq_len, "batch": batch,
                                  "steps": steps, "device": device}))
            print(f"  {model} seq {seq_len} {method}: {time.perf_counter() - start:.0f} s", flush=True)
    text = f"## Cost curve on {device} (batch {batch}, random weights, vocabulary {VOCAB:,})\n\n" + curves(rows, fixed_model, fixed_seq)
    print("\n" + text)
    if "out" in args:
        out = Path(args["out"])
        out.mkdir(parents=True, exist_ok=True)
        (out / f"cost-{device}.md").write_text(text + "\n")
        (out / f"cost-{device}.json").write_text(json.dumps(rows, indent=1))
        print(f"written: {out}/cost-{device}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
