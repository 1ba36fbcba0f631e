"""`peft-bench perf`, the overhead benchmark, on tiny models: its tables hold every contestant and method,
and its last line is the figure CI and users read. It asserts no speed (machines are noisy)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _perf(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "bench", "perf", "models=tiny", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.system
def test_overhead_table_has_each_method_and_contestant_and_ends_with_the_max_ratio():
    out = _perf("part=overhead", "steps=3", "rounds=1")
    print(out)
    rows = [line for line in out.splitlines() if line.startswith("| train step") or line.startswith("| classify pass")]
    assert sorted(r.split("|")[2].strip() for r in rows) == sorted(["full", "lora", "prompt_tuning"] * 2)
    for r in rows:
        cells = [c.strip() for c in r.split("|")[1:-1]]
        assert float(cells[2]) > 0 and float(cells[3]) > 0 and float(cells[5]) > 0
        if r.startswith("| train step"):
            assert float(cells[4]) > 0 and float(cells[6]) > 0  # the Trainer column is filled for training
    assert sum(line.startswith("| generate") for line in out.splitlines()) == 2
    assert "data preparation" in out and "from the cache" in out
    ratios = [float(r.split("|")[6]) for r in rows]
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"overhead ratio max: \d+\.\d\d", last) and float(last.split(": ")[1]) >= round(max(ratios), 2) - 0.005


@pytest.mark.slow
def test_switches_table_measures_each_switch_against_the_default():
    out = _perf("part=switches", "steps=4", "rounds=2")
    print(out)
    names = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and not line.startswith("| switch")]
    assert names == ["default (fp32, auto attention)", "gradient checkpointing", "eager attention", "sdpa attention",
                     "bf16 autocast", "length-grouped batches"]
    grouped = next(line for line in out.splitlines() if line.startswith("| length-grouped"))
    default = next(line for line in out.splitlines() if line.startswith("| default"))
    assert float(grouped.split("|")[6]) < float(default.split("|")[6])  # grouping pads less (not a timing)


def test_cost_curve_exponent_is_the_log_log_slope():
    from bench.harness.cost import exponent

    assert exponent([1, 2, 4, 8], [3 * x**2 for x in (1, 2, 4, 8)]) == pytest.approx(2.0)
    assert exponent([64, 128, 256], [0.5, 1.0, 2.0]) == pytest.approx(1.0)
    assert exponent([5], [1.0]) is None


@pytest.mark.slow
def test_cost_curve_quick_measures_every_cell_and_fits_exponents(tmp_path: Path):
    """The cost curve is a preset of the app: its cells are records (relaunched, it runs none again)."""
    from bench.records.store import load_records

    proc = subprocess.run([sys.executable, "-m", "bench", "cost", f"results_dir={tmp_path}", "quick=true"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = load_records(tmp_path)
    assert len(records) == 9 and all(r["run"]["status"] == "success" for r in records)  # 2 sizes + 1 more length, x 3 methods
    assert all(r["speed"]["step_time_median_s"] > 0 and r["memory"]["peak_bytes"] > 0 and r["speed"]["flops_per_token"] > 0 for r in records)
    table = (tmp_path / "cost-cpu.md").read_text()
    method_rows = [line for line in table.splitlines() if line.startswith(("| full", "| lora", "| prompt_tuning"))]
    assert len(method_rows) == 6 and all(re.search(r"\| -?\d+\.\d\d, -?\d+\.\d\d \|$", line) for line in method_rows)
    again = subprocess.run([sys.executable, "-m", "bench", "cost", f"results_dir={tmp_path}", "quick=true"], cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0 and len(load_records(tmp_path)) == 9 and again.stdout.count("skip:") == 9


def test_cost_curve_refuses_a_bare_or_misspelt_argument():
    from bench.cli import invoke

    assert invoke(["cost", "results/x"]) == 2 and invoke(["cost", "quick=yes"]) == 2 and invoke(["cost", "train.bsz=3"]) == 2


@pytest.mark.system
def test_step_times_puts_each_method_beside_the_reference_and_peft_s_ratio(tmp_path: Path):
    """`peft-bench step-times` on tiny-bert: a row per method with its ratio to the LoRA r=32
    reference, PEFT's published ratio where PEFT ran the method, and a declared refusal as a row."""
    from bench.cli import invoke

    out = tmp_path / "steps.md"
    assert invoke(["step-times", "model=tiny-bert", "methods=[oft,prefix_tuning]", "steps=1", "rounds=1", f"output={out}"]) == 0
    text = out.read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")}
    assert set(rows) == {"lora r32 (reference)", "oft", "prefix_tuning"}
    assert " | 1.00 | " in rows["lora r32 (reference)"] and "refused" in rows["prefix_tuning"]
    if (ROOT.parent / "shared" / "peft-method-comparison" / "results").is_dir():
        assert "oft-rank32" in rows["oft"]  # PEFT's run and its ratio to lora-rank32 beside ours
    assert invoke(["step-times", "model=tiny-bert", "methods=[nope]"]) == 2
