"""bench.harness.gpu, the GPU benchmark, checked on the CPU with its CUDA parts skipped: its smoke preset's
points are records (FLOPs counted on the CPU too), the table has a row per point, and a bad
argument or a machine without CUDA is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.system
def test_gpu_benchmark_smoke_preset_runs_on_the_cpu_into_records(tmp_path: Path):
    from bench.records.store import load_records

    proc = subprocess.run([sys.executable, "-m", "bench", "gpu", f"results_dir={tmp_path}", "smoke=true"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    benchmark = proc.stdout[proc.stdout.index("# GPU benchmark"):]  # after the sweep's own table
    rows = [line for line in benchmark.splitlines() if line.startswith(("| llama-h32-l2", "| tiny-t5"))]
    assert len(rows) == 6 and not any("failed" in r for r in rows)
    assert "bf16 matmul peak measured in each point: n/a" in proc.stdout
    assert "Data-parallel cell (2 GPUs): skipped: it needs 2 CUDA devices" in benchmark  # it runs only where torch sees 2 GPUs
    assert (tmp_path / "gpu-smoke.md").is_file()
    records = load_records(tmp_path)
    assert len(records) == 6 and {r["run"]["method"] for r in records} == {"full", "lora", "prompt_tuning"}
    for r in records:
        assert r["run"]["status"] == "success" and r["run"]["random_weights"]
        sp = r["speed"]
        assert sp["step_time_median_s"] > 0 and sp["tokens_per_s"] > 0 and sp["tflops_per_s"] > 0  # FLOPs counted on the CPU too
        assert sp["mfu"] is None and sp["peak_tflops"] is None  # no card: no peak to divide by
        assert (r["params"]["trainable"] == r["params"]["total"]) == (r["run"]["method"] == "full")
        assert r["memory"]["estimate"]["total_bytes"] > 0


def test_gpu_script_without_cuda_says_how_to_smoke_test():
    import torch

    from bench.cli import invoke

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal path does not apply")
    assert invoke(["gpu"]) == 2
    assert invoke(["gpu", "smoke=maybe"]) == 2 and invoke(["gpu", "resuls=x"]) == 2
