"""Greedy generation that is right and fast for every method.

Decoders use our own loop: a soft prompt's virtual tokens (prompt tuning) or keys/values (prefix
tuning) go in once with the input, and every later step feeds one token and reuses the KV cache.
Why not `generate()`: with peft 0.21.2 and transformers 5.24, cached `generate()` on a prompt-tuned
decoder returns wrong tokens at 2.25x the base model's time per token (docs/architecture.md, facts). Positions count
real tokens only (from the attention mask), as in training, so left padding changes nothing.
Encoder-decoders use the same kind of loop: the model's own first forward (soft prompt or prefix
included), then the decoder's KV cache with the encoder output kept.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def soft_prompt(model: nn.Module) -> tuple[nn.Module, str, int]:
    """(the module to call, "prompt" | "prefix" | "" for none, number of virtual tokens)."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not config.is_prompt_learning:
        return model, "", 0
    kind = "prefix" if str(config.peft_type.value) == "PREFIX_TUNING" else "prompt"
    return model.get_base_model(), kind, int(config.num_virtual_tokens)


def _first_pass(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, use_cache: bool) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Run the whole input (with any soft prompt); returns (output, full mask, last positions)."""
    base, kind, p = soft_prompt(model)
    batch = ids.shape[0]
    full_mask = torch.cat([mask.new_ones(batch, p), mask], 1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)  # real tokens count; left pads do not
    common = {"attention_mask": full_mask, "use_cache": use_cache, "logits_to_keep": 1}
    if kind == "prompt":
        embeds = model.word_embeddings(ids)
        embeds = torch.cat([model.get_prompt(batch_size=batch).to(embeds.dtype), embeds], 1)
        out = base(inputs_embeds=embeds, position_ids=positions, **common)
    elif kind == "prefix":
        out = base(input_ids=ids, position_ids=positions[:, p:], past_key_values=model.get_prompt(batch), **common)
    else:
        out = base(input_ids=ids, position_ids=positions, **common)
    return out, full_mask, positions[:, -1]


@torch.no_grad()
def greedy_decoder(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                   eos_id: int, pad_id: int, use_cache: bool = True) -> torch.Tensor:
    """New token ids (batch, <= max_new_tokens) for left-padded prompts; pad after each EOS.
    use_cache=False recomputes the whole sequence every step: the reference the tests compare to."""
    base, _, _ = soft_prompt(model)
    out, full_mask, last = _first_pass(model, ids, mask, use_cache)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        new.append(token)
        done |= token == eos_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        if use_cache:
            full_mask = torch.cat([full_mask, full_mask.new_ones(ids.shape[0], 1)], 1)
            last = last + 1
            out = base(input_ids=token[:, None], attention_mask=full_mask, position_ids=last[:, None],
                       past_key_values=out.past_key_values, use_cache=True)
        else:
            so_far = torch.stack(new, 1)
            out, _, _ = _first_pass(model, torch.cat([ids, so_far], 1), torch.cat([mask, torch.ones_like(so_far)], 1), False)
    return torch.stack(new, 1)


@torch.no_grad()
def greedy_seq2seq(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                   eos_id: int, pad_id: int, use_cache: bool = True) -> torch.Tensor:
    """Decoder token ids (batch, <= max_new_tokens + 1, starting with the decoder start token).
    The first step is the model's own forward (soft prompt or prefix included, as in training);
    later steps reuse the encoder output and the decoder's KV cache. use_cache=False recomputes
    the full forward every step: the reference."""
    base, kind, p = soft_prompt(model)
    start = base.config.decoder_start_token_id
    decoded = torch.full((ids.shape[0], 1), start, dtype=ids.dtype, device=ids.device)
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoded, use_cache=use_cache)
    encoder = (out.encoder_last_hidden_state,)
    cross_mask = torch.cat([mask.new_ones(ids.shape[0], p), mask], 1) if kind == "prompt" else mask
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for step in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        decoded = torch.cat([decoded, token[:, None]], 1)
        done |= token == eos_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        if use_cache:
            out = base(encoder_outputs=encoder, attention_mask=cross_mask, decoder_input_ids=token[:, None],
                       past_key_values=out.past_key_values, use_cache=True)
        else:
            out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoded, use_cache=False)
    return decoded
