"""Summarization: a source text -> a summary, scored with ROUGE against one or more references.

Decoder-only models train on `prompt + summary + EOS` with the loss on the summary tokens only
(prompt labels are -100); encoder-decoder models encode the prompt and decode the summary.
Instruction-tuned decoders get their chat template around the prompt (task.use_chat_template).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from bench import interrupts, metrics
from bench.generate import greedy_decoder, greedy_seq2seq
from bench.tasks import Task, pad, register_kind

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


def _features(rows: list[dict], task_cfg: DictConfig, tokenizer: Any, family: str, training: bool) -> list[dict]:
    eos = tokenizer.eos_token_id
    feats = []
    for row in rows:
        prompt, truncated = _prompt_text(task_cfg, row, tokenizer, family)
        add_special = family != "decoder" or not getattr(tokenizer, "chat_template", None)
        prompt_ids = tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        feat: dict[str, Any] = {"prompt_ids": prompt_ids, "references": _references(task_cfg, row), "truncated": truncated}
        if training:
            target = " " + str(row[task_cfg.target_field]).strip() if family == "decoder" else str(row[task_cfg.target_field])
            target_ids = tokenizer(target, add_special_tokens=False)["input_ids"][: int(task_cfg.max_target_tokens)] + [eos]
            if family == "decoder":
                feat["input_ids"] = prompt_ids + target_ids
                feat["labels"] = [IGNORE] * len(prompt_ids) + target_ids
            else:
                feat["input_ids"] = prompt_ids
                feat["labels"] = target_ids
        feats.append(feat)
    return feats


def _evaluate(model: torch.nn.Module, task: Task, eval_cfg: DictConfig, device: torch.device, progress: Any) -> dict[str, Any]:
    """Greedy generation with at most eval.max_new_tokens new tokens, then ROUGE."""
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
    out_metrics: dict[str, Any] = metrics.rouge(preds, [f["references"] for f in task.eval])
    out_metrics["num_examples"] = len(preds)
    kept = int(eval_cfg.keep_predictions)
    out_metrics["examples"] = [{"prediction": p, "reference": f["references"][0]} for p, f in zip(preds[:kept], task.eval[:kept])]
    return out_metrics


@register_kind(
    "summarization",
    families=("decoder", "encoder-decoder"),
    head_for=lambda family: "causal_lm" if family == "decoder" else "seq2seq_lm",
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
        head="causal_lm" if family == "decoder" else "seq2seq_lm",
        train=_features(train_rows, task_cfg, tokenizer, family, training=True),
        eval=_features(eval_rows, task_cfg, tokenizer, family, training=False),
        collate=collate,
        evaluate=_evaluate,
        main_metric=str(task_cfg.metrics[0]),
        tokenizer=tokenizer,
        family=family,
    )
