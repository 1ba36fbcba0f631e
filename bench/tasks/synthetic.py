"""Synthetic: random token ids of a fixed length, for speed and memory only (the cost curve, the
GPU benchmark). Step time and peak memory depend on shapes, not on the words, so no data is read
and a model needs no tokenizer (`model.tokenizer: null` with `source: config` keeps the config's
own vocabulary). A decoder trains on every token; an encoder-decoder encodes task.seq_len tokens
and decodes task.target_len. Its "quality" is the loss on random tokens: never a result."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig

from bench.sweep import signals as interrupts
from bench.config.schema import int_at_least
from bench.models.heads import language_head
from bench.tasks.registry import Task, register_kind

if TYPE_CHECKING:
    import torch
    from torch import nn

FIRST_ID = 3  # ids below are left out: pad/eos/bos in most vocabularies


def check(tcfg: DictConfig) -> None:
    """The synthetic keys' values (the plain checks, before torch loads)."""
    int_at_least(tcfg, "seq_len", "task.seq_len", 2, "tokens per example")
    int_at_least(tcfg, "target_len", "task.target_len", 1, "decoded tokens per example (encoder-decoders)")
    int_at_least(tcfg, "vocab_size", "task.vocab_size", FIRST_ID + 1, "token ids are drawn below it (the cost does not depend on which)")
    int_at_least(tcfg, "num_train", "task.num_train", 1, "generated training examples")
    int_at_least(tcfg, "num_eval", "task.num_eval", 1, "generated scored examples")


def _examples(n: int, task_cfg: DictConfig, family: str, rng: random.Random) -> list[dict]:
    seq_len, target_len, vocab = int(task_cfg.seq_len), int(task_cfg.target_len), int(task_cfg.vocab_size)
    feats = []
    for _ in range(n):
        ids = [rng.randrange(FIRST_ID, vocab) for _ in range(seq_len)]
        labels = ids if family == "decoder" else [rng.randrange(FIRST_ID, vocab) for _ in range(target_len)]
        feats.append({"input_ids": ids, "labels": labels})
    return feats


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Every example has the same length: no padding."""
    import torch

    ids = torch.tensor([f["input_ids"] for f in batch])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([f["labels"] for f in batch])}


def _evaluate(model: nn.Module, task: Task, eval_cfg: DictConfig, device: torch.device, progress: Any) -> dict[str, Any]:
    """The mean loss on the scored examples (random tokens: it checks the run, it ranks nothing)."""
    import torch

    model.eval()
    losses, bs = [], int(eval_cfg.batch_size)
    with torch.no_grad():
        for start in range(0, len(task.eval), bs):
            interrupts.check()
            batch = {k: v.to(device) for k, v in collate(task.eval[start : start + bs]).items()}
            losses.append(float(model(**batch).loss))
    return {"loss": sum(losses) / len(losses) if losses else None, "num_examples": len(task.eval)}


def serve(task: Task, features: list[dict], device: torch.device, max_new_tokens: int) -> Callable[[nn.Module], int]:
    """One forward pass over the batch (a cost: nothing worth generating)."""
    batch = {k: v.to(device) for k, v in collate(features).items() if k != "labels"}
    if task.family == "encoder-decoder":
        batch["decoder_input_ids"] = batch["input_ids"][:, :1]

    def forward(model: nn.Module) -> int:
        model(**batch)
        return 0

    return forward


def input_tokens(cfg: DictConfig, family: str) -> tuple[int, str, str]:
    return int(cfg.task.seq_len), "task.seq_len", "task.seq_len"


@register_kind("synthetic", families=("decoder", "encoder-decoder"),
               head_for=language_head,
               keys=frozenset({"seq_len", "target_len", "vocab_size"}), metrics=("loss",), check=check,
               fields=lambda tcfg, split: [], input_tokens=input_tokens, train_tokens=lambda cfg, family: int(cfg.task.seq_len),
               serve=serve, generates=False, reads_rows=False)
def build(task_cfg: DictConfig, train_rows: list[dict], eval_rows: list[dict], tokenizer: Any, family: str) -> Task:
    rng = random.Random(int(task_cfg.get("seed") or 0))  # the same tokens for every method and seed: only they differ
    return Task(name=task_cfg.name, kind="synthetic", head=language_head(family),
                train=_examples(int(task_cfg.num_train), task_cfg, family, rng),
                eval=_examples(int(task_cfg.num_eval), task_cfg, family, rng),
                collate=collate, evaluate=_evaluate, main_metric="loss", tokenizer=tokenizer, family=family)
