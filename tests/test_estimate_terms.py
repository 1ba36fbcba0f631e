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
    that copy, in_features x 4 bytes a token per wrapped layer, and lora_B keeps A's output (r x 4).
    In an fp32 model the cast is a no-op: A's input is the layer's own, only A's output is new.
    Dropout keeps its output and, as on the CPU, a mask in the input's dtype."""
    targets = "method.target_modules=[q_proj,v_proj]"
    bf16, head = _meta("method=lora", targets, "model.dtype=bfloat16", "method.dropout=0.0")
    fp32, _ = _meta("method=lora", targets, "method.dropout=0.0")
    dropout, _ = _meta("method=lora", targets, "model.dtype=bfloat16")
    full, _ = _meta("method=full", "model.dtype=bfloat16")
    got = predict(bf16, head, B, S, attention="sdpa")
    same_blocks = predict(full, head, B, S, attention="sdpa")["activations_bytes"]  # also crosses both blocks
    assert got["activations_bytes"] - same_blocks == got["adapter_activations_bytes"] == T * 2 * 2 * (32 + 8) * 4  # 2 blocks x (q, v) x (32 in + r 8), fp32
    assert predict(dropout, head, B, S)["adapter_activations_bytes"] == T * 2 * 2 * (32 + 32 + 8) * 4
    assert predict(fp32, head, B, S)["adapter_activations_bytes"] == T * 2 * 2 * 8 * 4


def test_what_an_adapter_keeps_is_measured_and_a_detached_graph_is_not():
    """DoRA (rank 32, q and v on tiny-llama, bf16): per token the fp32 input copy, A's output, the
    bf16 base output and the fp32 LoRA output it rescales; per layer its fp32 weight norm and two
    scales of the output width. The weight norm's own graph (B A on an identity, W + B A) is
    detached inside the forward, so what it saved is freed and not counted."""
    dora, head = _meta("method=dora", "model.dtype=bfloat16", "method.config.lora_dropout=0.0")
    q, v = 32 * 4 + 32 * 4 + 32 * 2 + 32 * 4, 32 * 4 + 32 * 4 + 16 * 2 + 16 * 4  # in 32; out 32 and 16
    assert predict(dora, head, B, S, attention="sdpa")["adapter_activations_bytes"] == 2 * (T * (q + v) + 3 * 4 * (32 + 16))

    import torch

    from bench.measure.estimate import _kept_bytes

    w = torch.nn.Parameter(torch.empty(6, 5, device="meta"))
    x = torch.empty(3, 5, device="meta", requires_grad=True)
    norm = lambda x: x * (w * 2).norm().detach() + (x @ w.t()).sum()  # noqa: E731 (w * 2 is freed; x @ w.t() keeps x, the input)
    assert _kept_bytes(norm, x, [w]) == 4  # the detached norm, a 4-byte scalar the product keeps


def test_a_methods_buffers_count_as_weights():
    """VeRA's frozen random projections are buffers shared by every layer: A (r x in) and B (out x r), fp32, once."""
    vera, head = _meta("method=vera")
    full, _ = _meta("method=full")
    got, base = predict(vera, head, B, S), predict(full, head, B, S)
    assert got["buffers_bytes"] - base["buffers_bytes"] == (256 * 32 + 32 * 256) * 4
    vectors = 2 * ((256 + 32) + (256 + 16)) * 4  # 2 blocks: d (r) and b (out) for q (out 32) and v (out 16)
    assert got["weights_bytes"] - got["buffers_bytes"] == base["weights_bytes"] - base["buffers_bytes"] + vectors


def test_gradient_checkpointing_keeps_block_inputs_and_one_block():
    model, head = _meta("method=full")
    plain = predict(model, head, B, S, attention="sdpa")
    ckpt = predict(model, head, B, S, attention="sdpa", gradient_checkpointing=True)
    i = plain["inputs"]
    block = T * (8 * i["hidden"] + 2 * i["kv_dim"] + 3 * i["intermediate"]) * 4
    assert plain["activations_bytes"] - ckpt["activations_bytes"] == 2 * block - (2 * T * i["hidden"] * 4 + block)
    assert ckpt["inputs"]["gradient_checkpointing"] is True


# ---------------------------------------------------------------- several devices (data-parallel), on paper
PARAMS = 32000 * 32 + 2 * 9280 + 32  # tied embeddings and head once; a block: q 32x32, k and v 16x32, o 32x32, gate and up 64x32, down 32x64, 2 norms of 32; the final norm
TENSORS = 20  # trainable tensors of full fine-tuning: the embeddings, 9 per block, the final norm (AdamW keeps one fp32 step each)


def test_ddp_splits_the_batch_and_every_device_holds_the_model_states_and_a_bucket_copy():
    """Two devices, the global batch B split in two: one device's activations are those of B / 2
    examples; its weights, gradients and optimizer state are the whole run's (DDP replicates them);
    DDP's buckets copy every trainable gradient once (gradient_as_bucket_view=False)."""
    from bench.measure.estimate import predict_devices

    model, head = _meta("method=full")
    one = predict(model, head, B, S, attention="sdpa")
    got = predict_devices(model, head, B, S, 2, attention="sdpa")
    dp = got["data_parallel"]
    t = B // 2 * S  # one device's tokens
    assert got["activations_bytes"] == predict(model, head, B // 2, S, attention="sdpa")["activations_bytes"] \
        == 2 * t * (8 * 32 + 2 * 16 + 3 * 64) * 4 + t * 32 * 4 + 3 * t * 32000 * 4  # 2 blocks, the embeddings' output, fp32 logit copies
    assert got["weights_bytes"] == one["weights_bytes"] == PARAMS * 4
    assert got["gradients_bytes"] == one["gradients_bytes"] == PARAMS * 4
    assert got["optimizer_state_bytes"] == one["optimizer_state_bytes"] == 2 * PARAMS * 4 + 4 * TENSORS
    assert dp["ddp_buckets_bytes"] == PARAMS * 4
    assert dp["ddp_bytes"] == PARAMS * 4 * 3 + (2 * PARAMS * 4 + 4 * TENSORS) + got["activations_bytes"]
    assert dp["per_device_batch_size"] == 2 and dp["global_batch_size"] == B
    single = predict_devices(model, head, B, S, 1, attention="sdpa")
    assert single["data_parallel"] is None and single["total_bytes"] == one["total_bytes"]  # one device: the whole batch, no DDP, no buckets


def test_ddp_buckets_hold_the_gradients_in_their_own_dtype():
    """LoRA r=8 on q and v of a bf16 model: the adapters and their gradients are fp32, so are the buckets."""
    from bench.measure.estimate import predict_devices

    model, head = _meta("method=lora", "method.target_modules=[q_proj,v_proj]", "model.dtype=bfloat16")
    dp = predict_devices(model, head, B, S, 2)["data_parallel"]
    assert dp["ddp_buckets_bytes"] == 2 * ((8 * 32 + 32 * 8) + (8 * 32 + 16 * 8)) * 4  # 2 blocks: q (A 8x32, B 32x8), v (A 8x32, B 16x8)


def test_zero_and_fsdp_per_device_figures_are_the_formulas():
    """Four devices, one example each. ZeRO-1 splits the optimizer state, ZeRO-2 the gradients too,
    ZeRO-3 / FSDP the weights too and gathers the root unit (the tied embeddings and head, the final
    norm) and one block at a time. Every figure here divides by 4 exactly."""
    from bench.measure.estimate import predict_devices

    model, head = _meta("method=full")
    got = predict_devices(model, head, B, S, 4, attention="sdpa")
    dp = got["data_parallel"]
    w, g, o, a = PARAMS * 4, PARAMS * 4, 2 * PARAMS * 4 + 4 * TENSORS, got["activations_bytes"]
    root, block = (32000 * 32 + 32) * 4, 9280 * 4
    assert dp["fsdp_gathered_bytes"] == root + block
    assert dp["zero1_bytes"] == w + g + o // 4 + a == 4_170_368 + 4_170_368 + 2_085_204 + a
    assert dp["zero2_bytes"] == w + g // 4 + o // 4 + a == 4_170_368 + 1_042_592 + 2_085_204 + a
    assert dp["fsdp_bytes"] == w // 4 + root + block + g // 4 + o // 4 + a == 1_042_592 + 4_133_248 + 1_042_592 + 2_085_204 + a
    assert dp["ddp_bytes"] > dp["zero1_bytes"] > dp["zero2_bytes"]


def test_fsdp_shards_parameters_not_a_methods_buffers():
    """VeRA's shared projections are buffers: FSDP replicates them, so they stay whole on every device."""
    from bench.measure.estimate import predict_devices

    model, head = _meta("method=vera")
    got = predict_devices(model, head, B, S, 2)
    dp, buffers = got["data_parallel"], got["buffers_bytes"]
    params = got["weights_bytes"] - buffers
    shard = lambda n: -(-n // 2)  # noqa: E731
    assert buffers == (256 * 32 + 32 * 256) * 4
    assert dp["fsdp_bytes"] == shard(params) + buffers + dp["fsdp_gathered_bytes"] + shard(got["gradients_bytes"]) \
        + shard(got["optimizer_state_bytes"]) + got["activations_bytes"]


@pytest.mark.parametrize("devices,batch,field", [(0, 4, "devices"), (-1, 4, "devices"), (2.5, 4, "devices"), ("x", 4, "devices"),
                                                 (True, 4, "devices"), (3, 4, "train.batch_size")])
def test_a_bad_device_count_or_an_uneven_split_is_refused_naming_the_field(devices, batch, field):
    from bench.errors import ConfigError
    from bench.measure.estimate import check_devices

    with pytest.raises(ConfigError) as exc:
        check_devices(devices, batch)
    assert exc.value.field == field


@pytest.mark.system  # a fresh interpreter (about 8 s): what a run's process imports
def test_a_model_without_peft_layers_is_estimated_without_importing_peft():
    """Full fine-tuning's estimate must not import peft (~1.3 s a run, a tuning trial's cost) and
    must equal the figure computed in a process where peft is loaded."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from bench.config.compose import compose; from bench.measure.estimate import predict, prepare_meta; "
            "m, h = prepare_meta(compose(['model=tiny-llama', 'task=dialogsum', 'method=full'])); "
            f"p = predict(m, h, {B}, {S}); print(json.dumps([p['total_bytes'], 'peft' in sys.modules]))")
    total, imported = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    import peft  # noqa: F401 (loaded here: the estimate takes the peft path, and finds no peft layer)

    model, head = _meta("method=full")
    assert not imported and total == predict(model, head, B, S)["total_bytes"]
