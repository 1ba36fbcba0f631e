"""Methods prove what they train: parameter counts equal the formula, frozen weights stay
bit-identical, trained ones move."""

from __future__ import annotations

import pytest
import torch

from bench.measure.figures import param_counts
from bench.methods import METHODS, get_method
from bench.errors import ConfigError
from bench.run.train import train
from conftest import build


def lora_formula(layers: int, targets: list[tuple[int, int]], r: int, head: int) -> int:
    """sum over layers and targeted linears (in, out) of r * (in + out), plus the task head."""
    return layers * sum(r * (i + o) for i, o in targets) + head


@pytest.mark.parametrize("model,family,targets", [
    # tiny-bert: hidden 32; query 32->32, value 32->32
    ("tiny-bert", "encoder", [(32, 32), (32, 32)]),
    # tiny-llama: hidden 32, 4 heads of 8, 2 KV heads: q_proj 32->32, v_proj 32->16
    ("tiny-llama", "decoder", [(32, 32), (32, 16)]),
])
@pytest.mark.parametrize("r", [1, 4])
def test_lora_trainable_params_equal_formula(cfg_factory, model, family, targets, r):
    cfg = cfg_factory(f"model={model}", "method=lora", f"method.r={r}")
    base, task, built_family = build(cfg, n_train=32)
    assert built_family == family
    total_before = param_counts(base)["total"]
    peft_model = get_method("lora").apply(base, cfg.method, task)
    counts = param_counts(peft_model)
    head = 32 * 2 + 2  # hidden x 2 labels + bias, trained beside the adapter
    assert counts["trainable"] == lora_formula(2, targets, r, head)
    # total = base + adapters + peft's trainable copy of the head
    assert counts["total"] == total_before + lora_formula(2, targets, r, 0) + head


def test_lora_on_causal_lm_has_no_head(cfg_factory, tmp_path):
    from conftest import write_dialogsum_like

    cfg = cfg_factory("model=tiny-llama", "method=lora", "method.r=2", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}")
    base, task, _ = build(cfg, n_train=32)
    counts = param_counts(get_method("lora").apply(base, cfg.method, task))
    assert counts["trainable"] == lora_formula(2, [(32, 32), (32, 16)], 2, 0)


def test_lora_all_linear_targets_every_linear_but_the_head(cfg_factory):
    cfg = cfg_factory("model=tiny-bert", "method=lora", "method.r=2", "method.target_modules=all-linear")
    base, task, _ = build(cfg, n_train=32)
    counts = param_counts(get_method("lora").apply(base, cfg.method, task))
    # per layer: q, k, v, attn-out (32->32 each), intermediate 32->64, output 64->32 (no pooler: it is dropped)
    per_layer = 4 * 2 * (32 + 32) + 2 * (32 + 64) + 2 * (64 + 32)
    assert counts["trainable"] == 2 * per_layer + 66


def test_frozen_weights_bit_identical_and_trained_ones_move(cfg_factory):
    cfg = cfg_factory("model=tiny-bert", "method=lora", "train.lr=1e-2")
    base, task, _ = build(cfg, n_train=32)
    model = get_method("lora").apply(base, cfg.method, task)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train(model, task, cfg, torch.device("cpu"))
    assert len(result.step_times_s) == 3
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert frozen and trained
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, before[n]), f"frozen {n} changed"
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if "lora_B" in n)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if "head" in n and p.requires_grad)


def test_none_freezes_everything_and_full_trains_everything(cfg_factory):
    cfg = cfg_factory("model=tiny-bert")
    base, task, _ = build(cfg, n_train=32)
    assert param_counts(get_method("none").apply(base, cfg.method, task))["trainable"] == 0
    full = get_method("full").apply(base, cfg.method, task)
    counts = param_counts(full)
    assert counts["trainable"] == counts["total"] > 0


def test_unknown_method_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        get_method("nope")
    assert info.value.field == "method.name"
    for name in METHODS:
        assert name in str(info.value)
