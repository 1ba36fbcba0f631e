"""The estimator's terms for GPU-style runs (bf16 weights, fp32 adapters, fused attention), each
checked against a hand count on a meta tiny-llama (hidden 32, 2 blocks, 4 heads, kv 16, FFN 64)."""

from __future__ import annotations

import pytest

from bench.config.compose import compose
from bench.measure.estimate import predict, prepare_meta

B, S = 4, 10
T = B * S


def _meta(*overrides: str):
    return prepare_meta(compose(["model=tiny-llama", "task=dialogsum", *overrides]))


def test_the_loss_keeps_fp32_logit_copies_whatever_the_model_dtype():
    """transformers' causal-LM loss upcasts the logits: log-softmax, its gradient and the softmax
    backward's output are fp32 (3 x T x vocab x 4 bytes) in a bf16 model too; keeps_logits adds the
    bf16 logits a loop that holds the output keeps."""
    model, head = _meta("method=full", "model.dtype=bfloat16")
    plain = predict(model, head, B, S, attention="sdpa")
    held = predict(model, head, B, S, attention="sdpa", keeps_logits=True)
    i = plain["inputs"]
    blocks = T * (8 * i["hidden"] + 2 * i["kv_dim"] + 3 * i["intermediate"]) * 2
    assert plain["activations_bytes"] == 2 * blocks + T * i["hidden"] * 2 + 3 * T * i["vocab"] * 4
    assert held["activations_bytes"] - plain["activations_bytes"] == T * i["vocab"] * 2


def test_fused_attention_keeps_no_scores():
    model, head = _meta("method=full")
    eager, sdpa = predict(model, head, B, S), predict(model, head, B, S, attention="sdpa")
    assert eager["activations_bytes"] - sdpa["activations_bytes"] == 2 * (2 * B * 4 * S * S) * 4  # 2 blocks, scores + probabilities, fp32
    with pytest.raises(ValueError, match="eager, sdpa or flash"):
        predict(model, head, B, S, attention="fast")


def test_fp32_adapters_on_a_bf16_model_keep_their_own_input_copy():
    """peft casts a LoRA layer's input to the adapter's fp32 (autocast_adapter_dtype): lora_A keeps
    that copy, in_features x 4 bytes a token per wrapped layer. In an fp32 model the cast is a no-op."""
    targets = "method.target_modules=[q_proj,v_proj]"
    bf16, head = _meta("method=lora", targets, "model.dtype=bfloat16")
    fp32, _ = _meta("method=lora", targets)
    full, _ = _meta("method=full", "model.dtype=bfloat16")
    got = predict(bf16, head, B, S, attention="sdpa")["activations_bytes"]
    same_blocks = predict(full, head, B, S, attention="sdpa")["activations_bytes"]  # also crosses both blocks
    assert got - same_blocks == T * 2 * 2 * 32 * 4  # 2 blocks x (q, v) x 32 inputs x fp32
    fp32_full, _ = _meta("method=full")
    assert predict(fp32, head, B, S)["activations_bytes"] == predict(fp32_full, head, B, S)["activations_bytes"]


def test_gradient_checkpointing_keeps_block_inputs_and_one_block():
    model, head = _meta("method=full")
    plain = predict(model, head, B, S, attention="sdpa")
    ckpt = predict(model, head, B, S, attention="sdpa", gradient_checkpointing=True)
    i = plain["inputs"]
    block = T * (8 * i["hidden"] + 2 * i["kv_dim"] + 3 * i["intermediate"]) * 4
    assert plain["activations_bytes"] - ckpt["activations_bytes"] == 2 * block - (2 * T * i["hidden"] * 4 + block)
    assert ckpt["inputs"]["gradient_checkpointing"] is True
