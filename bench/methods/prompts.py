"""Soft prompts (through peft): the model stays frozen and learns virtual tokens.

- `prompt_tuning` (Lester et al., 2021): P trainable input embeddings prepended to the (encoder's)
  input. Trainable = P * hidden (+ the task head). Initialised at random, from a text, from
  embeddings of tokens sampled uniformly from the vocabulary, or from the task's class names.
- `prefix_tuning` (Li & Liang, 2021): P trainable key/value vectors prepended in every attention
  layer (decoders and encoder-decoders only: it rides on the KV cache, which encoders lack).
  Trainable = P * layers * 2 * kv_dim, kv_dim = kv_heads * head_dim (+ the task head; with
  `projection`, an MLP hidden -> projection_size -> layers * 2 * kv_dim is trained instead).

Stored per task: the virtual tokens (and the head), via peft's save_pretrained. Generation feeds
the virtual tokens once and then reuses the KV cache (bench/run/generate.py): peft's own cached
`generate()` on prompt-tuned decoders returns wrong tokens with transformers 5 (docs/architecture.md, facts).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from bench.errors import ConfigError
from bench.tasks import get_kind
from bench.methods.registry import Probe, head_modules, head_params, int_at_least, load_peft, one_of, register, save_peft

INITS = ("random", "text", "vocab", "labels")


def _task_type(head: str) -> str:
    from bench.models.heads import get_head

    return get_head(head).peft_task_type


def check_length(method_cfg: DictConfig, probe: Probe) -> None:
    """Virtual tokens and the input must fit the model's positions together (the prompt template
    adds a few tokens more, not counted here)."""
    limit = getattr(probe.model.config, "max_position_embeddings", None)
    if not limit or probe.family == "encoder-decoder":  # T5's relative positions have no limit
        return
    longest, made_of, _ = get_kind(probe.cfg.task.kind).input_tokens(probe.cfg, probe.family)
    p = int(method_cfg.num_virtual_tokens)
    if p + longest > int(limit):
        raise ConfigError("method.num_virtual_tokens", p, f"at most {int(limit) - longest}: {p} virtual tokens + {longest} input tokens ({made_of}) exceed the model's {limit} positions")


def check_prompt(method_cfg: DictConfig, probe: Probe | None) -> None:
    int_at_least(method_cfg, "num_virtual_tokens", 1, "soft-prompt length")
    init = one_of(method_cfg, "init", INITS)
    if init == "text" and not str(method_cfg.get("init_text") or "").strip():
        raise ConfigError("method.init_text", method_cfg.get("init_text"), "a non-empty text when method.init=text")
    if probe is None:
        return
    if init == "text" and probe.cfg.model.source == "config" and probe.cfg.model.get("tokenizer") is None:
        raise ConfigError("method.init", init, f"random or vocab: {probe.cfg.model.name} has no tokenizer to read method.init_text with")
    if init == "labels" and "labels" not in get_kind(probe.cfg.task.kind).keys:  # a kind without class labels
        raise ConfigError("method.init", init, f"random, text or vocab: task {probe.cfg.task.name} has no class labels")
    check_length(method_cfg, probe)


def _init_ids(method_cfg: DictConfig, task: Any, vocab_size: int) -> list[int] | None:
    """Token ids whose embeddings seed the prompt (repeated to fill it), or None for random."""
    init = str(method_cfg.init)
    if init == "random":
        return None
    if init == "vocab":
        return torch.randint(0, vocab_size, (int(method_cfg.num_virtual_tokens),)).tolist()
    text = str(method_cfg.init_text) if init == "text" else " ".join(task.label_names)
    ids = task.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError("method.init_text" if init == "text" else "task.label_names", text, "a text that tokenises to at least one token")
    return ids


def count_prompt(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    hidden = getattr(base.config, "hidden_size", None) or base.config.d_model  # the input embedding's width
    return int(method_cfg.num_virtual_tokens) * hidden + head_params(base)


@register("prompt_tuning", save=save_peft, load=load_peft, check=check_prompt, formula=count_prompt,
          examples=(("method.num_virtual_tokens=7",),),
          summary="P virtual-token embeddings prepended to the input (+ a new task head)",
          knobs="`num_virtual_tokens`, `init` (`random`, `text` with `init_text`, `vocab`, `labels` = the class names)",
          golden={"tiny-bert": (0.6996438503265381, 0.4479760527610779, 0.614571213722229),
                  "tiny-llama": (0.817075252532959, 1.33730947971344, 0.8478648662567139),
                  "tiny-mpnet": (0.7407529354095459, 0.7111449241638184, 0.5759872794151306),
                  "tiny-gemma3": (0.8536548018455505, 0.3031930923461914, 0.49379241466522217)})
def apply_prompt_tuning(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    from peft import PromptTuningConfig, get_peft_model

    p = int(method_cfg.num_virtual_tokens)
    config = PromptTuningConfig(task_type=_task_type(task.head), num_virtual_tokens=p,
                                num_transformer_submodules=1,  # the encoder's input only, as in Lester et al.
                                modules_to_save=head_modules(task))
    model = get_peft_model(model, config)
    embeddings = model.word_embeddings
    ids = _init_ids(method_cfg, task, embeddings.num_embeddings)
    if ids is not None:
        ids = (ids * (p // len(ids) + 1))[:p]
        with torch.no_grad():
            seed = embeddings.weight[torch.tensor(ids, device=embeddings.weight.device)]
            # Gemma scales its embeddings by sqrt(hidden) in forward; the virtual tokens skip that
            # module, so they start at the scale real tokens reach the first block with.
            seed = seed * getattr(embeddings, "embed_scale", 1.0)
            model.prompt_encoder[model.active_adapter].embedding.weight.copy_(seed)
    return model


def check_prefix(method_cfg: DictConfig, probe: Probe | None) -> None:
    int_at_least(method_cfg, "num_virtual_tokens", 1, "prefix length")
    if not isinstance(method_cfg.get("projection"), bool):
        raise ConfigError("method.projection", method_cfg.get("projection"), "true or false")
    if method_cfg.projection:
        int_at_least(method_cfg, "projection_size", 1, "hidden width of the prefix MLP")
    if probe is None:
        return
    from bench.models.heads import get_head

    if probe.family == "encoder" or (probe.family == "encoder-decoder" and not get_head(probe.head).keeps_decoder):
        where = "an encoder" if probe.family == "encoder" else "an encoder (classification uses the T5 encoder alone)"
        raise ConfigError("method", "prefix_tuning", f"a decoder or encoder-decoder model: prefix tuning prepends keys and values through the KV cache, which {probe.cfg.model.name} as {where} does not have; use prompt_tuning")
    check_length(method_cfg, probe)


def count_prefix(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    """P x layers x 2 x kv_dim (kv_dim = kv heads x head dim); with the MLP: P x kv_dim embeddings
    + kv_dim -> projection_size -> layers x 2 x kv_dim."""
    c = base.config
    layers = getattr(c, "num_hidden_layers", None) or c.num_layers
    heads = getattr(c, "num_attention_heads", None) or c.num_heads
    head_dim = getattr(c, "head_dim", None) or (getattr(c, "hidden_size", None) or c.d_model) // heads  # Gemma 3 sets its own
    kv_dim = head_dim * (getattr(c, "num_key_value_heads", None) or heads)
    p, out = int(method_cfg.num_virtual_tokens), layers * 2 * kv_dim
    if not method_cfg.projection:
        return p * out + head_params(base)
    m = int(method_cfg.projection_size)
    return p * kv_dim + (kv_dim * m + m) + (m * out + out) + head_params(base)


@register("prefix_tuning", save=save_peft, load=load_peft, check=check_prefix, formula=count_prefix,
          examples=(("method.num_virtual_tokens=7",), ("method.num_virtual_tokens=7", "method.projection=true", "method.projection_size=8")),
          refuses=("KV cache",),
          summary="P trainable key/value vectors in every attention layer (decoders, encoder-decoders)",
          knobs="`num_virtual_tokens`, `projection`, `projection_size`",
          golden={"tiny-llama": (0.9079650044441223, 0.4882161021232605, 0.6919913291931152),
                  "tiny-gemma3": (0.7363738417625427, 0.8240694999694824, 0.5412865281105042)})
def apply_prefix_tuning(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    from peft import PrefixTuningConfig, get_peft_model

    config = PrefixTuningConfig(task_type=_task_type(task.head), num_virtual_tokens=int(method_cfg.num_virtual_tokens),
                                prefix_projection=bool(method_cfg.projection),
                                encoder_hidden_size=int(method_cfg.get("projection_size") or 0) or None,
                                modules_to_save=head_modules(task))
    return get_peft_model(model, config)
