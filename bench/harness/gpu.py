"""The GPU benchmark: full fine-tuning, LoRA and prompt tuning on models built from config at real
sizes (random weights: speed and memory only), trained by the suite's own loop with bf16 autocast
and fused AdamW. Per point: step time, tokens/s, model FLOPs utilisation against the card's bf16
peak measured in the point's process, and the peak memory with its breakdown beside the
estimator's prediction.

The points are a preset of the one app (conf/experiment/gpu.yaml; the shapes are conf/model/
YAMLs, the task is task=synthetic), so each is a record like any run's; this module runs the
preset (a relaunch runs only what is missing) and prints the table from the records:

    peft-bench gpu results_dir=results/gpu          # on a CUDA machine: ~5 min on an H100
    peft-bench gpu results_dir=/tmp/gpu smoke=true  # toy shapes on the CPU: the same code, CUDA parts skipped
    peft-bench gpu results_dir=DIR sweep=false        # the table from records already there

Where torch sees 2 or more GPUs, one more cell: the preset's LoRA point on SmolLM2-135M trained
data-parallel by 2 processes, one GPU each (train.world_size=2: NCCL), beside its 1-GPU record; with
fewer GPUs (and in the smoke test) the table says it was skipped.

A machine without network gets the missing packages as wheels: `bash bench/harness/gpu_wheels.sh` here
(downloads them into .whl/), then there: `pip install --no-index --target /tmp/site .whl/*.whl`
and `PYTHONPATH=/tmp/site peft-bench gpu results_dir=$OUT`.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.config.compose import sweep_preset
from bench.harness import data_parallel
from bench.records.store import load_records

DATA_PARALLEL = ("model=smollm2-135m-config", "method=lora")  # the preset's point the data-parallel cell trains on 2 GPUs


def _gib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**30:.2f}"


def table(records: list[dict[str, Any]]) -> str:
    """One row per point: sizes, speed, FLOP rate and memory, from its record."""
    lines = ["| model | method | params | trainable | batch x seq | step ms | tokens/s | TFLOP/s | MFU | peak GiB (pred) | weights / grads / optim / act+other GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["run"]["model"], r["run"]["method"])):
        run, cfg = r["run"], r["run"]["config"]
        if run["status"] != "success":
            lines.append(f"| {run['model']} | {run['method']} | {run['status']}: {(run['error'] or '?')[:150]} |")
            continue
        sp, mem, params = r["speed"], r["memory"], r["params"]
        b = mem.get("breakdown") or {}
        parts = " / ".join(_gib(b.get(k)) for k in ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_and_other_bytes"))
        pred = f" ({_gib(mem['estimate']['total_bytes'])})" if mem.get("estimate") else ""
        mfu = f"{100 * sp['mfu']:.1f}%" if sp.get("mfu") else ""
        tflops = f"{sp['tflops_per_s']:,.1f}" if sp.get("tflops_per_s") else ""
        lines.append(f"| {run['model']} | {run['method']} | {params['total'] / 1e6:,.2f}M | {params['trainable'] / 1e6:,.3f}M | "
                     f"{cfg['train']['batch_size']} x {cfg['task']['seq_len']} | {1e3 * sp['step_time_median_s']:,.1f} | "
                     f"{sp['tokens_per_s']:,.0f} | {tflops} | {mfu} | {_gib(mem['peak_bytes'])}{pred} | {parts} |")
    return "\n".join(lines)


def data_parallel_cell(results: Path, overrides: list[str], smoke: bool, run: bool) -> str:
    """The DATA_PARALLEL point trained by 2 processes, one GPU each, into results/data-parallel (run:
    only where torch sees 2 or more GPUs, else the text says it was skipped), and its table beside
    the point's 1-GPU record."""
    import torch

    gpus = torch.cuda.device_count()
    folder, note = results / "data-parallel", ""
    if run and (smoke or gpus < 2):
        return f"Data-parallel cell (2 GPUs): skipped: it needs 2 CUDA devices, and torch sees {gpus}{' (smoke test)' if smoke else ''}."
    if run:  # one run: train.world_size=2 starts torchrun with 2 processes
        code = subprocess.call([sys.executable, "-m", "bench", "experiment=gpu", *DATA_PARALLEL, *overrides, "train.world_size=2",
                                f"results_dir={folder}"])
        note = f" (its run exited with {code})" if code else ""
    cell = load_records(folder) if folder.is_dir() else []
    if not cell:
        return f"Data-parallel cell (2 GPUs): no records in {folder}."
    model, method = (o.split("=", 1)[1] for o in DATA_PARALLEL)
    single = [r for r in load_records(results) if (r["run"]["model"], r["run"]["method"]) == (model, method)
              and r["run"].get("world_size", 1) == 1]
    return f"## Data-parallel cell: {model} {method} on 2 GPUs{note}\n\n{data_parallel.table(single + cell)}"


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench gpu` (its keys: conf/gpu.yaml; the run's overrides go to every point)."""
    import torch

    smoke = bool(opts.smoke)
    if not smoke and not torch.cuda.is_available():
        print("no CUDA device: run `peft-bench gpu smoke=true` to check the script on the CPU", file=sys.stderr)
        return 2
    results = Path(opts.results_dir)
    if opts.sweep:  # the preset's points, each in its own process: a relaunch runs only the missing ones
        preset = "gpu_smoke" if smoke else "gpu"
        code = sweep_preset(preset, results, overrides)
        if code != 0:
            print(f"the benchmark's sweep exited with {code}; tabulating the records it wrote", file=sys.stderr)
    records = [r for r in load_records(results) if r["run"]["config"]["task"].get("kind") == "synthetic"
               and r["run"].get("world_size", 1) == 1] if results.is_dir() else []  # the data-parallel cell's records: its own table
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not smoke else "cpu (smoke: shapes only)"
    peaks = sorted({r["speed"]["peak_tflops"] for r in records if (r.get("speed") or {}).get("peak_tflops")})
    peak = f"{peaks[0]:.0f} to {peaks[-1]:.0f} TFLOP/s across the points" if peaks else "n/a"
    text = (f"# GPU benchmark: {card}, {datetime.now(timezone.utc):%Y-%m-%d}\n\nbf16 matmul peak measured in each point: {peak}; "
            f"torch {torch.__version__}; bf16 autocast over fp32 weights; random weights (speed and memory only); "
            f"MFU = counted FLOPs per token x tokens / step time / that peak. Records: {results}\n\n{table(records)}\n\n"
            f"{data_parallel_cell(results, overrides, smoke, run=bool(opts.sweep))}\n")
    print("\n" + text)
    if records:
        stem = "gpu-" + ("smoke" if smoke else card.replace(" ", "_").replace("(", "").replace(")", "").replace(":", ""))
        (results / f"{stem}.md").write_text(text)
        print(f"written: {results / stem}.md")
    return 0 if records and all(r["run"]["status"] == "success" for r in records) else 1
