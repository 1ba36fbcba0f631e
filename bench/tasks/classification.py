"""Classification: one or two text fields -> a label, scored with accuracy, macro-F1 and MCC."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from bench import interrupts, metrics
from bench.errors import ConfigError
from bench.tasks import Task, pad, register_kind
from bench.tasks.data import label_key


def _label_ids(task_cfg: DictConfig) -> dict[str, int]:
    return {label_key(raw): i for i, raw in enumerate(task_cfg.labels)}


def _features(rows: list[dict], task_cfg: DictConfig, tokenizer: Any) -> list[dict]:
    """input_ids cut to task.max_length, the label's index, and whether the cut dropped tokens
    (the record counts truncated inputs per split)."""
    if not rows:
        return []
    ids = _label_ids(task_cfg)
    fields = list(task_cfg.text_fields)
    texts = [[str(r[f]) for r in rows] for f in fields]
    limit = int(task_cfg.max_length)
    enc = tokenizer(*texts, truncation=True, max_length=limit)
    # Only an input cut to exactly the limit can have been truncated: tokenise those again, uncut.
    full = [i for i, seq in enumerate(enc["input_ids"]) if len(seq) >= limit]
    uncut = tokenizer(*[[t[i] for i in full] for t in texts], verbose=False)["input_ids"] if full else []
    truncated = {i for i, seq in zip(full, uncut) if len(seq) > limit}
    feats = []
    for i, row in enumerate(rows):
        raw = label_key(row[task_cfg.label_field])
        if raw not in ids:
            raise ConfigError("task.labels", list(task_cfg.labels), f"must list every label in the data; saw {row[task_cfg.label_field]!r}")
        feats.append({"input_ids": enc["input_ids"][i], "label": ids[raw], "truncated": i in truncated})
    return feats


def _evaluate(model: torch.nn.Module, task: Task, eval_cfg: DictConfig, device: torch.device, progress: Any) -> dict[str, Any]:
    """Batched forward passes, argmax, then the metrics over every evaluated example."""
    model.eval()
    preds = [0] * len(task.eval)
    order = sorted(range(len(task.eval)), key=lambda i: len(task.eval[i]["input_ids"]))  # similar lengths per batch: little padding
    bs = int(eval_cfg.batch_size)
    bar = progress(total=len(task.eval), desc="eval")
    with torch.no_grad():
        for start in range(0, len(order), bs):
            interrupts.check()
            idx = order[start : start + bs]
            batch = {k: v.to(device) for k, v in task.collate([task.eval[i] for i in idx]).items() if k != "labels"}
            for i, pred in zip(idx, model(**batch).logits.argmax(-1).tolist()):
                preds[i] = pred
            bar.update(len(idx))
    bar.close()
    gold = [f["label"] for f in task.eval]
    out: dict[str, Any] = metrics.classification(preds, gold, task.num_labels)
    out["num_examples"] = len(gold)
    kept = range(min(int(eval_cfg.keep_predictions), len(gold)))
    out["examples"] = [{"input": task.tokenizer.decode(task.eval[i]["input_ids"], skip_special_tokens=True),
                        "prediction": task.label_names[preds[i]], "reference": task.label_names[gold[i]]} for i in kept]
    return out


@register_kind("classification", families=("encoder", "decoder", "encoder-decoder"), head_for=lambda family: "classifier")
def build(task_cfg: DictConfig, train_rows: list[dict], eval_rows: list[dict], tokenizer: Any, family: str) -> Task:
    pad_id = tokenizer.pad_token_id

    def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        ids = pad([f["input_ids"] for f in batch], pad_id)
        mask = pad([[1] * len(f["input_ids"]) for f in batch], 0)
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["label"] for f in batch])}

    return Task(
        name=task_cfg.name,
        kind="classification",
        head="classifier",
        train=_features(train_rows, task_cfg, tokenizer),
        eval=_features(eval_rows, task_cfg, tokenizer),
        collate=collate,
        evaluate=_evaluate,
        main_metric=str(task_cfg.metrics[0]),
        tokenizer=tokenizer,
        family=family,
        num_labels=len(task_cfg.labels),
        label_names=[str(x) for x in task_cfg.get("label_names") or task_cfg.labels],
    )
