"""Model sources: a hub id, a local directory, a named offline asset, or an architecture built
from a config at a given size (random weights: valid for speed and memory, never for quality).

The task kind says what head it needs (a registered `bench.models.heads.Head`: `classifier`,
`causal_lm`, `seq2seq_lm`); this module only turns a model config into (model, tokenizer). Hub
ids stay a plain `from_pretrained` call. `model.quantize` (nf4, fp4, int8) stores the frozen base's
linear layers in 4 or 8 bits through bitsandbytes after loading (`quantize`): QLoRA is any adapter
method on such a base.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from bench.models import assets
from bench.models.heads import HEADS, get_head  # noqa: F401  (HEADS: the registered heads, by name)
from bench.config.checks import FAMILIES, POOLINGS, SOURCES  # noqa: F401  (the vocabulary of model configs, checked torch-free)


@dataclass
class ClassifierOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


HEAD_DROPOUT = 0.1  # the new classification head's dropout where the model's config leaves model.head_dropout out


class SequenceClassifier(nn.Module):
    """A pretrained backbone + a new linear head, pooled the way the backbone was trained.

    Why not AutoModelForSequenceClassification: all-MiniLM-L6-v2 was trained with mean pooling and
    its CLS/pooler output carries little signal (a frozen encoder sits at chance on SST-2), and
    decoder classifiers pool the last real token. One small module covers every family.
    """

    def __init__(self, backbone: nn.Module, num_labels: int, pooling: str, dropout: float = HEAD_DROPOUT):
        super().__init__()
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # BERT's pooler is never used here: its weights would count as trainable yet get no gradient
        self.backbone = backbone
        self.config = backbone.config  # peft and our code read model.config
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.hidden_size, num_labels)

    @property
    def device(self) -> torch.device:  # peft asks the wrapped model where it lives
        return self.head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.head.weight.dtype

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ClassifierOutput:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
        ).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        if attention_mask.shape[1] < hidden.shape[1]:  # soft-prompt tokens prepended to the input
            extra = hidden.shape[1] - attention_mask.shape[1]
            attention_mask = torch.cat([attention_mask.new_ones(hidden.shape[0], extra), attention_mask], 1)
        elif attention_mask.shape[1] > hidden.shape[1]:  # a prefix's keys/values: no hidden states of their own
            attention_mask = attention_mask[:, -hidden.shape[1]:]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:  # last real token; right padding is what our collator produces
            last = attention_mask.sum(1).long() - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        logits = self.head(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(loss=loss, logits=logits)


def resolve_path(model_cfg: DictConfig) -> str:
    """The string handed to from_pretrained: a hub id, a local dir, or an asset's cached dir."""
    source = model_cfg.source
    if source == "asset":
        return str(assets.asset_path(model_cfg.path))
    return str(model_cfg.path)


def _tokenizer_path(model_cfg: DictConfig) -> str:
    name = model_cfg.get("tokenizer") or model_cfg.path
    if name in assets.ASSETS:
        return str(assets.asset_path(name))
    return str(name)


def load_config(model_cfg: DictConfig) -> PretrainedConfig:
    """The architecture alone (no weights): for validation and for building random models."""
    if model_cfg.source == "config":
        overrides = OmegaConf.to_container(model_cfg.size, resolve=True) if model_cfg.get("size") else {}
        return AutoConfig.for_model(model_cfg.arch, **overrides)
    if model_cfg.source == "asset" and model_cfg.path == "smollm2-135m" and not assets.is_ready("smollm2-135m"):
        assets.asset_path("smollm2-135m")  # first use: download + dequantise, announced on stderr
    return AutoConfig.from_pretrained(resolve_path(model_cfg))


def family_of(config: PretrainedConfig) -> str:
    """encoder / decoder / encoder-decoder, read from the architecture's config."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") for a in archs) or config.model_type in ("llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "gemma3_text", "phi3", "gpt_neox", "opt"):
        return "decoder"
    return "encoder"


def load_tokenizer(model_cfg: DictConfig) -> PreTrainedTokenizerBase | None:
    """The tokenizer, with a pad token (decoders often lack one: reuse EOS). None for a model built
    from config with `tokenizer: null`: it keeps its config's vocabulary (synthetic tasks only)."""
    if model_cfg.source == "config" and model_cfg.get("tokenizer") is None:
        return None
    tok = AutoTokenizer.from_pretrained(_tokenizer_path(model_cfg))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.sep_token
    if tok.eos_token is None and tok.sep_token is not None:
        tok.eos_token = tok.sep_token  # WordPiece tokenizers reused by tiny decoders
    return tok


def load_model(model_cfg: DictConfig, head: str, num_labels: int = 0, tokenizer: PreTrainedTokenizerBase | None = None,
               attention: str = "auto", device: torch.device | None = None) -> nn.Module:
    """Build the model the task kind asked for. Random weights when source=config, built straight
    on `device` (initialising a 1B model on the CPU takes longer than training it on a card).
    attention: the attention kernel (speed.attention); auto leaves transformers' choice.
    model.quantize: the base's linear layers quantized (bitsandbytes) once loaded, on `device`."""
    return quantize(_load_model(model_cfg, head, num_labels, tokenizer, attention, device), model_cfg, device)


def _load_model(model_cfg: DictConfig, head: str, num_labels: int, tokenizer: PreTrainedTokenizerBase | None,
                attention: str, device: torch.device | None) -> nn.Module:
    spec = get_head(head)  # a ValueError naming the registered heads for any other name
    dtype = getattr(torch, model_cfg.get("dtype", "float32"))
    kernel = {} if attention == "auto" else {"attn_implementation": attention}
    if model_cfg.source == "config":
        config = load_config(model_cfg)
        if tokenizer is not None:  # the embedding table must cover the tokenizer
            config.vocab_size = len(tokenizer)
            config.pad_token_id = tokenizer.pad_token_id
            config.eos_token_id = tokenizer.eos_token_id
            if getattr(config, "is_encoder_decoder", False):
                config.decoder_start_token_id = tokenizer.pad_token_id
        auto = spec.auto()
        where = device or torch.device("cpu")
        with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):  # the same random model for every method and seed
            torch.manual_seed(0)
            with where:
                built = auto.from_config(config, dtype=dtype, **kernel)
        if not spec.new_head:
            return built
        backbone = built
    else:
        backbone = spec.auto().from_pretrained(resolve_path(model_cfg), dtype=dtype, **kernel)
        if not spec.new_head:
            return backbone
    if getattr(backbone.config, "is_encoder_decoder", False) and not spec.keeps_decoder:
        backbone = backbone.get_encoder()  # classify from the encoder of a T5-style model
    dropout = float(model_cfg.get("head_dropout", HEAD_DROPOUT))
    return SequenceClassifier(backbone, num_labels, model_cfg.get("pooling", "mean"), dropout).to(dtype)  # the new head in the weights' dtype


def meta_model(model_cfg: DictConfig, head: str, num_labels: int = 2) -> nn.Module:
    """The model built on the meta device: names, shapes and config, no weights read, milliseconds."""
    config = load_config(model_cfg)
    dtype = getattr(torch, model_cfg.get("dtype", "float32"))
    spec = get_head(head)
    with torch.device("meta"):
        model: nn.Module = spec.auto().from_config(config, dtype=dtype)
        if spec.new_head:
            if getattr(config, "is_encoder_decoder", False) and not spec.keeps_decoder:
                model = model.get_encoder()
            model = SequenceClassifier(model, num_labels, "mean").to(dtype)
    return quantize(model, model_cfg)  # on meta: bitsandbytes layers with their settings, nothing quantized (the estimator counts from them)


# --- a quantized base (model.quantize) ----------------------------------------------------------

BLOCKSIZE = 64  # 4-bit: one absmax (scale) per 64 weights, bitsandbytes' and QLoRA's default
INT8_THRESHOLD = 6.0  # LLM.int8: input columns with an outlier above this go through the matmul in the base's dtype
KEPT_LINEARS = ("lm_head",)  # the output layer stays at model.dtype, as transformers' bitsandbytes loading keeps it


def quantizable(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The linear layers a quantized base stores in 4 or 8 bits: every plain nn.Linear of the base
    except the output layer (lm_head), the new task head (`head`) and any linear whose weight is
    shared with another module (tied to the embeddings). Embeddings, norms and biases stay at
    model.dtype."""
    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return [(name, module) for name, module in model.named_modules()
            if type(module) is nn.Linear and name.rsplit(".", 1)[-1] not in KEPT_LINEARS
            and name != "head" and not name.startswith("head.") and uses[id(module.weight)] == 1]


def quantized_weights(model: nn.Module) -> list[nn.Parameter]:
    """The base's bitsandbytes weights (4-bit Params4bit, 8-bit Int8Params), each once."""
    return list({id(p): p for p in model.parameters() if type(p).__name__ in ("Params4bit", "Int8Params")}.values())


def quantize(model: nn.Module, model_cfg: DictConfig, device: torch.device | None = None) -> nn.Module:
    """Replace the `quantizable` linears by bitsandbytes' Linear4bit (nf4, fp4; blocksize 64, the
    scales quantized again with model.double_quant) or Linear8bitLt (int8, LLM.int8: int8 weights,
    one fp32 scale per row), frozen; the bias stays a parameter at model.dtype, the 4-bit layers
    compute in model.dtype. bitsandbytes quantizes a weight as it moves to a device (`device`, else
    where the weight is); on the meta device the layers keep their full-size meta weights (names,
    shapes and settings for the checks and the estimator). Done by hand rather than through
    transformers' BitsAndBytesConfig, which only applies to from_pretrained (our models built from
    a config have none) and targets CUDA. The model is marked `is_loaded_in_4bit`/`_8bit`, as
    transformers marks it, so peft wraps these layers with its bitsandbytes adapters (merging
    dequantizes, adds and quantizes again)."""
    kind = model_cfg.get("quantize")
    if not kind:
        return model
    import bitsandbytes as bnb

    _quiet_meta_warning()
    double = bool(model_cfg.get("double_quant", False))
    dtype = getattr(torch, model_cfg.get("dtype", "float32"))
    quantized = False
    for name, old in quantizable(model):
        bias = old.bias is not None
        if kind == "int8":
            new = bnb.nn.Linear8bitLt(old.in_features, old.out_features, bias=bias, has_fp16_weights=False,
                                      threshold=INT8_THRESHOLD, device="meta")
            new.weight = bnb.nn.Int8Params(old.weight.data, requires_grad=False, has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(old.in_features, old.out_features, bias=bias, compute_dtype=dtype,
                                    compress_statistics=double, quant_type=kind, device="meta")
            new.weight = bnb.nn.Params4bit(old.weight.data, requires_grad=False, compress_statistics=double,
                                           quant_type=kind, blocksize=BLOCKSIZE)
            # On a CPU with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight in place at its first
            # no-grad forward in eval mode (bf16 scales, double quantization undone; it fails on layers
            # narrower than 64 inputs): the weights would change layout and size between the first
            # evaluation and training. One layout for the whole run instead.
            new.support_avx512bf16_for_cpu = False
        if bias:
            new.bias = old.bias
        where = old.weight.device if device is None or old.weight.device.type == "meta" else device
        if where.type != "meta":
            new = new.to(where)  # bitsandbytes quantizes here
            quantized = True
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, new)
    setattr(model, "is_loaded_in_8bit" if kind == "int8" else "is_loaded_in_4bit", True)
    if quantized:  # real weights (not the meta model)
        _own_the_rest(model)
        _return_freed_memory()
    return model


def _own_the_rest(model: nn.Module) -> None:
    """Copy the weights left at model.dtype (embeddings, norms, biases, the output layer) out of the
    checkpoint file: from_pretrained maps the safetensors file into memory, and the pages the
    quantization read stay resident (and in the CPU peak, an RSS) for as long as any tensor still
    views the mapping. Once nothing does, the file is unmapped and the process holds the quantized
    base only. (An unquantized base keeps the mapping: its pages are its weights.)"""
    with torch.no_grad():
        for p in model.parameters():
            if p.device.type == "cpu" and type(p).__name__ not in ("Params4bit", "Int8Params"):
                p.data = p.data.clone()
        for module in model.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                if buffer is not None and buffer.device.type == "cpu":
                    setattr(module, name, buffer.clone())


def _quiet_meta_warning() -> None:
    """bitsandbytes logs "quantization state not initialized" when a 4-bit layer without one runs:
    the estimator runs adapter layers on meta copies (bench.measure.estimate), which have none by
    design and fail quietly into its fallback. That one message is dropped; bitsandbytes' others stay."""
    import logging

    logger = logging.getLogger("bitsandbytes.nn.modules")
    if not any(getattr(f, "bench_meta", False) for f in logger.filters):
        drop = logging.Filter()
        drop.filter = lambda record: "quantization state not initialized" not in record.getMessage()  # type: ignore[method-assign]
        drop.bench_meta = True  # type: ignore[attr-defined]
        logger.addFilter(drop)


def _return_freed_memory() -> None:
    """Hand the full-size weights' freed heap back to the OS (glibc keeps freed blocks below its
    mmap threshold resident), so the CPU peak, measured as RSS, counts the quantized base only."""
    import ctypes
    import gc
    import sys as _sys

    gc.collect()
    if _sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


def local_path_exists(model_cfg: DictConfig) -> bool:
    return Path(str(model_cfg.path)).expanduser().is_dir()
