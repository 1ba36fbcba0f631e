"""A point's identity leaves out what cannot change its result: a method that trains nothing
(its registry entry declares trains=False) is one point at every training budget, lr or other
train.* knob, in its config hash, its study and the report's point and label; a method that
trains keeps them all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.methods import METHODS
from bench.records.store import config_digest, config_hash, method_trains, without_training
from bench.report.frames import points_frame, runs_frame
from conftest import ROOT, make_cfg

TRAINING = [["train.max_steps=100"], ["train.max_steps=200"], ["train.lr=0.01"], ["method.lr=0.5"],
            ["train.batch_size=4", "train.schedule=cosine"], ["train.group_by_length=true", "train.warmup_ratio=0.2"]]


def plain(cfg) -> dict:
    from omegaconf import OmegaConf

    return json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=True)))


def test_a_method_that_trains_nothing_hashes_the_same_at_any_training_knob():
    digests = {config_hash(make_cfg(["method=none", *knobs])) for knobs in TRAINING}
    assert len(digests) == 1
    # what it is evaluated on still is identity
    assert config_hash(make_cfg(["method=none", "eval.max_examples=5"])) not in digests
    assert config_hash(make_cfg(["method=none", "model=tiny-bert"])) not in digests


def test_a_method_that_trains_hashes_differently_at_each_budget():
    for method in ("full", "lora"):
        digests = [config_hash(make_cfg([f"method={method}", *knobs])) for knobs in TRAINING]
        assert len(set(digests)) == len(TRAINING), method
    assert config_hash(make_cfg(["method=full", "train.max_steps=100"])) != config_hash(make_cfg(["method=full", "train.max_steps=200"]))


def test_the_identity_follows_each_methods_declaration_in_the_registry():
    """Whatever the method is called: the training knobs leave the identity exactly where its
    registry entry says it trains nothing."""
    for name, method in METHODS.items():
        assert method_trains(name) is method.trains, name
        config = {"method": {"name": name, "lr": 0.1}, "train": {"max_steps": 7}, "seed": 0}
        assert ("train" in without_training(config)) is method.trains, name
    assert any(not m.trains for m in METHODS.values())  # `none` declares it


def test_the_hash_is_the_same_where_the_registry_is_not_loaded():
    """The report and the plain checks load no torch, so they read the declaration's torch-free
    mirror; a config hashes the same there as in a run."""
    configs = [plain(make_cfg(["method=none", "train.max_steps=100"])), plain(make_cfg(["method=full", "train.max_steps=100"]))]
    code = ("import json, sys; from bench.records.store import config_digest; "
            "print(json.dumps([config_digest(c) for c in json.loads(sys.stdin.read())])); "
            "assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, input=json.dumps(configs), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [config_digest(c) for c in configs]


def record(method: str, max_steps: int, seed: int = 0) -> dict:
    config = plain(make_cfg([f"method={method}", "model=tiny-bert", f"train.max_steps={max_steps}", f"seed={seed}"]))
    return {"schema_version": 2, "run": {
        "id": f"{method}-{max_steps}-{seed}", "config_hash": config_digest(config), "model": "tiny-bert", "task": "embedded-sentiment",
        "method": method, "seed": seed, "status": "success", "error": None, "random_weights": False, "config": config,
        "started_at": f"2026-01-01T00:00:0{seed}", "finished_at": f"2026-01-01T00:01:0{seed}"},
        "params": {"trainable": 0 if method == "none" else 100, "total": 100, "percent": 0.0 if method == "none" else 100.0},
        "quality": {"main_metric": "accuracy", "accuracy": 0.5, "num_examples": 8}}


@pytest.mark.parametrize("method,points,labels", [
    ("none", 1, {"none"}),
    ("full", 2, {"full steps=100", "full steps=200"}),
])
def test_the_reports_point_and_label_leave_out_what_cannot_change_the_result(method: str, points: int, labels: set[str]):
    runs = runs_frame([record(method, 100, 0), record(method, 200, 1)])
    assert set(runs["label"]) == labels
    assert runs["point"].nunique() == points
    assert len(points_frame(runs)) == points
