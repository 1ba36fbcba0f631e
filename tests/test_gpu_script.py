"""bench.gpu, the GPU benchmark, checked on the CPU with its CUDA parts skipped: every model and
method gives a row, the files are written, and it runs without Hydra (absent on the GPU machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.system
def test_gpu_script_runs_on_the_cpu_without_hydra(tmp_path: Path):
    code = ("import sys; sys.modules['hydra'] = None  # any import of hydra now fails\n"
            "import bench.gpu as g; sys.exit(g.main(['smoke=true', 'out=" + str(tmp_path) + "']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| tiny-")]
    assert len(rows) == 6 and not any("failed" in r for r in rows)
    assert "bf16 matmul peak measured: n/a" in proc.stdout
    (md,) = tmp_path.glob("gpu-*.md")
    data = json.loads(md.with_suffix(".json").read_text())
    assert data["device"].startswith("cpu") and len(data["rows"]) == 6
    assert {r["method"] for r in data["rows"]} == {"full", "lora", "prompt_tuning"}
    for r in data["rows"]:
        assert r["step_s"] > 0 and r["tokens_per_s"] > 0 and r["tflops_per_s"] > 0  # FLOPs counted on the CPU too
        assert (r["trainable"] == r["params"]) == (r["method"] == "full")


def test_gpu_script_without_cuda_says_how_to_smoke_test():
    import pytest
    import torch

    import bench.gpu as g

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal path does not apply")
    assert g.main([]) == 2
