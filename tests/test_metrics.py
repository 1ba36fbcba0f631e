"""Metrics equal values computed by hand."""

import math

import pytest

from bench.measure import metrics


def test_rouge_single_reference_by_hand():
    # pred unigrams {the, cat, sat}; ref "the cat sat on the mat" has 6 unigrams, 3 matched.
    # rouge1: P = 3/3, R = 3/6 -> F = 2/3. rouge2: pred bigrams 2 (both in ref), ref bigrams 5 -> F = 2*1*0.4/1.4.
    scores = metrics.rouge(["the cat sat"], [["the cat sat on the mat"]])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(2 * 0.4 / 1.4)
    assert scores["rougeL"] == pytest.approx(2 / 3)  # LCS = 3 tokens, same as rouge1 here


def test_rouge_takes_best_reference_per_metric_and_stems():
    # "cats" stems to "cat": a perfect match with the second reference.
    scores = metrics.rouge(["cats sat"], [["a dog barked loudly", "cat sat"]])
    assert scores["rouge1"] == pytest.approx(1.0)
    assert scores["rougeLsum"] == pytest.approx(1.0)


def test_rouge_mean_over_examples():
    scores = metrics.rouge(["a b", "x"], [["a b"], ["y"]])
    assert scores["rouge1"] == pytest.approx(0.5)


def test_rouge_lsum_uses_sentence_split():
    # Two sentences in swapped order: rougeL (one sequence) < rougeLsum (union LCS per sentence).
    scores = metrics.rouge(["he left. she stayed."], [["she stayed. he left."]])
    assert scores["rougeLsum"] == pytest.approx(1.0)
    assert scores["rougeL"] < 1.0


def test_classification_by_hand():
    # preds/gold: tp=2, tn=1, fp=1, fn=0
    out = metrics.classification([1, 0, 1, 1], [1, 0, 0, 1], num_labels=2)
    assert out["accuracy"] == pytest.approx(0.75)
    # class 1: P=2/3 R=1 F=0.8; class 0: P=1 R=1/2 F=2/3; macro = 0.7333
    assert out["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert out["mcc"] == pytest.approx((2 * 1 - 1 * 0) / math.sqrt(3 * 2 * 1 * 2))


def test_rouge_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        metrics.rouge(["a", "b"], [["a"]])


def test_classification_eval_batches_by_length_yet_scores_each_example_against_its_own_label():
    """Eval sorts examples by length to pad little; each prediction must still land on its example."""
    import random
    from types import SimpleNamespace

    import torch

    from bench.tasks.classification import _evaluate

    class FirstTokenParity(torch.nn.Module):  # predicts the parity of each row's first token
        def forward(self, input_ids, attention_mask):
            return SimpleNamespace(logits=torch.nn.functional.one_hot(input_ids[:, 0] % 2, 2).float())

    rng = random.Random(0)
    feats = []
    for _ in range(101):
        first = rng.randint(1, 9)
        feats.append({"input_ids": [first] + [5] * rng.randint(0, 40), "label": first % 2})
    collate = lambda batch: {"input_ids": torch.tensor([f["input_ids"] + [0] * (41 - len(f["input_ids"])) for f in batch]),  # noqa: E731
                             "attention_mask": torch.ones(len(batch), 41, dtype=torch.long)}
    task = SimpleNamespace(eval=feats, collate=collate, num_labels=2)
    progress = lambda total, desc: SimpleNamespace(update=lambda n: None, close=lambda: None)  # noqa: E731
    out = _evaluate(FirstTokenParity(), task, SimpleNamespace(batch_size=8, keep_predictions=0), torch.device("cpu"), progress)
    assert out["accuracy"] == 1.0 and out["num_examples"] == 101
    right, wrong = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]), reduction="none").tolist()
    assert out["per_example"]["loss"] == pytest.approx([right] * 101, abs=1e-5) and out["loss"] == pytest.approx(right)  # each row's own label
