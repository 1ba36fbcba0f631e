"""Classification: one or two text fields -> a label, scored with accuracy, macro-F1 and MCC."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.sweep import signals as interrupts

from bench.measure import metrics
from bench.errors import ConfigError
from bench.config.schema import int_at_least
from bench.models.heads import CLASSIFIER
from bench.tasks.registry import Task, pad, register_kind
from bench.tasks.data import label_key

if TYPE_CHECKING:
    import torch
    from torch import nn


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
    """Batched forward passes, argmax, then the metrics over every evaluated example; beside them the
    mean cross-entropy of the gold labels (`loss`, from the same logits), which ranks rates that
    have not yet left the class prior (every row one class) by how far they have moved towards the
    labels: the score of a trial with validation.score=loss."""
    import torch
    import torch.nn.functional as F

    model.eval()
    preds = [0] * len(task.eval)
    losses = [0.0] * len(task.eval)
    order = sorted(range(len(task.eval)), key=lambda i: len(task.eval[i]["input_ids"]))  # similar lengths per batch: little padding
    bs = int(eval_cfg.batch_size)
    bar = progress(total=len(task.eval), desc="eval")
    with torch.no_grad():
        for start in range(0, len(order), bs):
            interrupts.check()
            idx = order[start : start + bs]
            batch = {k: v.to(device) for k, v in task.collate([task.eval[i] for i in idx]).items() if k != "labels"}
            gold_ids = torch.tensor([task.eval[i]["label"] for i in idx], device=device)
            logits = model(**batch).logits
            each = F.cross_entropy(logits.float(), gold_ids, reduction="none").tolist()
            for i, pred, loss in zip(idx, logits.argmax(-1).tolist(), each):
                preds[i], losses[i] = pred, loss
            bar.update(len(idx))
    bar.close()
    gold = [f["label"] for f in task.eval]
    out: dict[str, Any] = metrics.classification(preds, gold, task.num_labels)
    out["loss"] = sum(losses) / max(len(losses), 1)
    out["num_examples"] = len(gold)
    out["per_example"] = {"predictions": [int(p) for p in preds], "references": [int(g) for g in gold],  # for the paired comparisons (bench.measure.significance)
                          "loss": [round(x, 5) for x in losses]}
    kept = range(min(int(eval_cfg.keep_predictions), len(gold)))
    out["examples"] = [{"input": task.tokenizer.decode(task.eval[i]["input_ids"], skip_special_tokens=True),
                        "prediction": task.label_names[preds[i]], "reference": task.label_names[gold[i]]} for i in kept]
    return out


def check(tcfg: DictConfig) -> None:
    """The classification keys' values (the plain checks, before torch loads)."""
    fields = tcfg.get("text_fields")
    if not isinstance(fields, ListConfig) or not 1 <= len(fields) <= 2:
        raise ConfigError("task.text_fields", fields, "a list of one or two field names (two are encoded as a pair)")
    labels = tcfg.get("labels")
    if not isinstance(labels, ListConfig) or len(labels) < 2 or len({str(x) for x in labels}) != len(labels):
        raise ConfigError("task.labels", labels, "a list of at least two distinct raw label values, in class-id order")
    names = tcfg.get("label_names")
    if names is not None and (not isinstance(names, ListConfig) or len(names) != len(labels)):
        raise ConfigError("task.label_names", names, f"null or one name per label ({len(labels)})")
    int_at_least(tcfg, "max_length", "task.max_length", 1, "tokens per example")


def fields(tcfg: DictConfig, split: str) -> list[tuple[str, str]]:
    """(config key, field name) of every field a row must hold: the text fields and the label."""
    return [("task.text_fields", str(f)) for f in tcfg.text_fields] + [("task.label_field", str(tcfg.label_field))]


def row_check(tcfg: DictConfig) -> Callable[[dict], tuple[str, Any, str, str] | None]:
    """A row's label must be one of task.labels, matched as the run matches them (data.label_key).
    The check returns (config key, its value, what is valid, what the row has), or None."""
    label_field = str(tcfg.label_field)  # read once: OmegaConf access is slow per row
    labels = {label_key(x) for x in tcfg.labels}
    listed = OmegaConf.to_container(tcfg.labels)

    def problem(row: dict) -> tuple[str, Any, str, str] | None:
        raw = row[label_field]
        if label_key(raw) in labels:
            return None
        hint = f" (a JSON {'true' if raw else 'false'}: labels: [false, true])" if isinstance(raw, bool) else ""
        return "task.labels", listed, f"a list of every value of {label_field!r}", f"{raw!r}{hint}"

    return problem


def input_tokens(cfg: DictConfig, family: str) -> tuple[int, str, str]:
    """Every input is cut to task.max_length tokens."""
    return int(cfg.task.max_length), "task.max_length", "task.max_length"


def serve(task: Task, features: list[dict], device: torch.device, max_new_tokens: int) -> Callable[[nn.Module], int]:
    """One forward pass over the batch (nothing is generated)."""
    batch = {k: v.to(device) for k, v in task.collate(features).items() if k != "labels"}

    def classify(model: nn.Module) -> int:
        model(**batch)
        return 0

    return classify


@register_kind("classification", families=("encoder", "decoder", "encoder-decoder"), head_for=lambda family: CLASSIFIER.name,
               keys=frozenset({"text_fields", "label_field", "labels", "label_names", "max_length"}),
               metrics=("accuracy", "f1", "mcc"), check=check, fields=fields, row_check=row_check,
               input_tokens=input_tokens, train_tokens=lambda cfg, family: int(cfg.task.max_length), serve=serve, generates=False,
               scores_loss=True)
def build(task_cfg: DictConfig, train_rows: list[dict], eval_rows: list[dict], tokenizer: Any, family: str) -> Task:
    pad_id = tokenizer.pad_token_id

    def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        import torch

        ids = pad([f["input_ids"] for f in batch], pad_id)
        mask = pad([[1] * len(f["input_ids"]) for f in batch], 0)
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["label"] for f in batch])}

    return Task(
        name=task_cfg.name,
        kind="classification",
        head=CLASSIFIER.name,
        train=_features(train_rows, task_cfg, tokenizer),
        eval=_features(eval_rows, task_cfg, tokenizer),
        collate=collate,
        evaluate=_evaluate,
        score_loss=_evaluate,  # the loss comes from the same forward pass as the labels
        main_metric=str(task_cfg.metrics[0]),
        tokenizer=tokenizer,
        family=family,
        num_labels=len(task_cfg.labels),
        label_names=[str(x) for x in task_cfg.get("label_names") or task_cfg.labels],
    )
