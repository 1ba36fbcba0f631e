"""Which differences between methods are real: paired comparisons over seeds and examples (the
statistics; bench/report/paired.py writes them into the report and draws the diagram).

Why paired: two methods' runs of one point share the evaluation examples and the seeds (seed s of
each draws the same head init, data order and dropout stream). Comparing their t-intervals by eye
throws that away: most of the spread between seeds and between examples is shared, so the
difference is measured far more sharply than either mean. The test resamples both sources of
noise together (a two-level bootstrap: seeds with replacement, then examples with replacement,
the same draws for both methods), recomputes the metric on each draw exactly as the record does
(accuracy, macro-F1, MCC from the confusion matrix; the mean of per-example ROUGE), and reads the
difference's 95% percentile interval. A difference is *distinguishable* when that interval
excludes 0 (p < 0.05, two-sided).

Groups that cannot be told apart: every pair of methods is tested, the p-values are corrected
for the number of pairs (Holm), and a group joins the methods that no corrected test separates,
contiguous in their mean rank over the resampled draws (what a critical-difference diagram, after
Demšar 2006, draws as one bar).

What it needs: each record's `quality.per_example` (bench/tasks: every scored example's predicted
class, or its per-example ROUGE), written by runs since this module; older records lack it and
are left out, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

N_BOOT = 2000  # bootstrap draws: the interval's ends move by about 0.1 point of accuracy between reruns at this size
ALPHA = 0.05


@dataclass
class Comparison:
    a: str  # the method compared
    b: str  # what it is compared with
    metric: str
    diff: float  # a's mean minus b's, on the shared seeds and examples
    low: float  # 95% paired bootstrap interval of the difference
    high: float
    p: float  # two-sided bootstrap p-value (before any correction)
    seeds: int  # seeds both ran
    examples: int

    @property
    def distinguishable(self) -> bool:
        return self.low > 0 or self.high < 0


def confusion_metrics(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 (zero where a class is never predicted nor present) and Matthews
    correlation from confusion matrices [..., K, K] (rows: gold, columns: predicted), as
    sklearn computes them for one matrix (bench.measure.metrics.classification)."""
    conf = conf.astype(float)
    total = conf.sum(axis=(-2, -1))
    correct = np.trace(conf, axis1=-2, axis2=-1)
    gold, pred = conf.sum(axis=-1), conf.sum(axis=-2)  # per class: true count, predicted count
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    denom = gold + pred
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0).mean(axis=-1)
    cov_ytyp = correct * total - (gold * pred).sum(axis=-1)
    cov_ypyp = total**2 - (pred * pred).sum(axis=-1)
    cov_ytyt = total**2 - (gold * gold).sum(axis=-1)
    bottom = np.sqrt(cov_ytyt * cov_ypyp)
    mcc = np.where(bottom > 0, cov_ytyp / np.where(bottom > 0, bottom, 1), 0.0)
    return {"accuracy": correct / np.where(total > 0, total, 1), "f1": f1, "mcc": mcc}


def _draws(n_seeds: int, n_examples: int, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seed picks [B, S] and example counts [B, n] (how often each example is in the draw)."""
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    counts = rng.multinomial(n_examples, np.full(n_examples, 1 / n_examples), size=n_boot)
    return seeds, counts


def _classification_values(preds: np.ndarray, gold: np.ndarray, num_labels: int, metric: str,
                           seeds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The metric on every draw [B]: per seed, the confusion matrix of the drawn examples; the
    mean over the drawn seeds, as a report's point averages its seeds."""
    cells = gold[None, :] * num_labels + preds  # [S, n]: the confusion cell of each example
    onehot = np.zeros((preds.shape[0], preds.shape[1], num_labels * num_labels))
    np.put_along_axis(onehot, cells[..., None], 1.0, axis=-1)
    conf = np.einsum("bn,snk->bsk", counts, onehot).reshape(counts.shape[0], preds.shape[0], num_labels, num_labels)
    per_seed = confusion_metrics(conf)[metric]  # [B, S]
    return np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)


def _score_values(scores: np.ndarray, seeds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    per_seed = counts @ scores.T / counts.sum(axis=1, keepdims=True)  # [B, S]: the drawn examples' mean
    return np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)


def values(per_example: dict[str, np.ndarray], metric: str, gold: np.ndarray | None, num_labels: int,
           seeds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One method's metric on every draw. per_example: {"predictions": [S, n]} (classification) or
    {metric: [S, n]} (per-example scores, e.g. ROUGE)."""
    if "predictions" in per_example:
        assert gold is not None
        return _classification_values(per_example["predictions"], gold, num_labels, metric, seeds, counts)
    return _score_values(per_example[metric], seeds, counts)


def observed(per_example: dict[str, np.ndarray], metric: str, gold: np.ndarray | None, num_labels: int) -> float:
    """The metric as the records report it: per seed on every example, then the mean."""
    s, n = next(iter(per_example.values())).shape
    return float(values(per_example, metric, gold, num_labels, np.arange(s)[None, :], np.ones((1, n)))[0])


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], metric: str, gold: np.ndarray | None = None,
            num_labels: int = 2, names: tuple[str, str] = ("a", "b"), n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """a against b on the same seeds (rows, in the same order) and examples (columns)."""
    s, n = next(iter(a.values())).shape
    rng = np.random.default_rng(seed)
    seeds, counts = _draws(s, n, n_boot, rng)
    diffs = values(a, metric, gold, num_labels, seeds, counts) - values(b, metric, gold, num_labels, seeds, counts)
    low, high = np.percentile(diffs, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    p = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))
    diff = observed(a, metric, gold, num_labels) - observed(b, metric, gold, num_labels)
    return Comparison(names[0], names[1], metric, diff, float(low), float(high), float(p), s, n)


def holm(pvalues: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Holm's step-down correction of a family of p-values (every pair of methods)."""
    order = sorted(pvalues, key=pvalues.get)
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        out[key] = running
    return out


def groups(methods: dict[str, dict[str, np.ndarray]], metric: str, gold: np.ndarray | None = None, num_labels: int = 2,
           higher_is_better: bool = True, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Every pair tested on shared bootstrap draws: mean ranks (1 = best) over the draws, the
    Holm-corrected p-value of every pair, and the groups a corrected test cannot separate (each
    a maximal run of methods, in rank order, with no separated pair inside)."""
    names = sorted(methods)
    s, n = next(iter(methods[names[0]].values())).shape
    rng = np.random.default_rng(seed)
    seeds, counts = _draws(s, n, n_boot, rng)
    drawn = np.stack([values(methods[m], metric, gold, num_labels, seeds, counts) for m in names])  # [M, B]
    oriented = drawn if higher_is_better else -drawn
    ranks = (-oriented).argsort(axis=0).argsort(axis=0) + 1  # 1 = best on each draw
    mean_rank = dict(zip(names, ranks.mean(axis=1).tolist()))
    raw = {}
    for i, x in enumerate(names):
        for j in range(i + 1, len(names)):
            d = drawn[i] - drawn[j]
            raw[(x, names[j])] = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
    corrected = holm(raw)
    apart = {frozenset(k) for k, v in corrected.items() if v < ALPHA}
    ordered = sorted(names, key=mean_rank.get)
    found: list[list[str]] = []
    for start in range(len(ordered)):  # maximal runs without a separated pair (the CD diagram's bars)
        end = start
        while end + 1 < len(ordered) and not any(frozenset((ordered[k], ordered[end + 1])) in apart for k in range(start, end + 1)):
            end += 1
        run = ordered[start:end + 1]
        if len(run) > 1 and not any(set(run) <= set(g) for g in found):
            found.append(run)
    return {"mean_rank": mean_rank, "p_holm": {f"{a} vs {b}": float(p) for (a, b), p in corrected.items()}, "groups": found,
            "apart": sorted(" vs ".join(sorted(k)) for k in apart)}


def standard_error(record: dict[str, Any], metric: str, n_boot: int = 1000, seed: int = 0) -> float | None:
    """The standard error of one run's score over its evaluation examples (a bootstrap of the
    examples), from the per-example predictions or scores it kept; None when it kept none."""
    arrays, gold, labels = per_example_arrays([record], metric)
    if not arrays:
        return None
    each = next(iter(arrays.values()))
    n = next(iter(each.values())).shape[0]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=n_boot)
    draws = values({k: v[None, :] for k, v in each.items()}, metric, gold, labels, np.zeros((n_boot, 1), dtype=int), counts)
    return float(np.std(draws, ddof=1))


def per_example_arrays(recs: list[dict[str, Any]], metric: str) -> tuple[dict[int, dict[str, np.ndarray]], np.ndarray | None, int]:
    """{seed: per-example arrays} of one point's successful runs that kept them, the gold labels
    (classification) and the number of labels."""
    out: dict[int, dict[str, np.ndarray]] = {}
    gold, labels = None, 2
    for rec in recs:
        each = (rec.get("quality") or {}).get("per_example")
        if not each:
            continue
        seed = int(rec["run"]["seed"])
        if metric in each:  # a per-example score (ROUGE, a loss): also a classification run's loss beside its predictions
            out[seed] = {metric: np.asarray(each[metric], dtype=float)}
        elif "predictions" in each:
            gold = np.asarray(each["references"])
            labels = max(labels, int(max(each["predictions"] + each["references"])) + 1)
            out[seed] = {"predictions": np.asarray(each["predictions"])}
    return out, gold, labels


def compare_records(a: list[dict[str, Any]], b: list[dict[str, Any]], metric: str, names: tuple[str, str] = ("a", "b"),
                    n_boot: int = N_BOOT) -> Comparison | None:
    """Two points' successful runs (their records) compared on the seeds both ran, from the
    per-example predictions or scores they kept; None when they share no such seed."""
    arrays_a, gold_a, labels_a = per_example_arrays(a, metric)
    arrays_b, gold_b, labels_b = per_example_arrays(b, metric)
    seeds = sorted(set(arrays_a) & set(arrays_b))
    if not seeds:
        return None
    stack = lambda arrays: {key: np.stack([arrays[s][key] for s in seeds]) for key in arrays[seeds[0]]}  # noqa: E731
    gold = gold_a if gold_a is not None else gold_b
    return compare(stack(arrays_a), stack(arrays_b), metric, gold, max(labels_a, labels_b), names, n_boot=n_boot)
