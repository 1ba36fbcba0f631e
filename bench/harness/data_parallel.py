"""Data-parallel training against one process: the same run (the same global batch, the same
steps) with 1, 2, ... processes (train.world_size, DistributedDataParallel), each process count as
a run of its own with its own record, then one table from the records: time per step, tokens/s
over all processes, and each process's peak memory.

    peft-bench data-parallel experiment=data_parallel_cpu method=full results_dir=results/reference/ddp-cpu
    peft-bench data-parallel results_dir=DIR run=false      # the table from the records already there

Where the processes share one machine's cores (the CPU: each process gets cores / processes
threads), the table measures what data parallelism costs (the gradient all-reduce, the split
batches), not a speed-up; on GPUs each process has a card of its own (bench.harness.gpu's cell).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.errors import ConfigError
from bench.records.store import load_records


def table(records: list[dict[str, Any]]) -> str:
    """One row per record: method and process count first, the ratio of its median step time to
    the 1-process run of the same method beside it."""
    lines = ["| method | processes | threads each | step s (median) | x 1 process | tokens/s (all processes) | peak MiB per process | loss (mean of the last 10 steps) |",
             "|---|---|---|---|---|---|---|---|"]
    ordered = sorted(records, key=lambda r: (r["run"]["method"], r["run"].get("world_size", 1), r["run"]["started_at"]))
    single = {r["run"]["method"]: r["speed"]["step_time_median_s"] for r in ordered
              if r["run"].get("world_size", 1) == 1 and r["run"]["status"] == "success"}
    for r in ordered:
        run, world = r["run"], r["run"].get("world_size", 1)
        if run["status"] != "success":
            lines.append(f"| {run['method']} | {world} | {run['status']}: {(run['error'] or '?')[:150]} |")
            continue
        step = r["speed"]["step_time_median_s"]
        ratio = f"{step / single[run['method']]:.2f}" if run["method"] in single else ""
        peaks = " / ".join(f"{p / 2**20:,.0f}" for p in r["memory"].get("peak_bytes_per_rank") or [r["memory"]["peak_bytes"]])
        lines.append(f"| {run['method']} | {world} | {r['env']['torch_threads']} | {step:.3f} | {ratio} | "
                     f"{r['speed']['tokens_per_s']:,.0f} | {peaks} | {statistics.mean(p['loss'] for p in r['curve'][-10:]):.4f} |")
    return "\n".join(lines)


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench data-parallel` (its keys: conf/data-parallel.yaml; the run's overrides go to every run)."""
    counts = list(opts.processes)
    if not counts or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts):
        raise ConfigError("processes", counts, "a list of process counts, each an integer >= 1, such as [1,2]")
    results = Path(opts.results_dir)
    code = 0
    if opts.run:  # one run per process count, each a command of its own (train.world_size > 1 starts torchrun itself)
        for n in counts:
            command = [sys.executable, "-m", "bench", *overrides, f"train.world_size={n}", f"results_dir={results}"]
            print(f"\n$ python {' '.join(command[1:])}", flush=True)
            code = subprocess.call(command) or code
    records = [r for r in load_records(results) if r.get("speed") and r.get("curve")] if results.is_dir() else []
    text = (f"# Data-parallel training: {', '.join(map(str, counts))} processes\n\nRecords: {results}. Step time is rank 0's; "
            f"tokens/s counts every process's tokens; peak memory is measured per process (peak RSS on the CPU).\n\n{table(records)}\n")
    print("\n" + text)
    if records:
        (results / "data-parallel.md").write_text(text)
        print(f"written: {results / 'data-parallel.md'}")
    return 1 if code or not records else 0
