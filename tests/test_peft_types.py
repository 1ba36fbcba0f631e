"""The one-YAML method family (bench/methods/peft_types.py): its formula language, its checks
before any model loads, and the loop's optimizer hook (LoRA+, LoRA-FA). What every method passes
(count = formula = hand count, frozen stay, save/load, merge, goldens) is tests/test_all_methods.py's."""

from __future__ import annotations

import pytest
import torch

from bench.errors import ConfigError
from bench.methods import METHODS, get_method
from bench.methods.peft_types import evaluate, parse_expression
from bench.run.train import train
from conftest import build


def test_the_formula_language_is_arithmetic_over_names():
    assert evaluate("r * (fan_in + fan_out) + ceil(7 / 2)", {"r": 2, "fan_in": 3, "fan_out": 4}, "f") == 18
    for bad in ("__import__('os')", "r.real", "[x for x in r]", "lambda: 1", "r["):
        with pytest.raises(ConfigError) as info:
            parse_expression(bad, "method.trainable.per_target")
        assert info.value.field == "method.trainable.per_target"
    with pytest.raises(ConfigError, match="unknown: rank"):
        evaluate("rank * 2", {"r": 2}, "method.trainable.per_target")


@pytest.mark.parametrize("overrides,field", [
    (["method=oft", "method.peft_type=NOPE"], "method.peft_type"),
    (["method=oft", "+method.config.not_a_field=1"], "method.config.not_a_field"),
    (["method=oft", "method.config.oft_block_size=five"], "method.config.oft_block_size"),
    (["method=oft", "method.config.oft_block_size=5"], "method.config"),  # 5 does not divide tiny-bert's 32: peft's own check, on the meta model
    (["method=vera", "method.trainable.per_target=r.real"], "method.trainable.per_target"),
    (["method=loraplus", "method.optimizer.kind=sgd"], "method.optimizer.kind"),
])
def test_bad_yaml_settings_fail_before_any_model_loads(cfg_factory, monkeypatch, overrides, field):
    from bench.config.plan import validate
    from bench.models import sources

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(sources, "load_model", no_load)
    with pytest.raises(ConfigError) as info:
        validate(cfg_factory("model=tiny-bert", *overrides))
    assert info.value.field == field and info.value.valid


def test_loraplus_trains_b_at_ratio_times_the_lr(cfg_factory):
    cfg = cfg_factory("model=tiny-llama", "method=loraplus", "method.config.r=4", "train.lr=1e-3", "train.max_steps=1")
    base, task, _ = build(cfg)
    model = get_method("loraplus").apply(base, cfg.method, task)
    optimizer = get_method("loraplus").optimizer(model, cfg.method, 1e-3, 0.0, (0.9, 0.999))
    by_param = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert sorted({by_param[id(p)] for n, p in names.items() if "lora_B" in n}) == pytest.approx([1e-3 * 16])
    assert sorted({by_param[id(p)] for n, p in names.items() if "lora_A" in n}) == pytest.approx([1e-3])


def test_lorafa_moves_b_only(cfg_factory):
    cfg = cfg_factory("model=tiny-bert", "method=lorafa", *METHODS["lorafa"].examples[0], "train.lr=1e-2", "train.max_steps=2",
                      "train.warmup_ratio=0")
    base, task, _ = build(cfg)
    model = get_method("lorafa").apply(base, cfg.method, task)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n}
    train(model, task, cfg, torch.device("cpu"))
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], t) for n, t in before.items() if "lora_A" in n)
    assert all(not torch.equal(after[n], t) for n, t in before.items() if "lora_B" in n)
