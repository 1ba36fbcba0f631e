"""The speed switches: each is validated before a model loads, recorded with the run, and changes
how fast a run goes without changing what it trains (checkpointing: the same losses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.run.pipeline import run
from conftest import tiered
from test_end_to_end import _check as _ok  # success, and the record on disk matches the schema


@pytest.mark.parametrize("override,field", [("speed.precision=fp8", "speed.precision"), ("speed.attention=flash", "speed.attention"),
                                            ("speed.compile=maybe", "speed.compile"), ("speed.fused_adamw=yes", "speed.fused_adamw")])
def test_bad_switch_names_its_field_before_a_model_loads(cfg_factory, override: str, field: str):
    with pytest.raises(ConfigError) as info:
        run(cfg_factory("model=tiny-bert", override))
    assert info.value.field == field


@pytest.mark.parametrize("model,method", tiered([("tiny-bert", "full"), ("tiny-llama", "lora"), ("tiny-bert", "prompt_tuning")], keep=[("tiny-llama", "lora")]))
def test_gradient_checkpointing_gives_the_same_losses(cfg_factory, model: str, method: str):
    plain = _ok(run(cfg_factory(f"model={model}", f"method={method}")))
    checkpointed = _ok(run(cfg_factory(f"model={model}", f"method={method}", "speed.gradient_checkpointing=true")))
    assert checkpointed["speed"]["switches"]["gradient_checkpointing"] is True
    assert [p["loss"] for p in checkpointed["curve"]] == pytest.approx([p["loss"] for p in plain["curve"]], rel=1e-4)


@pytest.mark.system
def test_bf16_autocast_and_attention_kernel_are_recorded(cfg_factory):
    fp32 = _ok(run(cfg_factory("model=tiny-llama", "method=lora", "speed.attention=eager")))
    bf16 = _ok(run(cfg_factory("model=tiny-llama", "method=lora", "speed.precision=bf16", "speed.attention=sdpa")))
    assert fp32["speed"]["switches"]["attention_used"] == "eager" and bf16["speed"]["switches"]["attention_used"] == "sdpa"
    assert bf16["speed"]["switches"]["precision"] == "bf16" and not bf16["speed"]["switches"]["fused_adamw_used"]  # auto: CUDA only
    fp32_losses, bf16_losses = [p["loss"] for p in fp32["curve"]], [p["loss"] for p in bf16["curve"]]
    assert bf16_losses != fp32_losses and bf16_losses == pytest.approx(fp32_losses, rel=0.05)  # bf16 matmuls: close, not equal


@pytest.mark.slow
def test_torch_compile_trains_the_same_model(cfg_factory, tmp_path: Path):
    from conftest import write_dialogsum_like

    # a causal LM with LoRA dropout off has no dropout at all (compiled kernels draw other random masks)
    same = ("model=tiny-llama", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}", "method=lora", "method.dropout=0.0")
    plain = _ok(run(cfg_factory(*same)))
    compiled = _ok(run(cfg_factory(*same, "speed.compile=true")))
    assert compiled["speed"]["switches"]["compile"] is True
    assert [p["loss"] for p in compiled["curve"]] == pytest.approx([p["loss"] for p in plain["curve"]], rel=1e-3)
