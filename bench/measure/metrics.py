"""Quality metrics, computed offline: rouge_score for ROUGE, scikit-learn for classification.

ROUGE with several references: each metric takes the reference with the highest F-measure for
that metric (rouge_score's `score_multi`), the usual multi-reference convention.
"""

from __future__ import annotations

import re

import numpy as np

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _split_sentences(text: str) -> str:
    """rougeLsum reads sentences from newlines; split on end punctuation (nltk's punkt is not offline)."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measure (stemmer on), best reference per metric."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    from rouge_score import rouge_scorer  # imported here: config validation stays fast

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    totals = {key: 0.0 for key in ROUGE_KEYS}
    for pred, refs in zip(predictions, references):
        scores = scorer.score_multi([_split_sentences(r) for r in refs], _split_sentences(pred))
        for key in ROUGE_KEYS:
            totals[key] += scores[key].fmeasure
    n = max(len(predictions), 1)
    return {key: totals[key] / n for key in ROUGE_KEYS}


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
