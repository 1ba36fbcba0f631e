"""Summarization: a source text -> a summary, scored with ROUGE against one or more references.

Decoder-only models train on `prompt + summary + EOS` with the loss on the summary tokens only
(prompt labels are -100); encoder-decoder models encode the prompt and decode the summary.
Instruction-tuned decoders get their chat template around the prompt (task.use_chat_template).
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig

from bench.sweep import signals as interrupts

from bench.measure import metrics
from bench.errors import ConfigError
from bench.config.schema import boolean, int_at_least
from bench.models.heads import language_head
from bench.tasks.registry import Task, pad, register_kind

if TYPE_CHECKING:
    import torch
    from torch import nn

IGNORE = -100


def _prompt_text(task_cfg: DictConfig, row: dict, tokenizer: Any, family: str) -> tuple[str, bool]:
    """The prompt with the source truncated to task.max_source_tokens tokens, and whether the cut
    dropped any (the record counts truncated inputs per split)."""
    source_ids = tokenizer(str(row[task_cfg.source_field]), add_special_tokens=False, verbose=False)["input_ids"]
    limit = int(task_cfg.max_source_tokens)
    source = tokenizer.decode(source_ids[:limit])
    prompt = str(task_cfg.prompt_template).format(source=source)
    if family == "decoder" and task_cfg.use_chat_template and getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return prompt, len(source_ids) > limit


def _references(task_cfg: DictConfig, row: dict) -> list[str]:
    """Every reference of an eval row; a row with none of task.reference_fields (a validation row
    carved from the training file, which has only the training target) is scored against its target."""
    fields = list(task_cfg.reference_fields) if task_cfg.get("reference_fields") else []
    refs = [str(row[f]) for f in fields if row.get(f)]
    target = row.get(task_cfg.target_field)
    return refs or ([str(target)] if target else [])


def _target_ids(text: str, task_cfg: DictConfig, tokenizer: Any, family: str) -> list[int]:
    """A summary as the model is trained to write it: after a space (a decoder continues its
    prompt), at most task.max_target_tokens tokens, then EOS."""
    target = " " + text.strip() if family == "decoder" else text
    return tokenizer(target, add_special_tokens=False)["input_ids"][: int(task_cfg.max_target_tokens)] + [tokenizer.eos_token_id]


def _features(rows: list[dict], task_cfg: DictConfig, tokenizer: Any, family: str, training: bool) -> list[dict]:
    feats = []
    for row in rows:
        prompt, truncated = _prompt_text(task_cfg, row, tokenizer, family)
        add_special = family != "decoder" or not getattr(tokenizer, "chat_template", None)
        prompt_ids = tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        references = _references(task_cfg, row)
        feat: dict[str, Any] = {"prompt_ids": prompt_ids, "references": references, "truncated": truncated}
        if not training and references:  # the first reference, tokenized as a training target: what the loss score reads
            feat["target_ids"] = _target_ids(references[0], task_cfg, tokenizer, family)
        if training:
            target_ids = _target_ids(str(row[task_cfg.target_field]), task_cfg, tokenizer, family)
            if family == "decoder":
                feat["input_ids"] = prompt_ids + target_ids
                feat["labels"] = [IGNORE] * len(prompt_ids) + target_ids
            else:
                feat["input_ids"] = prompt_ids
                feat["labels"] = target_ids
        feats.append(feat)
    return feats


def _reference_losses(model: torch.nn.Module, task: Task, device: torch.device, progress: Any) -> list[float] | None:
    """Each eval row's mean loss (cross-entropy, nats) per token of its first reference, teacher-forced
    as in training (the prompt's labels ignored): one forward pass a row, no generation. One row at a
    time, so every method's forward (prompt and prefix tuning's virtual tokens too) computes it the
    way it computes the training loss. None when a row has no reference."""
    import torch

    if not task.eval or any("target_ids" not in f for f in task.eval):
        return None
    model.eval()
    losses = []
    bar = progress(total=len(task.eval), desc="loss")
    with torch.no_grad():
        for f in task.eval:
            interrupts.check()
            prompt, target = f["prompt_ids"], f["target_ids"]
            ids, labels = (prompt + target, [IGNORE] * len(prompt) + target) if task.family == "decoder" else (prompt, target)
            batch = {"input_ids": torch.tensor([ids], device=device), "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
                     "labels": torch.tensor([labels], device=device)}
            losses.append(float(model(**batch).loss))
            bar.update(1)
    bar.close()
    return losses


def _score_loss(model: torch.nn.Module, task: Task, eval_cfg: DictConfig, device: torch.device, progress: Any) -> dict[str, Any]:
    """A tuning trial's cheap score (validation.score=loss): the mean reference loss, without generating."""
    losses = _reference_losses(model, task, device, progress) or []
    return {"loss": sum(losses) / max(len(losses), 1), "num_examples": len(losses), "per_example": {"loss": [round(x, 5) for x in losses]}}


def _evaluate(model: torch.nn.Module, task: Task, eval_cfg: DictConfig, device: torch.device, progress: Any) -> dict[str, Any]:
    """Greedy generation with at most eval.max_new_tokens new tokens, then ROUGE; beside it the mean
    loss per reference token (`loss`: one forward pass a row), the score a trial may be chosen by."""
    import torch

    from bench.run.generate import greedy_decoder, greedy_seq2seq

    model.eval()
    tokenizer, family = task.tokenizer, task.family
    order = sorted(range(len(task.eval)), key=lambda i: len(task.eval[i]["prompt_ids"]))  # less padding
    predictions: dict[int, str] = {}
    bs = int(eval_cfg.batch_size)
    bar = progress(total=len(order), desc="generate")
    with torch.no_grad():
        for start in range(0, len(order), bs):
            interrupts.check()
            idx = order[start : start + bs]
            prompts = [task.eval[i]["prompt_ids"] for i in idx]
            left = family == "decoder"  # decoders continue from the right edge
            ids = pad(prompts, tokenizer.pad_token_id, left=left).to(device)
            mask = pad([[1] * len(p) for p in prompts], 0, left=left).to(device)
            decode = greedy_decoder if left else greedy_seq2seq
            new = decode(model, ids, mask, int(eval_cfg.max_new_tokens), tokenizer.eos_token_id, tokenizer.pad_token_id)
            for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                predictions[i] = text.strip()
            bar.update(len(idx))
    bar.close()
    preds = [predictions[i] for i in range(len(task.eval))]
    each = metrics.rouge_per_example(preds, [f["references"] for f in task.eval])
    out_metrics: dict[str, Any] = {key: sum(v) / max(len(v), 1) for key, v in each.items()}  # metrics.rouge, from the same scores
    losses = _reference_losses(model, task, device, progress)
    if losses is not None:
        out_metrics["loss"] = sum(losses) / max(len(losses), 1)
        each["loss"] = losses
    out_metrics["num_examples"] = len(preds)
    out_metrics["per_example"] = {key: [round(x, 5) for x in v] for key, v in each.items()}  # for the paired comparisons (bench.measure.significance)
    kept = int(eval_cfg.keep_predictions)
    out_metrics["examples"] = [{"prediction": p, "reference": f["references"][0]} for p, f in zip(preds[:kept], task.eval[:kept])]
    return out_metrics


PLACEHOLDERS = ("source",)  # what this kind fills into task.prompt_template


def check(tcfg: DictConfig) -> None:
    """The summarization keys' values (the plain checks, before torch loads)."""
    int_at_least(tcfg, "max_source_tokens", "task.max_source_tokens", 1, "source tokens kept")
    int_at_least(tcfg, "max_target_tokens", "task.max_target_tokens", 1, "summary tokens trained on")
    boolean(tcfg, "use_chat_template", "task.use_chat_template")
    check_template(tcfg)


def check_template(tcfg: DictConfig) -> None:
    """task.prompt_template may use only the placeholders this kind fills in, and must use them."""
    template = tcfg.get("prompt_template")
    placeholders = "{" + "}, {".join(PLACEHOLDERS) + "}"
    if not isinstance(template, str):
        raise ConfigError("task.prompt_template", template, f"a text with {placeholders}")
    try:
        used = {re.split(r"[.\[!:]", name)[0] for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError("task.prompt_template", template, f"a format string ({exc}); write a literal brace as {{{{ or }}}}") from None
    unknown = sorted(used - set(PLACEHOLDERS))
    if unknown:
        raise ConfigError("task.prompt_template", template, f"a text whose placeholders are {placeholders} only (what the summarization "
                          f"kind fills in); it has {{{unknown[0]}}}")
    if set(PLACEHOLDERS) - used:
        raise ConfigError("task.prompt_template", template, f"a text containing {placeholders} (where the source text goes)")


def fields(tcfg: DictConfig, split: str) -> list[tuple[str, str]]:
    """(config key, field name) a row must hold: the source; the target to train on; the references to score against."""
    wanted = [("task.source_field", str(tcfg.source_field))]
    if split == "train":
        wanted.append(("task.target_field", str(tcfg.target_field)))
    elif tcfg.get("reference_fields"):
        wanted += [("task.reference_fields", str(f)) for f in tcfg.reference_fields]
    return wanted


def input_tokens(cfg: DictConfig, family: str) -> tuple[int, str, str]:
    """A decoder reads the prompt and writes the summary in one sequence (the longer of the trained
    summary + EOS and the generated one); an encoder reads the source alone."""
    task = cfg.task
    if family == "decoder":
        longest = int(task.max_source_tokens) + max(int(task.max_target_tokens) + 1, int(cfg.eval.max_new_tokens))
        return longest, "task.max_source_tokens + the longer of task.max_target_tokens + 1 and eval.max_new_tokens", "task.max_source_tokens"
    return int(task.max_source_tokens), "task.max_source_tokens", "task.max_source_tokens"


def train_tokens(cfg: DictConfig, family: str) -> int:
    """The longest training sequence: prompt + summary + EOS for a decoder, the source for an encoder."""
    task = cfg.task
    if family == "decoder":
        return int(task.max_source_tokens) + int(task.max_target_tokens) + 1
    return int(task.max_source_tokens)


def serve(task: Task, features: list[dict], device: torch.device, max_new_tokens: int) -> Callable[[nn.Module], int]:
    """Greedy generation of exactly max_new_tokens per example (EOS never stops it early), so every
    variant served generates the same tokens."""
    from bench.run.generate import greedy_decoder, greedy_seq2seq

    tok, left = task.tokenizer, task.family == "decoder"
    prompts = [f["prompt_ids"] for f in features]
    ids = pad(prompts, tok.pad_token_id, left=left).to(device)
    mask = pad([[1] * len(p) for p in prompts], 0, left=left).to(device)
    decode = greedy_decoder if left else greedy_seq2seq

    def generate(model: nn.Module) -> int:
        decode(model, ids, mask, max_new_tokens, -1, tok.pad_token_id)
        return ids.shape[0] * max_new_tokens

    return generate


def score_batch(task: Task, features: list[dict]) -> dict[str, torch.Tensor]:
    """The served prompts with their own tokens as labels (eval features hold no summary tokens):
    the merged and the unmerged model are compared on the same outputs and loss."""
    left = task.family == "decoder"
    prompts = [f["prompt_ids"] for f in features]
    ids = pad(prompts, task.tokenizer.pad_token_id, left=left)
    mask = pad([[1] * len(p) for p in prompts], 0, left=left)
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, IGNORE)}


@register_kind(
    "summarization",
    families=("decoder", "encoder-decoder"),
    head_for=language_head,
    keys=frozenset({"source_field", "target_field", "reference_fields", "prompt_template", "use_chat_template",
                    "max_source_tokens", "max_target_tokens"}),
    metrics=("rouge1", "rouge2", "rougeL", "rougeLsum"), check=check, fields=fields,
    input_tokens=input_tokens, train_tokens=train_tokens, serve=serve, generates=True, score_batch=score_batch, scores_loss=True,
)
def build(task_cfg: DictConfig, train_rows: list[dict], eval_rows: list[dict], tokenizer: Any, family: str) -> Task:
    pad_id = tokenizer.pad_token_id

    def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        ids = pad([f["input_ids"] for f in batch], pad_id)
        return {
            "input_ids": ids,
            "attention_mask": pad([[1] * len(f["input_ids"]) for f in batch], 0),
            "labels": pad([f["labels"] for f in batch], IGNORE),
        }

    return Task(
        name=task_cfg.name,
        kind="summarization",
        head=language_head(family),
        train=_features(train_rows, task_cfg, tokenizer, family, training=True),
        eval=_features(eval_rows, task_cfg, tokenizer, family, training=False),
        collate=collate,
        evaluate=_evaluate,
        score_loss=_score_loss,
        main_metric=str(task_cfg.metrics[0]),
        tokenizer=tokenizer,
        family=family,
    )
