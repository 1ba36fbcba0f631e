"""Seeds until the answer is known (bench/sweep/seeds.py): a point that is clearly worse than the
reference stops at the sweep's seeds; one that cannot be told apart gets seeds, with the reference,
up to adaptive_seeds.max_seeds, and the results folder says how many ran and why each stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.records.store import write_atomic
from bench.sweep import seeds
from conftest import ROOT, make_cfg

FLIPS = {"full": 0.20, "lora": 0.20, "bitfit": 0.45}  # the share of the 300 gold labels each method gets wrong


def fake_launch(folder: Path):
    """Writes a record per job as a run would: predictions with the method's error rate, drawn per seed."""
    launched: list[list[str]] = []
    gold = np.random.default_rng(0).integers(0, 2, 300)

    def launch(jobs: list[list[str]]) -> list[str]:
        paths = []
        for job in jobs:
            launched.append(job)
            cfg = make_cfg(job)
            method, seed = str(cfg.method.name), int(cfg.seed)
            rng = np.random.default_rng(1000 * seed + sum(map(ord, method)))
            preds = np.where(rng.random(300) < FLIPS[method], 1 - gold, gold)
            rec = {"schema_version": 2, "run": {"id": f"{method}-{seed}", "model": "tiny-bert", "task": "sst2", "method": method,
                                                "seed": seed, "status": "success", "role": "run", "study": f"study-{method}",
                                                "config_hash": f"hash-{method}"},
                   "quality": {"accuracy": float((preds == gold).mean()), "main_metric": "accuracy",
                               "per_example": {"predictions": preds.tolist(), "references": gold.tolist()}}}
            paths.append(str(write_atomic(folder / f"{method}-s{seed}.json", rec)))
        return paths

    return launch, launched


def test_seeds_are_added_only_where_the_paired_comparison_is_undecided_up_to_the_maximum(tmp_path: Path):
    common = [f"results_dir={tmp_path}", "model=tiny-bert", "adaptive_seeds.enabled=true", "adaptive_seeds.max_seeds=4"]
    jobs = [common + [f"method={m}", f"seed={s}"] for m in ("full", "lora", "bitfit") for s in (0, 1)]
    launch, launched = fake_launch(tmp_path)
    lines: list[str] = []
    paths = seeds.until_decided(jobs, launch(jobs), make_cfg, launch, log=lines.append)
    added = launched[len(jobs):]
    assert sorted((make_cfg(j).method.name, int(make_cfg(j).seed)) for j in added) == [("full", 2), ("full", 3), ("lora", 2), ("lora", 3)]
    assert len(paths) == len(launched)
    outcome = json.loads((tmp_path / seeds.FILE).read_text())
    bitfit = next(v for k, v in outcome.items() if "/bitfit" in k)
    lora = next(v for k, v in outcome.items() if "/lora" in k)
    assert bitfit["stopped"] == "decided" and bitfit["seeds"] == 2 and bitfit["high"] < 0  # 25 points worse: two seeds tell
    assert lora["stopped"] == "max_seeds" and lora["seeds"] == 4 and lora["low"] < 0 < lora["high"]  # the same error rate: never told apart
    assert any("adding seed 2" in line for line in lines) and any("4 seeds, max_seeds" in line for line in lines)


def test_off_by_default_and_without_a_reference_nothing_is_added(tmp_path: Path):
    launch, launched = fake_launch(tmp_path)
    jobs = [[f"results_dir={tmp_path}", "model=tiny-bert", "method=lora", "seed=0"]]
    assert seeds.until_decided(jobs, launch(jobs), make_cfg, launch) and len(launched) == 1
    jobs = [j + ["adaptive_seeds.enabled=true"] for j in jobs]
    lines: list[str] = []
    seeds.until_decided(jobs, launch(jobs), make_cfg, launch, log=lines.append)
    assert len(launched) == 2 and any("no full point to compare with" in line for line in lines)


def test_the_report_says_how_many_seeds_each_point_ran_and_why_it_stopped():
    from bench.report.paired import seeds_section

    decided = {"minilm-l6/sst2/lora (abcd1234)": {"against": "minilm-l6/sst2/full (ef567890)", "metric": "accuracy", "seeds": 5,
                                                 "difference": -0.002, "low": -0.011, "high": 0.007, "stopped": "max_seeds"},
               "other/sst2/lora (11111111)": {"seeds": 3, "stopped": "decided"}}
    text = seeds_section(decided, "minilm-l6", "sst2")
    assert "| minilm-l6/sst2/lora (abcd1234) | minilm-l6/sst2/full (ef567890) | 5 | max_seeds | -0.002 [-0.011, +0.007] |" in text
    assert "other/" not in text and seeds_section(decided, "minilm-l6", "rte") == ""


@pytest.mark.system
def test_a_sweep_from_the_command_line_adds_a_seed_where_undecided_and_a_relaunch_adds_nothing(tmp_path: Path):
    args = [sys.executable, "-m", "bench", "-m", "model=tiny-bert", "method=full,lora", "adaptive_seeds.enabled=true",
            "adaptive_seeds.max_seeds=2", f"results_dir={tmp_path / 'r'}", "tracking=none", "train.max_steps=2",
            "eval.max_examples=64", "inference.enabled=false", "forgetting.enabled=false"]
    first = subprocess.run(args + [f"hydra.sweep.dir={tmp_path / 's1'}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    records = sorted(p.name for p in (tmp_path / "r").glob("*.json") if p.name != seeds.FILE)
    outcome = json.loads((tmp_path / "r" / seeds.FILE).read_text())
    (lora,) = [v for k, v in outcome.items() if "/lora" in k]
    assert lora["seeds"] in (1, 2) and lora["stopped"] in ("decided", "max_seeds")
    assert len(records) == 2 * lora["seeds"]  # seed 1 for both points only when seed 0 left it undecided
    again = subprocess.run(args + [f"hydra.sweep.dir={tmp_path / 's2'}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and sorted(p.name for p in (tmp_path / "r").glob("*.json") if p.name != seeds.FILE) == records


def test_a_reference_that_is_no_method_is_refused_before_any_point_runs(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "bench", "-m", "model=tiny-bert", "method=lora", "adaptive_seeds.enabled=true",
                          "adaptive_seeds.reference=ful", f"results_dir={tmp_path / 'r'}", f"hydra.sweep.dir={tmp_path / 's'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "adaptive_seeds.reference='ful' is not valid: a method name" in out.stderr, out.stderr[-800:]
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))
