"""The head and metric registries: every head a task kind puts on a model is registered and says
what the code used to switch on its name for; every metric says its direction, and the tuning
stage's choice, its pruner, the Pareto front and the scale table's gap follow it (a lower-is-better
metric picks the smaller value); an unknown metric in a task config is refused naming the valid ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.measure import metrics
from bench.models import heads
from bench.sweep import tune
from bench.tasks import Task, kinds, register_kind
from conftest import ROOT, make_cfg

ERROR = "test_error"  # a lower-is-better metric registered by the tests below only


@pytest.fixture
def error_metric(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(metrics.METRICS, ERROR, metrics.Metric(ERROR, higher_is_better=False, what="share wrong (tests)"))
    return ERROR


# ---------------------------------------------------------------- the metric registry
def test_every_metric_a_kind_computes_is_registered_with_its_direction():
    for kind in kinds().values():
        assert kind.metrics and all(m in metrics.METRICS for m in kind.metrics), kind.name
    assert [m for m, spec in metrics.METRICS.items() if not spec.higher_is_better] == ["loss"]  # synthetic's: lower is better
    assert metrics.direction("accuracy") == "maximize" and metrics.direction("loss") == "minimize"
    assert metrics.better("rougeL", 0.31, 0.30) and not metrics.better("rougeL", 0.30, 0.31)
    assert metrics.better("loss", 1.9, 2.0) and not metrics.better("loss", 2.0, 1.9) and not metrics.better("loss", 2.0, 2.0)
    assert metrics.best("mcc", [0.1, 0.4, 0.2]) == 0.4 and metrics.best("loss", [3.0, 1.5, 2.0]) == 1.5
    assert metrics.goodness("loss", 1.5) == -1.5 and metrics.goodness("f1", 0.5) == 0.5
    with pytest.raises(ValueError, match="unknown metric 'acc'.*accuracy, f1, mcc, rouge1"):
        metrics.direction("acc")
    assert metrics.higher_is_better("acc", default=True)  # the report reading an old record's unregistered metric


def test_a_kind_declaring_an_unregistered_metric_or_head_is_refused_at_registration():
    declared = dict(families=("decoder",), keys=frozenset(), check=lambda t: None, fields=lambda t, s: [],
                    input_tokens=lambda c, f: (1, "", ""), train_tokens=lambda c, f: 1, serve=None, generates=False)
    before = dict(kinds())
    with pytest.raises(ValueError, match="unregistered metrics \\['bleu'\\].*registered: accuracy"):
        register_kind("bogus-metric", head_for=lambda f: "causal_lm", metrics=("loss", "bleu"), **declared)(lambda *a: None)
    with pytest.raises(ValueError, match="unregistered heads.*token_classifier.*registered: classifier, causal_lm, seq2seq_lm"):
        register_kind("bogus-head", head_for=lambda f: "token_classifier", metrics=("loss",), **declared)(lambda *a: None)
    assert kinds() == before


def test_an_unknown_metric_in_a_task_config_is_refused_naming_the_valid_ones():
    from bench.config.checks import check_task

    cfg = make_cfg(["task=sst2", "task.metrics=[acuracy,f1]"])
    with pytest.raises(ConfigError, match="task.metrics") as caught:
        check_task(cfg.task)
    text = str(caught.value)
    assert "a list of accuracy, f1, mcc" in text and "'acuracy': not a known metric" in text
    assert "rouge1, rouge2, rougeL, rougeLsum, loss" in text  # the registry's names
    cfg = make_cfg(["task=sst2", "task.metrics=[rouge1]"])  # registered, but not one a classification task computes
    with pytest.raises(ConfigError, match="a list of accuracy, f1, mcc .*a classification task computes only these"):
        check_task(cfg.task)
    check_task(make_cfg(["task=sst2", "task.metrics=[mcc,accuracy]"]).task)  # any of the kind's, in any order


# ---------------------------------------------------------------- the tuning stage follows the direction
def trial(lr: float, metric: str, value: float | None, status: str = "success", seed: int = 0, study: str = "s",
          steps: int = 10, curve: list | None = None) -> dict:
    return {"schema_version": 1,
            "run": {"id": f"t-{lr}-{seed}", "role": "trial", "study": study, "status": status, "error": None,
                    "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:10+00:00",
                    "config": {"train": {"lr": lr, "max_steps": steps}, "validation": {"examples": 50, "score_on": "validation"}}},
            "quality": {metric: value, "main_metric": metric} if value is not None else {}, "curve": curve or []}


def test_the_tuning_choice_picks_the_smallest_mean_for_a_lower_is_better_metric(error_metric: str):
    values = {1e-4: (0.30, 0.34), 1e-3: (0.10, 0.12), 1e-2: (0.50, 0.46)}
    trials = [trial(lr, error_metric, v, seed=s) for lr, pair in values.items() for s, v in enumerate(pair)]
    trials.append(trial(1e-1, error_metric, 0.01, status="pruned"))  # a partial score: never chosen, however low
    sel = tune.select(trials, error_metric, "grid")
    assert sel["chosen_lr"] == 1e-3 and sel["scores"][:3] == [pytest.approx(0.32), pytest.approx(0.11), pytest.approx(0.48)]
    # the same numbers read as accuracy (higher is better) choose the other end
    assert tune.select([trial(lr, "accuracy", v, seed=s) for lr, pair in values.items() for s, v in enumerate(pair)],
                       "accuracy", "grid")["chosen_lr"] == 1e-2
    tie = [trial(1e-3, "loss", 0.5), trial(1e-4, "loss", 0.5), trial(1e-2, "loss", 0.9)]
    assert tune.select(tie, "loss", "grid")["chosen_lr"] == 1e-4  # a tie still goes to the smaller lr


def test_the_median_pruner_stops_a_trial_whose_loss_is_above_the_median(tmp_path: Path):
    cfg = OmegaConf.create({"results_dir": str(tmp_path), "train": {"max_steps": 6}, "tune": {"prune_startup_trials": 2},
                            "model": {"name": "m"}, "task": {"name": "t"}, "method": {"name": "lora"}})
    for i in range(2):  # two finished siblings with loss 1.0 at every checkpoint
        (tmp_path / f"20260101-000000-{i}-m-t-lora-s0-x.json").write_text(json.dumps(
            trial(1e-2 * (i + 1), "loss", 1.0, seed=i, study="p", steps=6, curve=[{"step": s, "eval": {"loss": 1.0}} for s in (2, 4)])))
    assert tune.MedianPruner(cfg, "p", "loss").should_stop(2, {"loss": 3.0}) == \
        "pruned at step 2: validation loss 3.0000 is above the median of 2 finished trials"
    assert tune.MedianPruner(cfg, "p", "loss").should_stop(2, {"loss": 0.2}) is None  # better than the median: goes on


# ---------------------------------------------------------------- the report follows the direction
def record(method: str, metric: str, score: float, trainable: int, *, model: str = "m", total: int = 1000, seed: int = 0) -> dict:
    config = {"seed": seed, "model": {"name": model, "family": "decoder"}, "task": {"name": "t", "kind": "synthetic"},
              "train": {"lr": 1e-3, "max_steps": 10}, "method": {"name": method}}
    return {"schema_version": 1,
            "run": {"id": f"{model}-{method}-{seed}", "config_hash": "h", "model": model, "task": "t", "method": method, "seed": seed,
                    "started_at": f"2026-01-01T00:00:{seed:02d}", "status": "success", "error": None, "config": config},
            "params": {"trainable": trainable, "total": total, "percent": 100 * trainable / total},
            "memory": {"peak_bytes": 2**20 * (100 + trainable)}, "quality": {metric: score, "main_metric": metric}}


def test_the_pareto_front_keeps_the_cheap_low_error_point_for_a_lower_is_better_metric(error_metric: str):
    from bench import report

    recs = [record("prompt_tuning", error_metric, 0.50, 1), record("lora", error_metric, 0.30, 10),
            record("ia3", error_metric, 0.40, 20),  # dearer and worse than lora: dominated
            record("adapter", error_metric, 0.10, 100), record("full", error_metric, 0.12, 1000, total=1000)]  # full: dearer, worse
    points = report.points_frame(report.runs_frame(recs))
    label = dict(zip(points["point"], points["method"]))
    assert [label[p] for p in report.pareto_front(points, "trainable")] == ["prompt_tuning", "lora", "adapter"]
    # the same scores read as higher-is-better: only the cheapest point (0.50) is on the front
    assert [label[p] for p in report.pareto_front(points, "trainable", higher=True)] == ["prompt_tuning"]
    # a registered lower-is-better metric (synthetic's loss) through the figure as well
    loss = report.points_frame(report.runs_frame([{**r, "quality": {"loss": r["quality"][error_metric], "main_metric": "loss"}} for r in recs]))
    assert [label[p] for p in report.pareto_front(loss, "trainable")] == ["prompt_tuning", "lora", "adapter"]
    from bench.report import plots

    fig = plots.pareto(loss, "trainable", "trainable parameters")
    assert fig.axes[0].get_ylabel() == "loss (mean ± 95% CI; lower is better)"


def test_the_scale_table_gap_is_how_far_the_method_falls_short_of_full_in_either_direction(error_metric: str):
    from bench import report
    from bench.report.tables import scale_table

    def table(metric: str) -> str:
        recs = [record("full", metric, 0.10, 1000, model="small", total=1000), record("lora", metric, 0.30, 10, model="small", total=1000),
                record("full", metric, 0.20, 5000, model="large", total=5000), record("lora", metric, 0.25, 50, model="large", total=5000)]
        return scale_table(report.points_frame(report.runs_frame(recs)))

    lower = table(error_metric)
    assert "| small | decoder | 0.0M | 0.100 (1) | 0.300 (1) (+0.200) |" in lower  # 0.30 error vs full's 0.10: 0.2 worse
    assert "| large | decoder | 0.0M | 0.200 (1) | 0.250 (1) (+0.050) |" in lower
    assert f"the method's mean minus full fine-tuning's ({error_metric}: lower is better)" in lower
    higher = table("accuracy")  # the same numbers as accuracy: lora scores above full, a negative gap
    assert "0.300 (1) (-0.200)" in higher and "Gap = full fine-tuning's mean minus the method's" in higher


# ---------------------------------------------------------------- the head registry
def test_every_head_a_kind_puts_on_a_family_is_registered():
    used = {(kind.name, family): kind.head_for(family) for kind in kinds().values() for family in kind.families}
    assert set(used.values()) == set(heads.HEADS) == {"classifier", "causal_lm", "seq2seq_lm"}  # the names records hold
    for (kind, family), name in used.items():
        assert family in heads.get_head(name).families, (kind, family, name)
    assert heads.language_head("decoder") == "causal_lm" and heads.language_head("encoder-decoder") == "seq2seq_lm"
    with pytest.raises(ValueError, match="no single language-model head for family 'encoder'"):
        heads.language_head("encoder")
    with pytest.raises(ValueError, match="head must be one of classifier, causal_lm, seq2seq_lm, got 'token_classifier'"):
        heads.get_head("token_classifier")


def test_each_head_says_what_the_code_used_to_switch_on():
    c, lm, s2s = (heads.get_head(n) for n in ("classifier", "causal_lm", "seq2seq_lm"))
    assert (c.auto_class, lm.auto_class, s2s.auto_class) == ("AutoModel", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM")
    assert (c.peft_task_type, lm.peft_task_type, s2s.peft_task_type) == ("FEATURE_EXTRACTION", "CAUSAL_LM", "SEQ_2_SEQ_LM")
    assert c.new_head and not c.keeps_decoder and c.trained_modules == ("head",) and not c.is_lm and not c.generates
    assert lm.generates and s2s.generates and not lm.new_head and lm.trained_modules == ()
    assert (c.forgetting_measure, lm.forgetting_measure, s2s.forgetting_measure) == ("representation_cosine", "lm_loss", "lm_loss")
    ids = [5, 6, 7, 8, 9]
    assert lm.lm_batch(ids) == (ids, ids) and lm.scored_tokens(ids) == 4  # causal: the model shifts, the first token is not predicted
    assert s2s.lm_batch(ids) == ([5, 6], [7, 8, 9]) and s2s.scored_tokens([7, 8, 9]) == 3  # the second half from the first
    with pytest.raises(ValueError, match="no language-model head"):
        c.lm_batch(ids)
    from bench.methods import head_modules

    task = lambda head: Task(name="t", kind="k", head=head, train=[], eval=[], collate=None, evaluate=None, main_metric="x")  # noqa: E731
    assert head_modules(task("classifier")) == ["head"] and head_modules(task("causal_lm")) is None and head_modules(task("seq2seq_lm")) is None


def test_load_model_refuses_an_unregistered_head_naming_the_registered_ones():
    from bench.models import sources

    with pytest.raises(ValueError, match="head must be one of classifier, causal_lm, seq2seq_lm"):
        sources.load_model(make_cfg(["model=tiny-llama"]).model, "token_classifier")


def test_the_registries_and_the_kinds_declarations_load_no_torch():
    code = ("import sys, bench.config.checks, bench.models.heads, bench.measure.metrics; from bench.tasks import kinds; kinds(); "
            "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
