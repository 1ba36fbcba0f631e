"""bench.report.paired on constructed data: the metrics equal sklearn's, a known difference is found,
no difference is not, groups join what cannot be separated, and the report writes the section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bench.measure import significance

N = 872  # SST-2's dev set


def _predictions(gold: np.ndarray, accuracy: float, seeds: int, rng: np.random.Generator) -> np.ndarray:
    """Per seed, each example answered correctly with this probability."""
    return np.stack([np.where(rng.random(len(gold)) < accuracy, gold, 1 - gold) for _ in range(seeds)])


def test_the_metrics_from_confusion_matrices_equal_sklearns():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, N)
    preds = rng.integers(0, 3, (2, N))
    for metric, ref in (("accuracy", accuracy_score), ("f1", lambda g, p: f1_score(g, p, average="macro")), ("mcc", matthews_corrcoef)):
        expected = np.mean([ref(gold, preds[s]) for s in range(2)])
        assert significance.observed({"predictions": preds}, metric, gold, 3) == pytest.approx(expected, abs=1e-12)


def test_a_known_difference_is_found_and_none_is_not():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, N)
    better, worse, same = _predictions(gold, 0.90, 3, rng), _predictions(gold, 0.85, 3, rng), _predictions(gold, 0.85, 3, rng)
    found = significance.compare({"predictions": better}, {"predictions": worse}, "accuracy", gold)
    assert found.distinguishable and found.low > 0 and found.diff == pytest.approx(0.05, abs=0.02) and found.seeds == 3 and found.examples == N
    none = significance.compare({"predictions": worse}, {"predictions": same}, "accuracy", gold)
    assert not none.distinguishable and none.low < 0 < none.high
    # per-example scores (ROUGE): the mean's difference, the same way
    a, b = rng.random((3, 200)), rng.random((3, 200))
    assert significance.compare({"rouge1": a + 0.1}, {"rouge1": a}, "rouge1").distinguishable  # the same examples, 0.1 better each
    assert not significance.compare({"rouge1": a}, {"rouge1": b}, "rouge1").distinguishable


def test_groups_join_what_no_corrected_test_separates():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, N)
    methods = {"a": _predictions(gold, 0.92, 3, rng), "b": _predictions(gold, 0.85, 3, rng), "c": _predictions(gold, 0.85, 3, rng)}
    result = significance.groups({k: {"predictions": v} for k, v in methods.items()}, "accuracy", gold)
    assert min(result["mean_rank"], key=result["mean_rank"].get) == "a"
    assert result["groups"] == [sorted(["b", "c"], key=result["mean_rank"].get)]
    assert set(result["apart"]) == {"a vs b", "a vs c"}


def test_holm_scales_the_smallest_p_by_the_family_size():
    out = significance.holm({("a", "b"): 0.01, ("a", "c"): 0.02, ("b", "c"): 0.5})
    assert out[("a", "b")] == pytest.approx(0.03) and out[("a", "c")] == pytest.approx(0.04) and out[("b", "c")] == pytest.approx(0.5)


def test_the_committed_paired_reference_reads_as_its_readme_says(tmp_path):
    """From results/reference/glue-minilm-paired: the section's numbers are the README's."""
    from pathlib import Path

    from bench.report.cli import build

    root = Path(__file__).resolve().parents[1]
    build([root / "results" / "reference" / "glue-minilm-paired"], tmp_path)
    text = (tmp_path / "tables" / "minilm-l6__sst2__paired.md").read_text()
    assert "+0.000 [-0.015, +0.013] cannot tell" in text
    assert "paired" in (root / "results" / "reference" / "glue-minilm-paired" / "README.md").read_text()
    assert "+0.000 [-0.015, +0.013]" in (root / "results" / "reference" / "glue-minilm-paired" / "README.md").read_text()


def test_the_diagrams_bars_are_the_groups_contiguous_in_rank(tmp_path, monkeypatch):
    """A pair left unseparated by Holm's correction but with a separated method between them in
    rank (b and d here, c apart from b) is no bar: each bar is one group of the Markdown."""
    import scikit_posthocs as sp

    from bench.report import paired

    seen = {}
    monkeypatch.setattr(sp, "critical_difference_diagram", lambda ranks, sig, **kw: seen.update(sig=sig))
    result = {"mean_rank": {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, "groups": [["a", "b"], ["c", "d"]],
              "p_holm": {"a vs b": 0.5, "a vs c": 0.0, "a vs d": 0.0, "b vs c": 0.01, "b vs d": 0.2, "c vs d": 0.4}}
    paired.cd_diagram(result, str(tmp_path / "cd.png"), "t")
    sig = seen["sig"]
    assert sig.loc["a", "b"] == 1.0 and sig.loc["c", "d"] == 1.0 and sig.loc["b", "d"] == 0.0 and sig.loc["a", "c"] == 0.0


def test_zero_shot_runs_once_and_pairs_with_every_seed_of_the_trained_points():
    """dialogsum-smollm2-tuned: zero-shot (trains nothing) ran seed 0 only, the five tuned methods
    seeds 0, 1, 2. The paired comparison keeps all three seeds (zero-shot's one run stands for each),
    not only the seed every point ran."""
    from bench.records.store import load_records
    from bench.report.frames import points_frame, runs_frame
    from bench.report.paired import point_tests

    records = load_records(Path(__file__).resolve().parent.parent / "results" / "reference" / "dialogsum-smollm2-tuned")
    runs = runs_frame(records)
    finals = runs[runs["role"] != "trial"]
    result = point_tests(records, finals, points_frame(finals))
    assert result is not None and result["seeds"] == [0, 1, 2] and result["examples"] == 50
    rows = {r["label"]: r for r in result["rows"]}
    assert set(rows) == {"none", "full", "lora", "ia3", "prompt_tuning", "prefix_tuning"} and result["reference"] == "full"
    assert abs(rows["none"]["mean"] - 0.241) < 5e-4 and rows["none"]["vs_reference"].distinguishable
