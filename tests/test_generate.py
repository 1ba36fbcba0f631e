"""Generation is right for every method: cached decoding gives the same tokens as recomputing the
whole sequence each step, and those tokens are the argmax of the model's training-time forward
(teacher forcing). peft's own cached generate() fails the first check for prompt-tuned decoders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.run.generate import greedy_decoder, greedy_seq2seq
from bench.errors import ConfigError
from bench.methods import METHODS as REGISTRY
from bench.methods import get_method
from bench.tasks import pad
from conftest import build, tiered, write_dialogsum_like

# every hand-written method, with its first test example; of the YAML ones (one code path), a spread
# of what they wrap: linears (oft, vera, loha), the weight's direction (dora), norms (ln_tuning),
# the embedding (trainable_tokens)
METHODS = sorted(n for n in REGISTRY if not REGISTRY[n].source or n in ("oft", "vera", "loha", "dora", "ln_tuning", "trainable_tokens"))


def _prepared(cfg_factory, tmp_path: Path, model: str, method: str):
    # larger random init: a random tiny model then emits varied tokens, so equality means something
    # (tiny-gemma3 untied: its scaled input embedding dominates the residual stream, so tied output
    # weights would repeat the last token forever)
    scale = {"tiny-t5": ("+model.size.initializer_factor=20.0",),
             "tiny-gemma3": ("+model.size.initializer_range=1.0", "model.size.tie_word_embeddings=false")}.get(
        model, ("+model.size.initializer_range=1.0",))
    cfg = cfg_factory(f"model={model}", f"method={method}", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}", *scale,
                      *REGISTRY[method].examples[0])
    try:
        base, task, family = build(cfg)
    except ConfigError as exc:  # only for a model the method declares it refuses (bitfit on T5: no biases)
        assert any(reason in str(exc) for reason in REGISTRY[method].refuses), exc
        pytest.skip(f"{method} refuses {model} (declared): {exc}")
    torch.manual_seed(1)
    prepared = get_method(method).apply(base, cfg.method, task)
    with torch.no_grad():  # stand-in for training: move every trainable tensor away from its init
        for p in prepared.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return prepared.eval(), task, family


@pytest.mark.parametrize("model", tiered(["tiny-llama", "tiny-t5", "tiny-gemma3"], keep=("tiny-llama", "tiny-t5")))  # gemma3: system tier
@pytest.mark.parametrize("method", tiered(METHODS, keep=("none", "lora", "prefix_tuning")))
def test_cached_generation_equals_uncached(cfg_factory, tmp_path, model, method):
    prepared, task, family = _prepared(cfg_factory, tmp_path, model, method)
    tok = task.tokenizer
    left = family == "decoder"
    prompts = [f["prompt_ids"][: 6 + 5 * i] for i, f in enumerate(task.eval[:4])]  # different lengths: padding matters
    ids = pad(prompts, tok.pad_token_id, left=left)
    mask = pad([[1] * len(p) for p in prompts], 0, left=left)
    decode = greedy_decoder if left else greedy_seq2seq
    cached = decode(prepared, ids, mask, 10, tok.eos_token_id, tok.pad_token_id, use_cache=True)
    uncached = decode(prepared, ids, mask, 10, tok.eos_token_id, tok.pad_token_id, use_cache=False)
    assert cached.shape[1] >= 5
    assert len(set(cached.flatten().tolist())) > 4, "degenerate output: the check would be vacuous"
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("method", METHODS)
def test_decoder_generation_is_the_training_forward_argmax(cfg_factory, tmp_path, method):
    prepared, task, _ = _prepared(cfg_factory, tmp_path, "tiny-llama", method)
    tok = task.tokenizer
    ids = torch.tensor([task.eval[1]["prompt_ids"][:12]])
    new = greedy_decoder(prepared, ids, torch.ones_like(ids), 10, tok.eos_token_id, tok.pad_token_id)
    full = torch.cat([ids, new[:, :-1]], 1)
    with torch.no_grad():
        logits = prepared(input_ids=full, attention_mask=torch.ones_like(full)).logits  # the path training takes
    assert torch.equal(logits[:, -new.shape[1]:].argmax(-1), new)


def test_base_decoder_generation_equals_transformers_generate(cfg_factory, tmp_path):
    prepared, task, _ = _prepared(cfg_factory, tmp_path, "tiny-llama", "none")
    tok = task.tokenizer
    prompts = [f["prompt_ids"][: 6 + 5 * i] for i, f in enumerate(task.eval[:4])]
    ids = pad(prompts, tok.pad_token_id, left=True)
    mask = pad([[1] * len(p) for p in prompts], 0, left=True)
    ours = greedy_decoder(prepared, ids, mask, 10, tok.eos_token_id, tok.pad_token_id)
    theirs = prepared.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[:, ids.shape[1]:]
    assert torch.equal(ours, theirs[:, : ours.shape[1]])
