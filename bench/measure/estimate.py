"""Predict training memory from the config alone (no weights, no training), part by part:

  weights      = sum over parameters of numel x bytes per element (frozen and trainable)
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
                 through the backward pass), plus each adapter's own copy of its input when its
                 weights are in another dtype than the frozen layer (peft casts the input: fp32
                 LoRA/IA3 on a bf16 model). Blocks below the lowest trainable block keep
                 nothing (autograd stops there), unless something at the input trains (a soft
                 prompt, the embeddings), which makes the gradient cross every block. With
                 gradient checkpointing a block keeps only its input (T x h) and one block at a
                 time is recomputed with its full set.

The model is built on the meta device and the method applied to it, so parameter counts are exact
for any size, e.g. an 8B Llama config on a laptop. Activations are an estimate: kernels choose what
to save (SDPA keeps less than eager attention), and the CPU peak also holds temporaries and the
allocator's slack; the record keeps the prediction beside the measurement so the gap is visible.

    peft-bench estimate model=llama3-8b-config method=lora train.batch_size=4 estimate.seq_len=512
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.run.generate import soft_prompt
from bench.measure.figures import tensor_bytes
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


def _adapter_copies_per_token(model: nn.Module) -> int:
    """Bytes per token that adapters keep beside the block's own activations: peft casts a layer's
    input to the adapter's dtype (fp32 adapters on a bf16 model: autocast_adapter_dtype) and the
    adapter's first op saves that copy for its weight gradient. LoRA: in_features per wrapped layer
    (its lora_A input); IA3 on a feed-forward layer: in_features (the scaled input). A same-dtype
    cast is a no-op and the input is one the block keeps anyway, so it adds nothing."""
    total = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        weight = getattr(base, "weight", None)
        if weight is None:
            continue
        adapters = [w for name in ("lora_A", "ia3_l") for w in (getattr(module, name, None) or {}).values()]
        if not adapters:
            continue
        adapter = adapters[0].weight if hasattr(adapters[0], "weight") else adapters[0]
        lora = hasattr(module, "lora_A")
        if adapter.dtype != weight.dtype and (lora or getattr(module, "is_feedforward", False)):
            total += int(getattr(base, "in_features", 0)) * adapter.element_size()
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
    adapters = tokens * _adapter_copies_per_token(model) if blocks else 0
    if gradient_checkpointing and blocks:
        kept = blocks * tokens * h * element + per_block + adapters // max(blocks, 1)
    else:
        kept = blocks * per_block + adapters
    # the loss upcasts the logits to fp32 whatever the model's dtype (transformers' causal-LM loss)
    lm_head = tokens * vocab * (3 * 4 + (element if keeps_logits else 0)) if get_head(head).is_lm else 0
    activations = kept + (tokens * h * element if blocks else 0) + (lm_head if trainable else 0)
    weights = tensor_bytes(params)
    grads = tensor_bytes(trainable)
    optimizer = 2 * grads + 4 * len(trainable)
    return {
        "weights_bytes": weights,
        "trainable_weights_bytes": grads,
        "gradients_bytes": grads,
        "optimizer_state_bytes": optimizer if trainable else 0,
        "activations_bytes": activations,
        "total_bytes": weights + grads + (optimizer if trainable else 0) + activations,
        "inputs": {"batch_size": batch_size, "seq_len": seq_len, "virtual_tokens": virtual, "blocks_with_activations": blocks,
                   "bytes_per_element": element, "hidden": h, "intermediate": inter, "heads": heads, "kv_dim": kv, "vocab": vocab,
                   "attention": attention, "keeps_logits": keeps_logits, "gradient_checkpointing": gradient_checkpointing},
    }


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
    method.check(cfg.method, Probe(model=meta, family=family, head=head, cfg=cfg))
    method_cfg = OmegaConf.create(OmegaConf.to_container(cfg.method, resolve=True))
    if "init" in method_cfg:
        method_cfg.init = "random"  # the prompt's values do not matter for memory
    task = SimpleNamespace(head=head, label_names=[str(x) for x in labels], tokenizer=None, num_labels=len(labels))
    return method.apply(meta, method_cfg, task), head


def estimate_config(cfg: DictConfig) -> dict[str, Any]:
    """Build the model on the meta device, apply the method, predict. No data, no weights."""
    from bench.config.plan import model_family

    prepared, head = prepare_meta(cfg)
    seq_len = int(cfg.estimate.seq_len) if cfg.estimate.get("seq_len") else default_seq_len(cfg, model_family(cfg.model))
    out = predict(prepared, head, int(cfg.train.batch_size), seq_len)
    out["model"], out["method"], out["dtype"] = str(cfg.model.name), str(cfg.method.name), str(cfg.model.get("dtype", "float32"))
    return out


def _gib(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:,.2f} GiB"
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench estimate` (the run's keys; estimate.seq_len sets the tokens per example)."""
    assert cfg is not None
    est = estimate_config(cfg)
    i = est["inputs"]
    print(f"{est['model']} + {est['method']} ({est['dtype']}, AdamW), batch {i['batch_size']} x {i['seq_len']} tokens"
          + (f" + {i['virtual_tokens']} virtual" if i["virtual_tokens"] else ""))
    for key in ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_bytes", "total_bytes"):
        print(f"  {key.replace('_bytes', ''):<16} {_gib(est[key]):>12}")
    print(f"  trainable weights {_gib(est['trainable_weights_bytes'])}; activations kept for {i['blocks_with_activations']} blocks")
    return 0
