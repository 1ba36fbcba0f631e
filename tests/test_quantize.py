"""model.quantize: the frozen base in 4-bit (NF4, FP4) or 8-bit (LLM.int8) through bitsandbytes, so
QLoRA is LoRA (or any method that leaves the base frozen) on a quantized base. Bad values are refused
before any weights load; the quantized weights stay frozen while LoRA trains; the record says how the
base was stored; the estimator's weights term is the hand count and the measured one."""

from __future__ import annotations

import math

import pytest
import torch

from bench.errors import ConfigError
from conftest import build, make_cfg, tiered

pytest.importorskip("bitsandbytes", reason="model.quantize needs bitsandbytes (a dependency of peft-bench)")

# tiny-llama: hidden 32, 4 heads of 8, 2 key/value heads (k, v: 16 outputs), intermediate 64, 2 layers.
# Its quantized linears, per layer (weights): q 32x32, k 16x32, v 16x32, o 32x32, gate/up 64x32, down 32x64.
TINY_LLAMA_LINEARS = [1024, 512, 512, 1024, 2048, 2048, 2048] * 2


def nf4_bytes(n: int, double: bool = False) -> int:
    """One 4-bit layer of n weights, by hand: half a byte a weight; per 64 weights one fp32 absmax
    (double quantization: one byte, + per 256 blocks one fp32, + a 256-value fp32 code and an fp32
    offset); the 16-value fp32 code."""
    blocks = math.ceil(n / 64)
    if double:
        return n // 2 + blocks + 4 * math.ceil(blocks / 256) + 4 * 256 + 4 + 4 * 16
    return n // 2 + 4 * blocks + 4 * 16


# --- refused before any weights load -------------------------------------------------------------

@pytest.mark.parametrize("override, field", [
    ("model.quantize=nf8", "model.quantize"),
    ("model.quantize=4", "model.quantize"),
    ("model.double_quant=yes", "model.double_quant"),
    ("model.double_quant=true", "model.double_quant"),  # without a 4-bit format
])
def test_bad_values_are_refused_by_the_plain_checks(override: str, field: str):
    from bench.config import checks

    cfg = make_cfg(["model=tiny-llama", override])
    with pytest.raises(ConfigError) as err:
        checks.check(cfg)
    assert err.value.field == field
    if field == "model.quantize":
        assert "nf4, fp4, int8" in str(err.value)


def test_without_bitsandbytes_the_run_is_refused_naming_the_package(monkeypatch):
    import importlib.util

    from bench.config import checks

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        checks.check(make_cfg(["model=tiny-llama", "model.quantize=nf4"]))
    assert err.value.field == "model.quantize" and "pip install" in str(err.value) and "bitsandbytes" in str(err.value)


@pytest.mark.parametrize("method", tiered(["full", "last_layers"], keep=["full"]))
def test_a_method_that_trains_the_quantized_weights_is_refused_before_load(method: str, monkeypatch):
    from bench.config.plan import validate
    from bench.models import sources

    monkeypatch.setattr(sources, "load_model", lambda *a, **k: pytest.fail("weights loaded before the refusal"))
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(["model=tiny-llama", "model.quantize=nf4", f"method={method}"]))
    assert err.value.field == "model.quantize"
    assert f"method {method}" in str(err.value) and "frozen" in str(err.value)


@pytest.mark.parametrize("method", tiered(["lora", "layernorm", "prompt_tuning", "ia3", "adapter", "none"], keep=["lora", "layernorm"]))
def test_methods_that_leave_the_quantized_weights_frozen_pass(method: str):
    from bench.config.plan import validate

    validate(make_cfg(["model=tiny-llama", "model.quantize=nf4", f"method={method}"]))


def test_selective_passes_on_norms_and_is_refused_on_linear_layers():
    from bench.config.plan import validate

    validate(make_cfg(["model=tiny-llama", "model.quantize=nf4", "method=selective", "method.include=[norm]"]))
    with pytest.raises(ConfigError, match="method selective: it trains 2 weights"):
        validate(make_cfg(["model=tiny-llama", "model.quantize=nf4", "method=selective", "method.include=[q_proj]"]))


def test_unquantized_runs_keep_their_identity():
    """The knobs are added at defaults that reproduce earlier runs: earlier records' hashes still match."""
    from omegaconf import OmegaConf

    from bench.records.store import config_digest, config_hash

    cfg = make_cfg(["model=tiny-llama"])
    earlier = OmegaConf.to_container(cfg, resolve=True)
    del earlier["model"]["quantize"], earlier["model"]["double_quant"]
    assert config_hash(cfg) == config_digest(earlier)
    assert config_hash(make_cfg(["model=tiny-llama", "model.quantize=nf4"])) != config_hash(cfg)


# --- the estimator's weights term -----------------------------------------------------------------

@pytest.mark.parametrize("double", [False, True])
def test_estimator_weights_term_for_a_4bit_tiny_model_is_the_hand_count(double: bool):
    from bench.measure.estimate import weights_bytes
    from bench.models import sources

    def meta(*overrides: str):
        cfg = make_cfg(["model=tiny-llama", *overrides])
        return list({id(p): p for p in sources.meta_model(cfg.model, "classifier").parameters()}.values())

    full = weights_bytes(meta())
    quantized = weights_bytes(meta("model.quantize=nf4", f"model.double_quant={str(double).lower()}"))
    # the 14 linears leave fp32 (4 bytes a weight) for 4 bits and their constants; embeddings, norms and the head stay fp32
    assert quantized == full - 4 * sum(TINY_LLAMA_LINEARS) + sum(nf4_bytes(n, double) for n in TINY_LLAMA_LINEARS)


@pytest.fixture(scope="module")
def tokenizer():
    from bench.models import sources

    return sources.load_tokenizer(make_cfg(["model=tiny-llama"]).model)


@pytest.mark.parametrize("quantize, double", tiered([("nf4", False), ("nf4", True), ("int8", False)], keep=[("nf4", True)]))
def test_loaded_quantized_weights_hold_what_the_estimator_predicts(quantize: str, double: bool, tokenizer):
    """The measured weights (the quantized tensors and their constants, read off the loaded model)
    equal the estimator's term, the parameter count is the unquantized one, and the record's model
    section says how the base is stored."""
    from bench.measure import figures
    from bench.measure.estimate import weights_bytes
    from bench.models import sources
    from bench.run.pipeline import model_section

    cfg = make_cfg(["model=tiny-llama", f"model.quantize={quantize}", f"model.double_quant={str(double).lower()}"])
    model = sources.load_model(cfg.model, "classifier", 2, tokenizer)
    plain = sources.load_model(make_cfg(["model=tiny-llama"]).model, "classifier", 2, tokenizer)
    section = model_section(cfg, model)
    assert section["quantize"] == section["weights_dtype"] == quantize and section["double_quant"] is double
    assert section["quantized_layers"] == len(TINY_LLAMA_LINEARS) and section["quantized_params"] == sum(TINY_LLAMA_LINEARS)
    quantized = sources.quantized_weights(model)
    assert len(quantized) == len(TINY_LLAMA_LINEARS)
    assert figures.param_counts(model)["total"] == figures.param_counts(plain)["total"]
    measured = figures.breakdown(model, None, 0)["weights_bytes"]
    params = list({id(p): p for p in model.parameters()}.values())
    assert measured == weights_bytes(params)
    if quantize == "nf4":
        fp32 = figures.breakdown(plain, None, 0)["weights_bytes"]
        assert measured == fp32 - 4 * sum(TINY_LLAMA_LINEARS) + sum(nf4_bytes(n, double) for n in TINY_LLAMA_LINEARS)


# --- training on a quantized base -----------------------------------------------------------------

def test_nf4_lora_on_tiny_llama_trains_adapters_and_leaves_the_4bit_weights_unchanged():
    from bench.methods import get_method

    cfg = make_cfg(["model=tiny-llama", "model.quantize=nf4", "method=lora", "method.r=4"])
    base, task, _ = build(cfg)
    model = get_method("lora").apply(base, cfg.method, task)
    frozen = {n: (p.data.clone(), p.quant_state.absmax.clone()) for n, p in model.named_parameters() if type(p).__name__ == "Params4bit"}
    assert frozen and not any(p.requires_grad for n, p in model.named_parameters() if n in frozen)
    assert any(type(m).__module__ == "peft.tuners.lora.bnb" for m in model.modules())  # peft's bitsandbytes LoRA layers
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = task.collate(task.train[:8])
    losses = []
    model.train()
    for _ in range(3):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    params = dict(model.named_parameters())
    assert any(not torch.equal(params[n], before) for n, before in lora_b.items())  # LoRA moved
    for name, (data, absmax) in frozen.items():  # the 4-bit weights and their scales did not
        assert torch.equal(params[name].data, data) and torch.equal(params[name].quant_state.absmax, absmax)


def test_lora_on_nf4_computes_what_lora_on_the_dequantized_weights_computes():
    """bitsandbytes' 4-bit layers with peft's 4-bit LoRA give the loss and the adapters' gradients
    that plain float layers holding the dequantized weights give: QLoRA differs from LoRA only by
    the base's rounding (in eval mode: the classifier's dropout draws differ between two models)."""
    import copy

    import bitsandbytes as bnb

    from bench.methods import get_method

    cfg = make_cfg(["model=tiny-llama", "model.quantize=nf4", "method=lora", "method.r=4", "method.dropout=0.0"])
    base, task, _ = build(cfg, n_train=8)
    plain = copy.deepcopy(base)
    for name, module in list(plain.named_modules()):
        if isinstance(module, bnb.nn.Linear4bit):
            linear = torch.nn.Linear(module.in_features, module.out_features, bias=False)
            linear.weight = torch.nn.Parameter(bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state), requires_grad=False)
            parent, _, leaf = name.rpartition(".")
            setattr(plain.get_submodule(parent), leaf, linear)
    del plain.is_loaded_in_4bit
    qlora, lora = (get_method("lora").apply(m, cfg.method, task) for m in (base, plain))
    trained, mirror = dict(qlora.named_parameters()), dict(lora.named_parameters())
    with torch.no_grad():
        for name, p in trained.items():
            if p.requires_grad:
                mirror[name].copy_(torch.randn_like(p) * 0.1)
                p.copy_(mirror[name])
    batch = task.collate(task.train[:8])
    losses = []
    for model in (qlora, lora):
        model.eval()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for name, p in trained.items():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, mirror[name].grad, rtol=1e-4, atol=1e-6)


@pytest.mark.system
def test_the_record_says_the_base_was_nf4(cfg_factory):
    from bench.run.pipeline import run

    cfg = cfg_factory("model=tiny-llama", "model.quantize=nf4", "method=lora", "method.r=4", "train.max_steps=2",
                      "inference.enabled=false", "forgetting.enabled=false")
    record = run(cfg)
    assert record["run"]["status"] == "success", record["run"]["error"]
    base = record["model"]
    assert base["quantize"] == "nf4" and base["weights_dtype"] == "nf4" and base["dtype"] == "float32"
    assert base["quantized_layers"] == 14 and base["quantized_params"] == sum(TINY_LLAMA_LINEARS)
    assert base["quantized_bytes"] == sum(TINY_LLAMA_LINEARS) // 2
    memory = record["memory"]
    assert memory["breakdown"]["weights_bytes"] == memory["estimate"]["weights_bytes"]


@pytest.mark.system
def test_the_qlora_preset_states_its_command_and_expands_to_lora_on_both_bases():
    """conf/experiment/qlora_smollm2.yaml: 2 bases x 3 seeds, each point validates (where SST-2 and the SmolLM2 asset are here)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bench.config.plan import validate
    from bench.models import assets
    from conftest import CONF, SHARED_DATA
    from hydra_plugins.peft_bench_sweeper import PointsSweeper

    assert "python -m bench -m experiment=qlora_smollm2" in (CONF / "experiment" / "qlora_smollm2.yaml").read_text()
    sweeper_cfg = make_cfg(["experiment=qlora_smollm2"], return_hydra_config=True).hydra.sweeper
    jobs = PointsSweeper(points=list(sweeper_cfg.get("points") or []), params=dict(sweeper_cfg.params)).jobs([], OverridesParser.create())
    points = [make_cfg(["experiment=qlora_smollm2", f"data_root={SHARED_DATA}", *job]) for job in jobs]
    assert sorted((p.model.quantize, p.seed) for p in points if p.model.quantize) == [("nf4", s) for s in range(3)]
    assert sum(p.model.quantize is None for p in points) == 3 and {p.method.name for p in points} == {"lora"}
    if not (SHARED_DATA / "glue" / "SST-2").is_dir() or not assets.is_ready("smollm2-135m"):
        pytest.skip("SST-2 (../shared/datasets) or the SmolLM2 asset is not here")
    for point in points[:2]:
        validate(point)
