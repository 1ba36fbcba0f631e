"""The divergence rule of the training loop (bench.run.train.divergence), through the loop itself:
a model whose loss follows a script we write trains in bench.run.train.train, so the rule is
judged on exactly the numbers the loop sees. A run that blows up (or goes NaN) fails as diverged;
a run that starts from a model already fitting its task, its loss near zero and wobbling, does not
(the misfire of `python -m bench.harness.perf`, whose contestants train one model in turn)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from bench.run.train import CHANCE_LOSS, DIVERGE_WINDOW, NonFiniteLoss, divergence, train
from bench.tasks import Task
from conftest import make_cfg

GROWING = [2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 50.0, 50.0, 50.0, 50.0, 50.0]  # mean of steps 4-8 is 24.2 > 10 x 2
NEAR_ZERO_WOBBLE = [0.0003, 0.002, 0.03, 0.06, 0.05, 0.06, 0.04, 0.0594, 0.06, 0.01, 0.06, 0.05]  # the perf harness's case


class Scripted(torch.nn.Module):
    """A model whose loss at the n-th forward pass is script[n] (a tensor with a gradient, as a model's)."""

    def __init__(self, script: list[float]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.script = iter(script)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=self.weight.sum() * 0.0 + next(self.script))


def collate(features: list[dict]) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor([f["input_ids"] for f in features]),
            "attention_mask": torch.tensor([f["attention_mask"] for f in features])}


def scripted_run(script: list[float], *overrides: str):
    """Train the scripted model for len(script) steps in the suite's loop (default diverge_factor unless overridden)."""
    task = Task(name="scripted", kind="classification", head="classifier", collate=collate, evaluate=lambda *a: {},
                main_metric="accuracy", train=[{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1]} for _ in range(8)], eval=[])
    cfg = make_cfg(["tracking=none", f"train.max_steps={len(script)}", "train.batch_size=2", "train.log_every=1000",
                    "train.eval_every=0", *overrides])
    return train(Scripted(script), task, cfg, torch.device("cpu"))


def test_the_default_factor_is_the_one_these_scripts_assume():
    assert float(make_cfg(["tracking=none"]).train.diverge_factor) == 10.0 and DIVERGE_WINDOW == 5


def test_a_loss_growing_from_2_to_50_fails_as_diverged_and_names_its_numbers():
    with pytest.raises(NonFiniteLoss) as err:
        scripted_run(GROWING)
    msg = str(err.value)
    assert msg.startswith("mean loss 24.2 over steps 4-8 is over 10x 2,") and "first step's loss 2" in msg, msg
    assert [p["loss"] for p in err.value.curve] == GROWING[:7]  # the curve up to the step before


def test_a_nan_loss_fails_as_diverged_even_with_the_factor_off():
    for overrides in ([], ["train.diverge_factor=0"]):
        with pytest.raises(NonFiniteLoss, match=r"^loss is nan at step 3$") as err:
            scripted_run([2.0, 3.0, float("nan"), 2.0, 2.0], *overrides)
        assert len(err.value.curve) == 2
    with pytest.raises(NonFiniteLoss, match=r"^loss is inf at step 2$"):
        scripted_run([2.0, float("inf"), 2.0])


def test_a_near_zero_loss_that_wobbles_up_to_0_06_is_no_divergence():
    result = scripted_run(NEAR_ZERO_WOBBLE)  # 200x its first loss, but 0.06 nats is a model that fits its task
    assert [p["loss"] for p in result.curve] == pytest.approx(NEAR_ZERO_WOBBLE)


def test_the_factor_off_lets_a_finite_growing_loss_train_on():
    result = scripted_run(GROWING, "train.diverge_factor=0")
    assert len(result.curve) == len(GROWING)


def test_the_reference_is_the_first_loss_or_chance_level_whichever_is_larger():
    # A near-zero start is judged against chance (ln 2): 10 x 0.693 = 6.93 nats is where it diverges.
    assert divergence([0.0003] + [0.99 * 10 * CHANCE_LOSS] * DIVERGE_WINDOW, 10.0) is None
    assert "first step's loss 0.0003 and chance level ln 2" in divergence([0.0003] + [1.01 * 10 * CHANCE_LOSS] * DIVERGE_WINDOW, 10.0)
    # Above chance, the first loss is the yardstick: 10 x 1.5 = 15.
    assert divergence([1.5, 14.0, 15.0, 15.0, 16.0], 10.0) is None
    assert divergence([1.5, 20.0, 20.0, 20.0, 20.0], 10.0).startswith("mean loss 16.3 over steps 1-5 is over 10x 1.5,")
    # No verdict before a whole window, nor with the factor off; NaN always.
    assert divergence([0.5, 100.0, 100.0, 100.0], 10.0) is None and divergence([0.5] + [100.0] * 9, 0.0) is None
    assert divergence([0.5, math.nan], 0.0) == "loss is nan at step 2"
