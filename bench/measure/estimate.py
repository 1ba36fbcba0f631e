"""Predict training memory from the config alone (no weights, no training), part by part:

  weights      = sum over parameters of numel x bytes per element (frozen and trainable), plus
                 the model's buffers (a method's frozen tensors: VeRA's shared projections,
                 BOFT's permutations, OSF's kept singular vectors)
  gradients    = trainable parameters x bytes per element (one gradient per trainable weight)
  optimizer    = AdamW: two moments per trainable weight (same dtype) + one fp32 step per tensor
  activations  = what autograd keeps for the backward pass, per block that gradients must cross:
                 T x (8 h + 2 kv + 3 i) + 2 x b x heads x s x s_k  elements, T = b x s tokens
                 (norm inputs, q/k/v and their inputs, rotated q/k, context, FFN input, the two
                 FFN projections and the activation; attention scores and probabilities, which
                 only eager attention keeps: attention="sdpa" drops them), plus the embeddings'
                 output T x h, plus a language-model head's 3 x T x vocab fp32 copies (the loss
                 upcasts the logits: log-softmax, its gradient, and the softmax backward's output;
                 keeps_logits adds the logits themselves when the loop holds the model's output
                 through the backward pass), plus what each peft adapter layer keeps beyond its
                 frozen layer (measured, not modelled: see _adapter_saved_bytes; e.g. the fp32
                 copy of a LoRA layer's input on a bf16 model, DoRA's and IA3's scaled outputs,
                 the dense rotation BOFT builds per layer). Blocks below the lowest trainable block keep
                 nothing (autograd stops there), unless something at the input trains (a soft
                 prompt, the embeddings), which makes the gradient cross every block. With
                 gradient checkpointing a block keeps only its input (T x h) and one block at a
                 time is recomputed with its full set.

The model is built on the meta device and the method applied to it, so parameter counts are exact
for any size, e.g. an 8B Llama config on a laptop. Activations are an estimate: kernels choose what
to save (SDPA keeps less than eager attention), and the CPU peak also holds temporaries and the
allocator's slack; the record keeps the prediction beside the measurement so the gap is visible.

With devices=N the run is data-parallel (DDP): each device keeps the activations of its share of
the batch and holds the full weights, gradients and optimizer state plus DDP's gradient buckets; what ZeRO-1,
ZeRO-2 and ZeRO-3 / FSDP sharding would need per device is computed beside it, on paper
(data_parallel has the formulas).

    peft-bench estimate model=llama3-8b-config method=lora train.batch_size=4 estimate.seq_len=512
    peft-bench estimate model=llama3-8b-config method=full task=dialogsum train.batch_size=8 devices=4
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.errors import ConfigError
from bench.run.generate import soft_prompt
from bench.measure.figures import logical_numel, tensor_bytes
from bench.models.heads import get_head


def _config_value(config: Any, *names: str, default: int = 0) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return default


def _blocks_needing_activations(model: nn.Module) -> int:
    """How many transformer blocks the backward pass must cross, over every stack (T5 has two).
    A stack is crossed from its lowest trainable block up, or whole when something before it in
    the forward order trains (the embeddings, the encoder for the decoder) or a soft prompt is on."""
    from bench.methods.selective import block_stacks

    stacks = block_stacks(model)
    order = [(n, p.requires_grad) for n, p in model.named_parameters()]
    every = bool(soft_prompt(model)[1])
    total = 0
    for name, blocks in stacks:
        prefix = name + "."
        first = next((i for i, (n, _) in enumerate(order) if n.startswith(prefix)), len(order))
        upstream = any(trains for n, trains in order[:first] if "head" not in n)
        trained = {int(n[len(prefix):].split(".")[0]) for n, trains in order if trains and n.startswith(prefix)}
        if every or upstream:
            total += len(blocks)
        elif trained:
            total += len(blocks) - min(trained)
    return total


def _input_copy_bytes(module: nn.Module) -> int:
    """The fallback for a layer whose forward cannot run on the meta device: bytes per token of
    peft's cast of the input to the adapter's dtype (fp32 adapters on a bf16 model) that the
    adapter's first op saves: LoRA's lora_A input; IA3's scaled input on a feed-forward layer."""
    base = getattr(module, "base_layer", None)
    weight = getattr(base, "weight", None)
    adapters = [w for name in ("lora_A", "ia3_l") for w in (getattr(module, name, None) or {}).values()]
    if weight is None or not adapters:
        return 0
    adapter = adapters[0].weight if hasattr(adapters[0], "weight") else adapters[0]
    lora = hasattr(module, "lora_A")
    if adapter.dtype != weight.dtype and (lora or getattr(module, "is_feedforward", False)):
        return int(getattr(base, "in_features", 0)) * adapter.element_size()
    return 0


class _Held:
    """A saved tensor as autograd's pack hook hands it over: alive exactly as long as the graph
    node that saved it (a weak reference tells whether it outlived the forward)."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor


def _kept_bytes(forward: Any, x: Any, owned: list) -> int:
    """Bytes of the tensors autograd still holds for the backward pass once forward(x) returns and
    its output is alive: each storage once, the input and the module's own parameters and buffers
    left out. Tensors saved by a part of the graph that died (a weight norm computed and detached,
    as DoRA's) are not counted."""
    import weakref

    import torch

    skip = {t.untyped_storage()._cdata for t in [x, *owned]}
    held: list[weakref.ref] = []

    def pack(t: Any) -> _Held:
        item = _Held(t.detach())  # an alias without its grad_fn: a saved output would otherwise hold its own node in a cycle
        held.append(weakref.ref(item))
        return item

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda item: item.tensor):
        out = forward(x)
    storages = {}
    for ref in held:
        item = ref()
        if item is not None:
            storage = item.tensor.untyped_storage()
            if storage._cdata not in skip:
                storages[storage._cdata] = storage.nbytes()
    del out
    return sum(storages.values())


def _meta_copy(module: nn.Module) -> nn.Module:
    """The module on the meta device (shapes, dtypes, requires_grad; no data copied)."""
    import copy
    from itertools import chain

    tensors = list(chain(module.parameters(), module.buffers()))
    if all(t.device.type == "meta" for t in tensors):
        return module
    memo: dict[int, Any] = {id(p): nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad) for p in module.parameters()}
    memo.update({id(b): b.detach().to("meta") for b in module.buffers()})
    return copy.deepcopy(module, memo)


def _peft_layer_type() -> type | None:
    """peft's BaseTunerLayer, or None when this process never imported peft: then no module of the
    model can be a peft layer, and importing peft only to find none would cost ~1.3 s a run (full
    fine-tuning, BitFit, last layers)."""
    if "peft" not in sys.modules:
        return None
    from peft.tuners.tuners_utils import BaseTunerLayer

    return BaseTunerLayer


def _adapter_saved_bytes(model: nn.Module, batch_size: int, seq_len: int, dtype: Any) -> int:
    """What peft's adapter layers keep for the backward pass beyond their frozen layers, measured
    on the meta device rather than written per method: each wrapped layer (a peft BaseTunerLayer)
    runs its forward in training mode on a meta input (batch x seq x its input width, the model's
    dtype; token ids for an embedding) under autograd's saved-tensor hooks, and the bytes its graph
    still holds (see _kept_bytes) less what its frozen base layer alone holds are added. That
    covers any method peft ships: LoRA's fp32 input copy on a bf16 model, DoRA's and IA3's scaled
    outputs, the dense rotation BOFT and OFT-style methods multiply, FourierFT's dense delta, the
    rows trainable tokens write over a tied output layer. Data-dependent steps run as the meta
    device allows: torch.nonzero assumes every element is nonzero (WaveFT's index mask; only index
    sizes change), and a layer that checks its values in training mode (VBLoRA's logits) is measured
    in eval mode (its dropout masks left out). A layer whose forward still fails (a quantized base)
    counts only LoRA's or IA3's input copy (_input_copy_bytes). Dropout keeps its mask at the input's
    dtype, as on the CPU (CUDA's fused kernel keeps one byte an element)."""
    import torch
    import torch.fx.experimental._config as fx_config

    BaseTunerLayer = _peft_layer_type()
    if BaseTunerLayer is None:
        return 0

    total = 0
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer) or getattr(module, "base_layer", None) is None:
            continue
        try:
            layer = _meta_copy(module)
            frozen = layer.get_base_layer()
            if isinstance(frozen, nn.Embedding):
                x = torch.zeros(batch_size, seq_len, dtype=torch.long, device="meta")
            else:
                width = getattr(frozen, "in_features", None) or frozen.weight.shape[-1]
                x = torch.empty(batch_size, seq_len, int(width), dtype=dtype, device="meta", requires_grad=True)
            owned = list(layer.parameters()) + list(layer.buffers())
            training = layer.training
            try:
                with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
                    for mode in (True, False):  # training mode; eval where a training-mode check reads values
                        layer.train(mode)
                        try:
                            kept = _kept_bytes(layer, x, owned) - _kept_bytes(frozen, x, owned)
                            break
                        except RuntimeError:
                            if not mode:
                                raise
            finally:
                layer.train(training)
            total += max(kept, 0)
        except Exception:  # noqa: BLE001 (a forward the meta device cannot run: the dtype-cast copy only)
            total += batch_size * seq_len * _input_copy_bytes(module)
    return total


def _buffer_bytes(model: nn.Module, params: list) -> int:
    """The buffers of peft's adapter layers (each once, none that is a parameter's storage): a
    method's frozen tensors live there (VeRA's shared random projections, BOFT's permutation
    matrices, OSF's frozen singular vectors). The base model's own (rotary frequencies, position
    ids) are left out, as before."""
    BaseTunerLayer = _peft_layer_type()
    if BaseTunerLayer is None:
        return 0
    seen = {p.untyped_storage()._cdata for p in params}
    buffers = {id(b): b for m in model.modules() if isinstance(m, BaseTunerLayer) for b in m.buffers()}.values()
    return tensor_bytes([b for b in buffers if b.untyped_storage()._cdata not in seen])


def weights_bytes(params: list) -> int:
    """The weights term: each parameter x its bytes per element, except a quantized base's weights
    (model.quantize), counted from each layer's shape and settings, so that the meta model (built
    with the same bitsandbytes layers, nothing quantized) predicts what loading will hold:
      4-bit (nf4, fp4): half a byte a weight + per block of `blocksize` (64) weights one fp32
        absmax, + the 16-value fp32 code; double quantization: the absmax in one byte each + per 256
        blocks one fp32 absmax of theirs + their 256-value fp32 code + one fp32 offset;
      int8 (LLM.int8): a byte a weight + one fp32 scale per output row.
    Embeddings, norms, biases, the output layer and the adapters count at their own dtype."""
    total = 0
    for p in params:
        kind = type(p).__name__
        if kind == "Params4bit":
            n = logical_numel(p)
            blocks = -(-n // int(p.blocksize))
            if p.compress_statistics:
                total += (n + 1) // 2 + blocks + 4 * -(-blocks // 256) + 4 * 256 + 4 + 4 * 16
            else:
                total += (n + 1) // 2 + 4 * blocks + 4 * 16
        elif kind == "Int8Params":
            total += p.numel() + 4 * p.shape[0]
        else:
            total += p.numel() * p.element_size()
    return total


def predict(model: nn.Module, head: str, batch_size: int, seq_len: int, *, attention: str = "eager",
            keeps_logits: bool = False, gradient_checkpointing: bool = False) -> dict[str, Any]:
    """Each part in bytes, for a model with its method applied (meta or real weights).

    attention: "eager" keeps the b x heads x s x s_k scores and probabilities per block (an upper
    bound, what our runs' records assume); "sdpa" (or "flash") keeps neither: the fused kernels save
    the log-sum-exp (b x heads x s) and recompute the rest in the backward pass.
    keeps_logits: the training loop holds the model's output (its logits, model dtype) through the
    backward pass, as PEFT's method comparison does (`outputs = model(...)`); ours keeps the loss only.
    gradient_checkpointing: blocks keep only their input; the backward pass recomputes one at a time."""
    if attention not in ("eager", "sdpa", "flash"):
        raise ValueError(f"attention={attention!r}: eager, sdpa or flash")
    config = getattr(model, "config", None) or model.get_base_model().config
    params = list({id(p): p for p in model.parameters()}.values())
    trainable = [p for p in params if p.requires_grad]
    element = params[0].element_size() if params else 4
    h = _config_value(config, "hidden_size", "d_model", "n_embd")
    heads = _config_value(config, "num_attention_heads", "num_heads", "n_head", default=1)
    head_dim = _config_value(config, "head_dim", "d_kv", default=h // max(heads, 1))
    kv = _config_value(config, "num_key_value_heads", default=heads) * head_dim
    inter = _config_value(config, "intermediate_size", "d_ff", "n_inner", default=4 * h)
    vocab = _config_value(config, "vocab_size")
    _, kind, virtual = soft_prompt(model)
    s = seq_len + (virtual if kind == "prompt" else 0)
    s_k = s + (virtual if kind == "prefix" else 0)
    tokens = batch_size * s
    blocks = _blocks_needing_activations(model) if trainable else 0
    scores = 2 * batch_size * heads * s * s_k if attention == "eager" else 0
    per_block = (tokens * (8 * h + 2 * kv + 3 * inter) + scores) * element
    adapters = _adapter_saved_bytes(model, batch_size, s, next((p.dtype for p in params if p.is_floating_point()), None)) if blocks else 0
    if gradient_checkpointing and blocks:
        kept = blocks * tokens * h * element + per_block + adapters // max(blocks, 1)
    else:
        kept = blocks * per_block + adapters
    # the loss upcasts the logits to fp32 whatever the model's dtype (transformers' causal-LM loss)
    lm_head = tokens * vocab * (3 * 4 + (element if keeps_logits else 0)) if get_head(head).is_lm else 0
    activations = kept + (tokens * h * element if blocks else 0) + (lm_head if trainable else 0)
    weights = weights_bytes(params)
    buffers = _buffer_bytes(model, params)  # a method's frozen tensors (VeRA's projections, BOFT's permutations)
    weights += buffers
    grads = tensor_bytes(trainable)
    optimizer = 2 * grads + 4 * len(trainable)
    return {
        "weights_bytes": weights,
        "trainable_weights_bytes": grads,
        "gradients_bytes": grads,
        "optimizer_state_bytes": optimizer if trainable else 0,
        "activations_bytes": activations,
        "buffers_bytes": buffers,  # within weights_bytes
        "adapter_activations_bytes": adapters,  # within activations_bytes (all blocks' adapters, as if none were checkpointed)
        "total_bytes": weights + grads + (optimizer if trainable else 0) + activations,
        "inputs": {"batch_size": batch_size, "seq_len": seq_len, "virtual_tokens": virtual, "blocks_with_activations": blocks,
                   "bytes_per_element": element, "hidden": h, "intermediate": inter, "heads": heads, "kv_dim": kv, "vocab": vocab,
                   "attention": attention, "keeps_logits": keeps_logits, "gradient_checkpointing": gradient_checkpointing},
    }


def check_devices(devices: Any, batch_size: Any) -> int:
    """`devices` is an integer >= 1 that divides the global batch train.batch_size (DDP gives every
    device the same number of examples): refused naming the field before any model is built."""
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError("devices", devices, "an integer >= 1 (data-parallel devices; 1 = one device, no DDP)")
    from bench.config.schema import check_value

    check_value("train", "batch_size", batch_size)  # an integer >= 1, refused as the run refuses it
    if batch_size % devices:
        raise ConfigError("train.batch_size", batch_size, f"a multiple of devices={devices} (the global batch is split evenly across the devices)")
    return devices


def _unit_weights(model: nn.Module) -> tuple[int, int]:
    """(the weights outside every transformer block, the largest block's weights), parameters only:
    the units FSDP gathers when each block is its own unit (transformer_auto_wrap_policy, or
    fully_shard per block) and the rest (embeddings, final norm, head) is the root unit. A model
    without a list of blocks is one unit: all of it is outside."""
    from bench.methods.selective import block_stacks

    params = {id(p): p for p in model.parameters()}
    in_blocks: set[int] = set()
    largest = 0
    for _, blocks in block_stacks(model):
        for block in blocks:
            mine = {id(p): p for p in block.parameters()}
            in_blocks |= set(mine)
            largest = max(largest, weights_bytes(list(mine.values())))
    outside = weights_bytes([p for i, p in params.items() if i not in in_blocks])
    return outside, largest


def _shard(n: int, devices: int) -> int:
    """One device's part of n bytes split across the devices (ZeRO pads to equal parts: the ceiling)."""
    return -(-n // devices)


def data_parallel(model: nn.Module, est: dict[str, Any], devices: int) -> dict[str, Any]:
    """One device's memory when `devices` devices train data-parallel, from `est`, the prediction for
    one device's share of the batch (predict at train.batch_size / devices). W weights (P of them
    parameters, the rest a method's buffers), G gradients, O optimizer state, A activations, N devices:

      ddp    = W + G + O + A + G      DistributedDataParallel: every device holds the full weights,
                                      gradients and optimizer state; the second G is DDP's gradient
                                      buckets. Its reducer allocates buckets of bucket_cap_mb = 25 MiB
                                      (the first 1 MiB) that hold every trainable gradient once, in the
                                      gradient's dtype (the all-reduce's), beside the .grad tensors.
                                      We assume PyTorch's default gradient_as_bucket_view=False; True
                                      makes the gradients views of the buckets and removes this copy.

    What sharding would save, on paper (we run none of it), partitioned as ZeRO does (Rajbhandari et
    al., 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", sec. 5: P_os,
    P_os+g, P_os+g+p), each part split into N equal shards (a shard is ceil(x / N)):

      zero1  = W + G + O/N + A                    optimizer state partitioned (ZeRO stage 1)
      zero2  = W + G/N + O/N + A                  + gradients partitioned (ZeRO stage 2)
      fsdp   = P/N + (W - P) + U + G/N + O/N + A  + parameters partitioned (ZeRO stage 3, FSDP
                                                  FULL_SHARD), U the gathered full weights: the root
                                                  unit (embeddings, final norm, head; FSDP keeps it
                                                  gathered from forward through backward) and one
                                                  transformer block at a time (_unit_weights).
                                                  Buffers are not sharded (W - P stays whole).

    Like the paper's model-state count, the sharded figures leave out communication buffers
    (DeepSpeed's reduce and all-gather buckets, FSDP's prefetch of the next block) and the
    unsharded gradient of a gathered unit before its reduce-scatter."""
    w, g, o, a = est["weights_bytes"], est["gradients_bytes"], est["optimizer_state_bytes"], est["activations_bytes"]
    params = w - est["buffers_bytes"]
    root, block = _unit_weights(model)
    gathered = root + block
    n = devices
    return {
        "devices": n,
        "per_device_batch_size": est["inputs"]["batch_size"],
        "global_batch_size": est["inputs"]["batch_size"] * n,
        "ddp_buckets_bytes": g,
        "ddp_bytes": w + g + o + a + g,
        "zero1_bytes": w + g + _shard(o, n) + a,
        "zero2_bytes": w + _shard(g, n) + _shard(o, n) + a,
        "fsdp_bytes": _shard(params, n) + (w - params) + gathered + _shard(g, n) + _shard(o, n) + a,
        "fsdp_gathered_bytes": gathered,  # within fsdp_bytes: the root unit's and the largest block's full weights
        "assumes": "DDP with gradient_as_bucket_view=False (buckets copy every gradient); ZeRO/FSDP on paper: model states "
                   "partitioned as in Rajbhandari et al. 2020, one block gathered at a time, no communication buffers",
    }


def predict_devices(model: nn.Module, head: str, batch_size: int, seq_len: int, devices: int = 1, **options: Any) -> dict[str, Any]:
    """predict() for one device's share of the global batch (batch_size / devices examples), with
    `data_parallel` holding the per-device DDP peak and the sharded alternatives when devices > 1
    (None on one device: nothing is replicated, no buckets)."""
    check_devices(devices, batch_size)
    est = predict(model, head, batch_size // devices, seq_len, **options)
    est["data_parallel"] = data_parallel(model, est, devices) if devices > 1 else None
    return est


def default_seq_len(cfg: DictConfig, family: str) -> int:
    """The longest training sequence the task allows (its kind says how long), used when estimate.seq_len is null."""
    from bench.tasks import get_kind

    return get_kind(cfg.task.kind).train_tokens(cfg, family)


def prepare_meta(cfg: DictConfig) -> tuple[nn.Module, str]:
    """Build the model on the meta device and apply the method: (model, head). No data, no weights."""
    from bench.models import sources as models
    from bench.config.plan import model_family
    from bench.methods import Probe, get_method
    from bench.tasks import get_kind

    family = model_family(cfg.model)
    kind = get_kind(cfg.task.kind)
    head = kind.head_for(family)
    labels = list(cfg.task.get("labels") or [0, 1])
    meta = models.meta_model(cfg.model, head, num_labels=len(labels))
    method = get_method(cfg.method.name)
    method.check(cfg.method, None)
    method.check(cfg.method, Probe(model=meta, family=family, head=head, cfg=cfg, trial_apply=False))  # apply() below is the trial
    method_cfg = OmegaConf.create(OmegaConf.to_container(cfg.method, resolve=True))
    if "init" in method_cfg:
        method_cfg.init = "random"  # the prompt's values do not matter for memory
    task = SimpleNamespace(head=head, label_names=[str(x) for x in labels], tokenizer=None, num_labels=len(labels))
    return method.apply(meta, method_cfg, task), head


def estimate_config(cfg: DictConfig, devices: int = 1) -> dict[str, Any]:
    """Build the model on the meta device, apply the method, predict (per device when devices > 1:
    see data_parallel). No data, no weights."""
    from bench.config.plan import model_family

    check_devices(devices, cfg.train.batch_size)
    prepared, head = prepare_meta(cfg)
    seq_len = int(cfg.estimate.seq_len) if cfg.estimate.get("seq_len") else default_seq_len(cfg, model_family(cfg.model))
    out = predict_devices(prepared, head, int(cfg.train.batch_size), seq_len, devices)
    out["model"], out["method"], out["dtype"] = str(cfg.model.name), str(cfg.method.name), str(cfg.model.get("dtype", "float32"))
    return out


def _gib(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:,.2f} GiB"
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench estimate` (the run's keys; estimate.seq_len sets the tokens per example, devices=N
    the data-parallel devices: conf/estimate.yaml)."""
    assert cfg is not None
    devices = check_devices(opts.devices, cfg.train.batch_size)  # before any model is built
    est = estimate_config(cfg, devices)
    i, dp = est["inputs"], est["data_parallel"]
    batch = f"batch {i['batch_size']}" if dp is None else f"batch {dp['global_batch_size']} on {devices} devices ({i['batch_size']} per device)"
    print(f"{est['model']} + {est['method']} ({est['dtype']}, AdamW), {batch} x {i['seq_len']} tokens"
          + (f" + {i['virtual_tokens']} virtual" if i["virtual_tokens"] else ""))
    if dp is not None:
        print("  per device, DDP (every device holds the full weights, gradients and optimizer state):")
    for key in ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_bytes"):
        print(f"  {key.replace('_bytes', ''):<16} {_gib(est[key]):>12}")
    if dp is None:
        print(f"  {'total':<16} {_gib(est['total_bytes']):>12}")
    else:
        print(f"  {'ddp buckets':<16} {_gib(dp['ddp_buckets_bytes']):>12}   (a copy of the gradients; DDP's gradient_as_bucket_view=True would remove it)")
        print(f"  {'total (DDP)':<16} {_gib(dp['ddp_bytes']):>12}")
        print(f"  sharded across {devices} devices, per device (on paper: we run none of these):")
        print(f"  {'zero1':<16} {_gib(dp['zero1_bytes']):>12}   optimizer state / {devices}")
        print(f"  {'zero2':<16} {_gib(dp['zero2_bytes']):>12}   + gradients / {devices}")
        print(f"  {'zero3 / fsdp':<16} {_gib(dp['fsdp_bytes']):>12}   + weights / {devices}, + {_gib(dp['fsdp_gathered_bytes'])} gathered "
              "(embeddings and head, one block)")
    print(f"  trainable weights {_gib(est['trainable_weights_bytes'])}; activations kept for {i['blocks_with_activations']} blocks")
    return 0
