"""Quality metrics, computed offline: rouge_score for ROUGE, scikit-learn for classification.

ROUGE with several references: each metric takes the reference with the highest F-measure for
that metric (rouge_score's `score_multi`), the usual multi-reference convention.

`METRICS` is the registry of every metric a task may name (`task.metrics`; the first is the run's
main metric), each with its direction: whatever compares scores (the tuning stage's choice of the
lr and Optuna's direction, the Pareto fronts, the report's gaps and reference lines) asks
`higher_is_better` / `better` / `direction` here instead of assuming higher is better. A new
metric is one `register_metric(Metric(...))`. Torch-free, so the plain config checks read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    what: str = ""  # one line: what it measures


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is registered twice")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric; a ValueError naming the registered ones otherwise."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}: one of {', '.join(METRICS)}")
    return METRICS[name]


def higher_is_better(name: str, default: bool | None = None) -> bool:
    """The metric's direction. An unregistered name raises, unless `default` is given (the report
    reading a record whose main metric this version does not register)."""
    if name not in METRICS and default is not None:
        return default
    return get_metric(name).higher_is_better


def direction(name: str) -> str:
    """Optuna's study direction for the metric: "maximize" or "minimize"."""
    return "maximize" if higher_is_better(name) else "minimize"


def goodness(name: str, value: float) -> float:
    """The value oriented so that larger is better (the value, or its negative for a lower-is-better metric)."""
    return value if higher_is_better(name) else -value


def better(name: str, a: float, b: float) -> bool:
    """Whether score a is strictly better than score b on this metric."""
    return goodness(name, a) > goodness(name, b)


def best(name: str, values: Iterable[float]) -> float:
    """The best of the values on this metric (max or min)."""
    return (max if higher_is_better(name) else min)(values)


for _metric in (
    Metric("accuracy", True, "share of examples labelled right"),
    Metric("f1", True, "macro F1 over every class"),
    Metric("mcc", True, "Matthews correlation (CoLA's metric), 0 = chance"),
    Metric("rouge1", True, "ROUGE-1 F-measure (unigram overlap)"),
    Metric("rouge2", True, "ROUGE-2 F-measure (bigram overlap)"),
    Metric("rougeL", True, "ROUGE-L F-measure (longest common subsequence)"),
    Metric("rougeLsum", True, "ROUGE-Lsum F-measure (summary-level LCS over sentences)"),
    Metric("loss", False, "mean token loss (cross-entropy) on the eval split"),
):
    register_metric(_metric)

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _split_sentences(text: str) -> str:
    """rougeLsum reads sentences from newlines; split on end punctuation (nltk's punkt is not offline)."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measure (stemmer on), best reference per metric."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    each = rouge_per_example(predictions, references)
    n = max(len(predictions), 1)
    return {key: sum(each[key]) / n for key in ROUGE_KEYS}


def rouge_per_example(predictions: list[str], references: list[list[str]]) -> dict[str, list[float]]:
    """Each example's ROUGE-1/2/L/Lsum F-measure (the paired comparisons resample them: bench.measure.significance)."""
    from rouge_score import rouge_scorer  # imported here: config validation stays fast

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    out: dict[str, list[float]] = {key: [] for key in ROUGE_KEYS}
    for pred, refs in zip(predictions, references):
        scores = scorer.score_multi([_split_sentences(r) for r in refs], _split_sentences(pred))
        for key in ROUGE_KEYS:
            out[key].append(scores[key].fmeasure)
    return out


def classification(predictions: list[int], labels: list[int], num_labels: int) -> dict[str, float | int | bool]:
    """Accuracy, macro-F1 over all classes, and Matthews correlation (CoLA's metric), with what a
    collapsed run looks like beside them: the majority-class share of the scored labels (the
    accuracy of always predicting the most frequent label), how many distinct labels were
    predicted, and whether one label was predicted for every example (a run that learned only
    the class prior scores the majority share and MCC 0, which would otherwise pass for a gain)."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # imported here: validation stays fast

    preds, gold = np.asarray(predictions), np.asarray(labels)
    predicted = len(set(preds.tolist()))
    return {
        "accuracy": float(accuracy_score(gold, preds)),
        "f1": float(f1_score(gold, preds, average="macro", labels=list(range(num_labels)), zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, preds)),
        "majority_baseline": float(np.bincount(gold).max() / len(gold)) if len(gold) else 0.0,
        "predicted_classes": predicted,
        "constant_predictions": predicted == 1,
    }
