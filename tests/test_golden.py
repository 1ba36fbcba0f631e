"""Golden losses: the first training losses of a tiny model under each method, pinned (as torchtune
pins its recipes' first losses). A change that alters what a method trains, how a batch is built,
the schedule or the loss moves these numbers and fails here, long before a reference run would
show it. A deliberate change re-pins them:

    PEFT_BENCH_PIN_GOLDEN=1 python -m pytest tests/test_golden.py

and the diff of tests/golden_losses.json shows what moved.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from bench.methods import METHODS
from bench.run.pipeline import seed_everything
from bench.run.train import train
from conftest import build, tiered

GOLDEN = Path(__file__).with_name("golden_losses.json")
PIN = os.environ.get("PEFT_BENCH_PIN_GOLDEN") == "1"
MODELS = ("tiny-bert", "tiny-llama")  # an encoder classifier and a decoder LM: the two loss paths
MORE = ("tiny-mpnet", "tiny-gemma3")  # the families of mpnet-base and gemma3-270m: system tier
STEPS = 3
CASES = [(model, name) for model in (*MODELS, *MORE) for name in sorted(METHODS) if METHODS[name].trains]


def _first_losses(cfg_factory, model: str, method: str) -> list[float] | None:
    """STEPS losses from seed 0 on one thread (a fixed reduction order); None if the method refuses the model."""
    from bench.errors import ConfigError

    cfg = cfg_factory(f"model={model}", f"method={method}", *METHODS[method].examples[0], f"train.max_steps={STEPS}",
                      "train.log_every=1", "train.warmup_ratio=0.0", "train.diverge_factor=0", "seed=0")
    seed_everything(0)  # the head's and the adapters' init draw from the global generator
    try:
        base, task, _ = build(cfg, n_train=8)
    except ConfigError as err:
        if any(word in str(err) for word in METHODS[method].refuses):
            return None
        raise
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(METHODS[method].apply(base, cfg.method, task), task, cfg, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    return [float(p["loss"]) for p in result.curve]


@pytest.fixture(scope="module")
def pinned():
    table = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    yield table
    if PIN:
        GOLDEN.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")


@pytest.mark.parametrize("model,method", tiered(CASES, keep=[c for c in CASES if c[0] in MODELS]))
def test_first_losses_match_the_pinned_ones(cfg_factory, pinned, model, method):
    losses = _first_losses(cfg_factory, model, method)
    key = f"{model}/{method}"
    if losses is None:
        assert key not in pinned, f"{key} has pinned losses but now refuses the model"
        pytest.skip(f"{method} refuses {model} (declared)")
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    if PIN:
        pinned[key] = losses
        return
    assert key in pinned, f"no golden losses for {key}: pin them with PEFT_BENCH_PIN_GOLDEN=1 python -m pytest {__file__}"
    assert losses == pytest.approx(pinned[key], rel=1e-4, abs=1e-5), f"{key}: first losses moved"


def test_the_golden_file_pins_only_known_cases():
    """A method that is renamed or dropped leaves no stale entry behind."""
    if PIN:
        pytest.skip("pinning: the file is rewritten when the module's tests end")
    pinned = json.loads(GOLDEN.read_text())
    assert set(pinned) <= {f"{m}/{n}" for m, n in CASES}
