"""Forgetting: how much fine-tuning changed what the model already did, on a fixed general-text
sample scored before the method is applied and after training, as the model would be served
(adapter, soft prompt or prefix active; the base weights themselves change only under full and
selective fine-tuning).

- Language models (decoders, encoder-decoders): the mean token loss (negative log-likelihood) on
  the sample. Decoders score each chunk as plain text; encoder-decoders decode each chunk's second
  half from its first half. Higher after = forgotten.
- Classifiers (a new head on a backbone): a language-modelling loss does not apply (there is no LM
  head). We record representation drift instead: the mean cosine similarity between the pooled
  representations of the sample's sentences before and after (1.0 = unchanged).

The default sample (bench/data/general_text.txt, ~600 words written for this project) covers
everyday topics far from the benchmark tasks, so a change in its score is a change in general
ability, not task skill; it ships with the package, so every run can score it offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from bench.models.heads import get_head

DEFAULT_TEXT = Path(__file__).resolve().parents[1] / "data" / "general_text.txt"


def sample_chunks(fcfg: DictConfig, tokenizer: Any) -> list[list[int]]:
    """The sample as token chunks of at most forgetting.max_tokens, at most forgetting.max_chunks."""
    text = Path(str(fcfg.text)).expanduser().read_text() if fcfg.get("text") else DEFAULT_TEXT.read_text()
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    size = int(fcfg.max_tokens)
    chunks = [tokenizer(p, add_special_tokens=False)["input_ids"][:size] for p in paragraphs]
    return [c for c in chunks if len(c) >= 4][: int(fcfg.max_chunks)]


def _head_input(model: nn.Module) -> nn.Module:
    """The classification head (possibly wrapped by peft): its input is the pooled representation."""
    heads = [m for n, m in model.named_modules() if n == "head" or n.endswith(".head")]
    return heads[0]


@torch.no_grad()
def score(model: nn.Module, head: str, chunks: list[list[int]], device: torch.device) -> Any:
    """LM heads: the mean token loss over the chunks. Classifiers: the pooled vectors (a tensor)."""
    model.eval()
    spec = get_head(head)
    if not spec.is_lm:
        pooled: list[torch.Tensor] = []
        hook = _head_input(model).register_forward_hook(lambda m, args, out: pooled.append(args[0].detach().float().cpu()))
        try:
            for ids in chunks:
                x = torch.tensor([ids], device=device)
                model(input_ids=x, attention_mask=torch.ones_like(x))
        finally:
            hook.remove()
        return torch.cat(pooled)
    losses, weights = [], []
    for ids in chunks:
        source, target = spec.lm_batch(ids)  # causal: the chunk as input and labels; seq2seq: its second half from its first
        x, y = torch.tensor([source], device=device), torch.tensor([target], device=device)
        out = model(input_ids=x, attention_mask=torch.ones_like(x), labels=y)
        n = spec.scored_tokens(target)
        losses.append(float(out.loss) * n)
        weights.append(n)
    return sum(losses) / sum(weights)


def compare(head: str, before: Any, after: Any, chunks: list[list[int]], fcfg: DictConfig) -> dict[str, Any]:
    sample = {"source": str(fcfg.text) if fcfg.get("text") else "embedded general text (bench/data/general_text.txt)",
              "chunks": len(chunks), "tokens": sum(len(c) for c in chunks)}
    if get_head(head).forgetting_measure == "representation_cosine":
        cosine = float(torch.nn.functional.cosine_similarity(before, after, dim=-1).mean())
        return {"measure": "representation_cosine", "applies": "representation drift (no LM head on a classifier)",
                "before": 1.0, "after": cosine, "delta": cosine - 1.0, "sample": sample}
    return {"measure": "lm_loss", "applies": "language-modelling loss on general text",
            "before": before, "after": after, "delta": after - before, "sample": sample}
