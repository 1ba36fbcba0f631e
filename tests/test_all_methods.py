"""Every method proves what it trains, on at least two model families:
- the trainable-parameter count equals the formula written next to the method;
- frozen parameters are bit-identical after several optimizer steps, and every trained tensor moves;
- save -> load onto a fresh base reproduces the outputs, and two tasks swap on one loaded base;
- a family a method cannot support fails before loading, with the reason.

Tiny models (hidden 32, 2 blocks; conf/model/tiny-*.yaml; tiny-mpnet and tiny-gemma3 in the system tier).
The shapes of tiny-bert and tiny-llama, used in the hand formulas:
tiny-bert per block: q, k, v, attn-out 32->32 (+bias), FFN 32->64->32 (+bias), 2 LayerNorms (w+b);
  embeddings LayerNorm (w+b). tiny-llama per block: q 32->32, k 32->16, v 32->16 (2 KV heads of 8),
  o 32->32, gate/up 32->64, down 64->32 (no biases), 2 RMSNorms (w); a final RMSNorm.
A classification head is hidden x 2 labels + 2 = 66 parameters and trains with every method.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.measure.figures import param_counts
from bench.methods import METHODS, get_method
from bench.run.train import train
from conftest import build, tiered, write_dialogsum_like

HEAD = 32 * 2 + 2
BERT_BLOCK = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 64
LLAMA_BLOCK = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64 + 2 * 32
NAMES = sorted(METHODS)  # every registered method, none left out by hand
TRAINING = [n for n in NAMES if METHODS[n].trains]
# The methods declared by a YAML (bench/methods/peft_types.py) share one code path: two of them run
# in the default tier, the rest in the system tier (CI runs both), so the default run stays near two minutes.
YAML = [n for n in NAMES if METHODS[n].source.endswith(".yaml")]
DEFAULT_TIER = [n for n in NAMES if n not in YAML] + ["oft", "vera"]


def pairs(names: list[str]) -> list:
    """(method, model) for the training tests: every family for the hand-written methods and the two
    YAML ones of the default tier; tiny-bert and tiny-llama for the other YAML methods (their code
    path is the two's: the other families would add CI minutes, not coverage). `name+i` is example i."""
    out = []
    for name in names:
        method = name.partition("+")[0]
        for model in [*MODELS, "tiny-mpnet", "tiny-gemma3"] if method in DEFAULT_TIER else MODELS:
            default = method in DEFAULT_TIER and model in MODELS
            out.append((name, model) if default else pytest.param(name, model, marks=pytest.mark.system))
    return out
MODELS = ("tiny-bert", "tiny-llama")  # an encoder and a decoder, classifying (2 labels)
# + the families of the other offline models (mpnet-base, gemma3-270m), in the system tier
ALL_MODELS = tiered([*MODELS, "tiny-mpnet", "tiny-gemma3"], keep=MODELS)


def _cfg(cfg_factory, model: str, method: str, example: int = 0, *more: str):
    return cfg_factory(f"model={model}", f"method={method}", *METHODS[method].examples[example], *more)


def _refused(cfg) -> str | None:
    """The config check's reason when the method declares it may refuse this pair; any other
    ConfigError is a failure."""
    from bench.config.plan import validate

    try:
        validate(cfg)
    except ConfigError as exc:
        refuses = METHODS[cfg.method.name].refuses
        assert any(reason in str(exc) for reason in refuses), f"{cfg.method.name} refused {cfg.model.name} with an undeclared reason: {exc}"
        return str(exc)
    return None


def _applied_count(cfg) -> tuple[int, int]:
    """(trainable after apply, what the method's formula says), on the same base."""
    base, task, _ = build(cfg)
    method = get_method(cfg.method.name)
    expected = method.formula(base, cfg.method, task)
    return param_counts(method.apply(base, cfg.method, task))["trainable"], expected


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("method", tiered(NAMES, keep=DEFAULT_TIER))
def test_trainable_params_equal_the_formula(cfg_factory, method, model):
    ran = 0
    for i in range(len(METHODS[method].examples)):
        cfg = _cfg(cfg_factory, model, method, i)
        if _refused(cfg):
            continue
        trainable, expected = _applied_count(cfg)
        assert trainable == expected, METHODS[method].examples[i]
        ran += 1
    if not ran:
        pytest.skip(f"{method} refuses {model} in every example (declared)")


@pytest.mark.parametrize("method", tiered(NAMES, keep=DEFAULT_TIER))
def test_formula_on_encoder_decoder_generation(cfg_factory, tmp_path, method):
    """A third family: tiny-t5 (d_model 32, 2 + 2 blocks, 4 heads of 8) on summarization (no head)."""
    cfg = _cfg(cfg_factory, "tiny-t5", method, 0, "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}")
    if _refused(cfg):
        pytest.skip(f"{method} refuses tiny-t5 (declared)")
    trainable, expected = _applied_count(cfg)
    assert trainable == expected


@pytest.mark.system
def test_every_training_method_runs_on_two_families(cfg_factory, tmp_path):
    """A declared refusal may skip a family, never all but one: each method is checked on two."""
    t5 = ("task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}")
    for method in TRAINING:
        families = {m for m in MODELS for i in range(len(METHODS[method].examples)) if not _refused(_cfg(cfg_factory, m, method, i))}
        families |= set() if _refused(_cfg(cfg_factory, "tiny-t5", method, 0, *t5)) else {"tiny-t5"}
        assert len(families) >= 2, method


# The formulas against hand arithmetic on the tiny configs: (method, overrides, tiny-bert, tiny-llama)
HAND = [
    # bitfit: every bias. bert: embeddings LN 32 + per block (4*32 + 64 + 32 + 2*32); llama
    # (attention_bias=true, Qwen2-style): per block q 32 + k 16 + v 16 + o 32
    ("bitfit", ["+model.size.attention_bias=true"], 32 + 2 * (4 * 32 + 64 + 32 + 2 * 32) + HEAD, 2 * (32 + 16 + 16 + 32) + HEAD),
    # last_layers: num_layers x one block
    ("last_layers", ["method.num_layers=1"], BERT_BLOCK + HEAD, LLAMA_BLOCK + HEAD),
    ("last_layers", ["method.num_layers=2"], 2 * BERT_BLOCK + HEAD, 2 * LLAMA_BLOCK + HEAD),
    # layernorm: bert LN w+b (embeddings + 2 per block); llama RMSNorm w (2 per block + final)
    ("layernorm", [], 2 * 32 + 2 * 2 * 2 * 32 + HEAD, 2 * 2 * 32 + 32 + HEAD),
    # selective on (?i)attn|attention: bert q,k,v,o + attn LN; llama q,k,v,o + post_attention_layernorm
    ("selective", [], 2 * (4 * (32 * 32 + 32) + 64) + HEAD, 2 * (32 * 32 + 2 * 32 * 16 + 32 * 32 + 32) + HEAD),
    ("selective", ["method.include=[query,q_proj]", "method.exclude=[bias]"], 2 * 32 * 32 + HEAD, 2 * 32 * 32 + HEAD),
    # lora r=4 on peft's defaults (bert: query, value; llama: q_proj, v_proj): r * (in + out) each
    ("lora", ["method.r=4"], 2 * 4 * (64 + 64) + HEAD, 2 * 4 * ((32 + 32) + (32 + 16)) + HEAD),
    # DoRA adds a magnitude per output feature of each targeted linear; rsLoRA changes only the scale
    ("lora", ["method.r=4", "method.use_dora=true", "method.use_rslora=true"],
     2 * (4 * (64 + 64) + 32 + 32) + HEAD, 2 * (4 * ((32 + 32) + (32 + 16)) + 32 + 16) + HEAD),
    # bias=lora_only: + the targeted linears' biases (bert: query 32 + value 32 per block; llama has none);
    # bias=all: + every bias of the model (bitfit's count)
    ("lora", ["method.r=4", "method.bias=lora_only"], 2 * (4 * (64 + 64) + 64) + HEAD, None),
    ("lora", ["method.r=4", "method.bias=all"], 2 * 4 * (64 + 64) + 32 + 2 * (4 * 32 + 64 + 32 + 2 * 32) + HEAD, None),
    # ia3: out features of attention targets, in features of feed-forward targets.
    # bert: key 32, value 32, attention.output.dense (in 32) and output.dense (in 64), both feed-forward
    # by suffix in peft's default; llama: k_proj 16, v_proj 16, down_proj (in 64)
    ("ia3", [], 2 * (32 + 32 + 32 + 64) + HEAD, 2 * (16 + 16 + 64) + HEAD),
    # adapter: (number of adapters) x (2 d m + m + d), d = 32
    ("adapter", ["method.bottleneck_size=8"], 4 * (2 * 32 * 8 + 8 + 32) + HEAD, 4 * (2 * 32 * 8 + 8 + 32) + HEAD),
    ("adapter", ["method.bottleneck_size=8", "method.placement=pfeiffer"], 2 * (2 * 32 * 8 + 8 + 32) + HEAD, 2 * (2 * 32 * 8 + 8 + 32) + HEAD),
    # prompt tuning: P x hidden
    ("prompt_tuning", ["method.num_virtual_tokens=7"], 7 * 32 + HEAD, 7 * 32 + HEAD),
    # prefix tuning (decoders only): P x layers x 2 x kv_dim, kv_dim = 2 heads x 8 = 16
    ("prefix_tuning", ["method.num_virtual_tokens=7"], None, 7 * 2 * 2 * 16 + HEAD),
    # with the MLP (width 8): P x kv_dim embeddings + kv_dim -> 8 -> layers x 2 x kv_dim
    ("prefix_tuning", ["method.num_virtual_tokens=7", "method.projection=true", "method.projection_size=8"],
     None, 7 * 16 + (16 * 8 + 8) + (8 * 2 * 2 * 16 + 2 * 2 * 16) + HEAD),
]


@pytest.mark.parametrize("method,overrides,bert,llama", HAND)
def test_formulas_agree_with_hand_arithmetic(cfg_factory, method, overrides, bert, llama):
    for model, expected in (("tiny-bert", bert), ("tiny-llama", llama)):
        if expected is not None:
            cfg = cfg_factory(f"model={model}", f"method={method}", *overrides)
            base, task, _ = build(cfg)
            assert get_method(method).formula(base, cfg.method, task) == expected, model


@pytest.mark.parametrize("method", tiered(YAML, keep=DEFAULT_TIER))
def test_yaml_formulas_agree_with_their_hand_arithmetic(cfg_factory, method):
    """A YAML method states its count on tiny-bert and tiny-llama by hand (about.check, arithmetic
    on the shapes in this module's docstring, with its first example): the formula must give it,
    and a model it does not refuse must have one."""
    from bench.methods.peft_types import evaluate

    checks = dict(OmegaConf.load(METHODS[method].source).get("about", {}).get("check") or {})
    for model in MODELS:
        cfg = _cfg(cfg_factory, model, method)
        if _refused(cfg):
            assert model not in checks, f"{method} refuses {model} but states a count for it"
            continue
        assert model in checks, f"{METHODS[method].source}: about.check has no hand count for {model}"
        base, task, _ = build(cfg)
        assert get_method(method).formula(base, cfg.method, task) == evaluate(checks[model], {}, "about.check"), model


def test_formulas_on_encoder_decoder_by_hand(cfg_factory, tmp_path):
    """tiny-t5 (d_model 32, 2 + 2 blocks, 4 heads of 8) on summarization (no head)."""
    data = f"data_root={write_dialogsum_like(tmp_path)}"
    cases = {  # prefix: P x layers x 2 x d_model, shared by the decoder's self- and cross-attention
        "prefix_tuning": (["method.num_virtual_tokens=5"], 5 * 2 * 2 * 32),
        "prompt_tuning": (["method.num_virtual_tokens=5"], 5 * 32),  # the encoder's input only
        # pfeiffer: one adapter per block after the FFN, encoder and decoder: 4 x (2 d m + m + d)
        "adapter": (["method.bottleneck_size=8", "method.placement=pfeiffer"], 4 * (2 * 32 * 8 + 8 + 32)),
    }
    for method, (overrides, expected) in cases.items():
        cfg = cfg_factory("model=tiny-t5", "task=dialogsum", data, f"method={method}", *overrides)
        base, task, _ = build(cfg)
        assert get_method(method).formula(base, cfg.method, task) == expected, method


@pytest.mark.parametrize("method,model", pairs(TRAINING))
def test_frozen_stay_bit_identical_and_trained_move(cfg_factory, model, method):
    cfg = _cfg(cfg_factory, model, method, 0, "train.lr=1e-2", "train.warmup_ratio=0")
    if _refused(cfg):
        pytest.skip(f"{method} refuses {model} (declared)")
    base, task, _ = build(cfg)
    prepared = get_method(method).apply(base, cfg.method, task)
    before = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    train(prepared, task, cfg, torch.device("cpu"))
    trained = {n for n, p in prepared.named_parameters() if p.requires_grad}
    assert trained  # how many train is the formula's check; here: exactly those move
    assert len(trained) < len(before) or method == "full", "a parameter-efficient method trains every parameter"
    for name, p in prepared.named_parameters():
        if name in trained:
            assert not torch.equal(p, before[name]), f"trained {name} did not move"
        else:
            assert torch.equal(p, before[name]), f"frozen {name} changed"


def _outputs(model: torch.nn.Module, task) -> torch.Tensor:
    model.eval()
    batch = {k: v for k, v in task.collate(task.eval[:4]).items() if k not in ("labels", "label")}
    with torch.no_grad():
        return model(**batch).logits


def _trained_copy(cfg, seed: int):
    """A prepared model whose trainable tensors are moved (a stand-in for training), and its task."""
    base, task, _ = build(cfg)
    torch.manual_seed(seed)
    prepared = get_method(cfg.method.name).apply(base, cfg.method, task)
    with torch.no_grad():
        for p in prepared.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return prepared, task


@pytest.mark.parametrize("method,model", pairs([n for n in NAMES if n != "none"] + ["prefix_tuning+1"]))  # +i: example i
def test_save_load_reproduces_and_tasks_swap_on_one_base(cfg_factory, tmp_path, model, method):
    name, _, example = method.partition("+")
    cfg = _cfg(cfg_factory, model, name, int(example or 0))
    if _refused(cfg):
        pytest.skip(f"{name} refuses {model} (declared)")
    m = get_method(cfg.method.name)
    task_a, task_b = _trained_copy(cfg, seed=1), _trained_copy(cfg, seed=2)
    out_a, out_b = _outputs(*task_a), _outputs(*task_b)
    assert not torch.allclose(out_a, out_b)
    m.save(task_a[0], tmp_path / "a")
    m.save(task_b[0], tmp_path / "b")

    fresh, task, _ = build(cfg)
    assert not torch.allclose(_outputs(fresh, task), out_a)
    served = m.load(fresh, tmp_path / "a", cfg.method, task)
    torch.testing.assert_close(_outputs(served, task), out_a, rtol=0, atol=1e-6)
    served = m.load(served, tmp_path / "b", cfg.method, task)  # swap to task b on the same base
    torch.testing.assert_close(_outputs(served, task), out_b, rtol=0, atol=1e-6)
    served = m.load(served, tmp_path / "a", cfg.method, task)  # and back
    torch.testing.assert_close(_outputs(served, task), out_a, rtol=0, atol=1e-6)


def test_saved_files_hold_only_what_the_task_needs(cfg_factory, tmp_path):
    from safetensors.torch import load_file

    cfg = _cfg(cfg_factory, "tiny-bert", "bitfit")
    prepared, _ = _trained_copy(cfg, seed=1)
    get_method("bitfit").save(prepared, tmp_path)
    saved = load_file(str(tmp_path / "trained.safetensors"))
    assert set(saved) == {n for n, p in prepared.named_parameters() if p.requires_grad}
    assert sum(t.numel() for t in saved.values()) == param_counts(prepared)["trainable"]


def test_lora_merged_equals_unmerged(cfg_factory):
    for model in ("tiny-bert", "tiny-llama"):
        cfg = cfg_factory(f"model={model}", "method=lora", "method.r=4", "method.target_modules=all-linear")
        prepared, task = _trained_copy(cfg, seed=3)
        unmerged = _outputs(prepared, task)
        merged = prepared.merge_and_unload()
        assert not any("lora" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(_outputs(merged, task), unmerged, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", tiered([n for n in NAMES if METHODS[n].can_merge], keep=["lora", "oft"]))
def test_merged_equals_unmerged_for_every_method_that_merges(cfg_factory, model, method):
    """A method that declares can_merge: folding its trained tensors into W changes no output."""
    cfg = _cfg(cfg_factory, model, method)
    if _refused(cfg):
        pytest.skip(f"{method} refuses {model} (declared)")
    prepared, task = _trained_copy(cfg, seed=3)
    unmerged, before = _outputs(prepared, task), sum(p.numel() for p in prepared.parameters())
    merged = prepared.merge_and_unload()
    assert sum(p.numel() for p in merged.parameters()) < before  # the adapters are gone
    torch.testing.assert_close(_outputs(merged, task), unmerged, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("overrides,field", [
    (["method=lora", "method.r=0"], "method.r"),
    (["method=prompt_tuning", "method.num_virtual_tokens=0"], "method.num_virtual_tokens"),
    (["method=prompt_tuning", "method.num_virtual_tokens=500", "task.max_length=64"], "method.num_virtual_tokens"),
    (["method=selective", "method.include=[nothing_is_called_this]"], "method.include"),
    (["method=bitfit", "model=tiny-llama"], "method"),  # Llama has no bias terms
    (["method=lora", "method.target_modules=[q_proj]"], "method.target_modules"),
    (["method=prefix_tuning", "model=tiny-bert"], "method"),
    (["method=prefix_tuning", "model=tiny-t5"], "method"),  # classification uses T5's encoder alone
    (["method=last_layers", "method.num_layers=3"], "method.num_layers"),
    (["method=adapter", "method.placement=middle"], "method.placement"),
    (["method=prompt_tuning", "method.init=labels", "model=tiny-llama", "task=dialogsum"], "method.init"),
])
def test_unsupported_pairs_fail_before_loading(cfg_factory, tmp_path, monkeypatch, overrides, field):
    from bench.models import sources as models
    from bench.config.plan import validate

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(models, "load_model", no_load)
    more = [f"data_root={write_dialogsum_like(tmp_path)}"] if "task=dialogsum" in overrides else []
    with pytest.raises(ConfigError) as info:
        validate(cfg_factory("model=tiny-bert", *overrides, *more))
    assert info.value.field == field
    assert info.value.valid


def test_target_module_error_lists_what_the_model_has(cfg_factory):
    from bench.config.plan import validate

    with pytest.raises(ConfigError) as info:
        validate(cfg_factory("model=tiny-bert", "method=lora", "method.target_modules=[q_proj]"))
    assert "query" in info.value.valid and "value" in info.value.valid


def test_every_registered_method_has_a_config_and_a_summary():
    configs = {p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "method").glob("*.yaml")}
    assert set(METHODS) == configs
    assert all(m.summary and m.formula and m.examples for m in METHODS.values())


def test_the_generated_methods_table_lists_every_method_with_its_summary():
    """docs/methods.md's table is rendered from the registry (bench/report/docs.py): every
    registered method gets its row, with its summary exactly as `register(...)` declares it, so a
    new method needs no hand edit of the page."""
    from bench.report import docs

    table = docs.render_table()
    assert table.startswith("| `method=` | what it trains |")
    missing = [name for name, m in METHODS.items() if f"| `{name}` | {docs.cell(m.summary)} |" not in table]
    assert not missing, f"the generated methods table lacks a row `| `name` | summary |` for: {missing}"
    assert sorted(docs.row_names(table)) == sorted(METHODS)  # one row each


def test_the_committed_methods_page_holds_the_generated_table():
    """The table between the markers of docs/methods.md is the generator's, for the methods it
    lists: no row edited by hand, none for a method that is gone. A registered method it does not
    list yet (a new one: one .py plus one YAML is the whole change) is a warning, not a failure:
    `peft-bench docs` adds its row."""
    import warnings

    from bench.report import docs

    page = (Path(__file__).resolve().parent.parent / "docs" / "methods.md").read_text()
    committed = docs.generated_part(page)
    listed = docs.row_names(committed)
    gone = sorted(set(listed) - set(METHODS))
    assert not gone, f"docs/methods.md lists methods that are not registered: {gone} (peft-bench docs rewrites the table)"
    expected = docs.render_table({name: METHODS[name] for name in listed})
    assert committed == expected, "docs/methods.md's methods table is not the generated one: peft-bench docs rewrites it"
    new = sorted(set(METHODS) - set(listed))
    if new:
        warnings.warn(f"docs/methods.md has no row yet for {new}: peft-bench docs adds it", UserWarning)


@pytest.mark.parametrize("virtual", [1, 160])
@pytest.mark.parametrize("init", ["random", "text", "vocab", "labels"])
def test_prompt_lengths_and_inits(cfg_factory, virtual, init):
    cfg = cfg_factory("model=tiny-llama", "method=prompt_tuning", f"method.num_virtual_tokens={virtual}", f"method.init={init}")
    base, task, _ = build(cfg)
    embeddings = base.backbone.embed_tokens.weight.detach().clone()
    torch.manual_seed(0)
    tuned = get_method("prompt_tuning").apply(base, cfg.method, task)
    assert param_counts(tuned)["trainable"] == virtual * 32 + HEAD
    prompt = tuned.prompt_encoder["default"].embedding.weight.detach()
    if init == "random":
        assert not any(torch.equal(prompt[0], row) for row in embeddings)
    else:  # every virtual token starts as some real token's embedding
        text = {"text": cfg.method.init_text, "labels": " ".join(task.label_names)}.get(init)
        if text is not None:
            first = task.tokenizer(text, add_special_tokens=False)["input_ids"][0]
            assert torch.equal(prompt[0], embeddings[first])
        assert all(any(torch.equal(v, row) for row in embeddings) for v in prompt[:3])
    logits = _outputs(tuned, task)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()


@pytest.mark.parametrize("method", tiered(NAMES, keep=DEFAULT_TIER))
def test_the_estimator_applies_every_method_on_the_meta_device(cfg_factory, method):
    """`estimate` and `advise` build the method on a meta tiny-llama (no weights, one application):
    its trainable count is the real one's, or it refuses with a config error naming why."""
    from bench.measure.estimate import prepare_meta

    cfg = _cfg(cfg_factory, "tiny-llama", method, 0, "+model.size.vocab_size=30522")  # the tokenizer's: a run resizes to it, the estimator keeps the config's
    if _refused(cfg):
        pytest.skip(f"{method} refuses tiny-llama (declared)")
    try:
        meta, _ = prepare_meta(cfg)
    except ConfigError as exc:  # an init that computes on the weights (SVD, QR): said, not guessed
        assert "estimator can apply without weights" in str(exc)
        return
    assert any(p.is_meta for p in meta.parameters())  # the base's weights were never made
    trainable, _ = _applied_count(cfg)
    assert param_counts(meta)["trainable"] == trainable
