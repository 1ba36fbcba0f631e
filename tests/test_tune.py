"""The tuning stage: the validation split is carved from train and disjoint from what trains and
from the reported split; the chosen lr is the best on validation (never on the reported split);
the median pruner stops a clearly worse trial; a diverged trial is a failed row, never chosen;
and a tuned sweep relaunched runs nothing new."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bench.sweep import tune
from bench.errors import ConfigError
from bench.records.store import is_final, write_atomic
from bench.run.pipeline import run
from bench.tasks.cache import _rows, carve_validation
from conftest import ROOT, SHARED_DATA, make_cfg


def write_tsv_task(root: Path, n_train: int = 60, n_dev: int = 20) -> Path:
    """A tiny SST-2-shaped dataset whose sentences name their split and row: overlap is visible."""
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"train row {i} good\t{i % 2}\n" for i in range(n_train)))
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"dev row {i} bad\t{i % 2}\n" for i in range(n_dev)))
    return root


# ---------------------------------------------------------------- the validation split
def test_validation_rows_are_disjoint_from_training_rows_and_from_the_reported_split(tmp_path: Path):
    root = write_tsv_task(tmp_path)
    common = ["task=sst2", f"data_root={root}", "validation.examples=15", "validation.seed=3"]
    train_rows, val_rows = _rows(make_cfg(common + ["validation.score_on=validation"]), trains=True)
    final_train, reported = _rows(make_cfg(common + ["validation.score_on=eval"]), trains=True)
    sentences = lambda rows: {r["sentence"] for r in rows}  # noqa: E731
    assert len(val_rows) == 15 and len(train_rows) == 45
    assert not sentences(val_rows) & sentences(train_rows)  # never trains on what it is scored on
    assert sentences(val_rows) | sentences(train_rows) == {f"train row {i} good" for i in range(60)}  # carved from train
    assert not sentences(val_rows) & sentences(reported) and all(s.startswith("dev") for s in sentences(reported))
    assert sentences(final_train) == sentences(train_rows)  # finals train on exactly the rest
    again, _ = carve_validation([{"i": i} for i in range(60)], 15, 3)
    other, _ = carve_validation([{"i": i} for i in range(60)], 15, 4)
    assert again == carve_validation([{"i": i} for i in range(60)], 15, 3)[0] and again != other  # seeded


def test_max_train_examples_limits_the_rest_after_the_validation_rows_are_held_out(tmp_path: Path):
    root = write_tsv_task(tmp_path)
    train_rows, val_rows = _rows(make_cfg(["task=sst2", f"data_root={root}", "validation.examples=10",
                                           "validation.score_on=validation", "task.max_train_examples=20"]), trains=True)
    assert len(train_rows) == 20 and not {r["sentence"] for r in val_rows} & {r["sentence"] for r in train_rows}


def test_a_validation_split_as_large_as_train_names_the_field(tmp_path: Path):
    with pytest.raises(ConfigError, match="validation.examples"):
        carve_validation([{"i": i} for i in range(5)], 5, 0)
    from bench.config.plan import validate

    with pytest.raises(ConfigError, match="validation.examples"):
        validate(make_cfg(["validation.score_on=validation", "validation.examples=0"]))
    with pytest.raises(ConfigError, match="tune.mode"):
        validate(make_cfg(["tune.mode=random"]))


# ---------------------------------------------------------------- choosing
def trial_record(lr: float, val_score: float | None, status: str = "success", error: str | None = None, seed: int = 0,
                 steps: int = 10, study: str = "s", curve: list | None = None) -> dict:
    return {"schema_version": 1,
            "run": {"id": f"t-{lr}-{seed}-{status}", "role": "trial", "study": study, "status": status, "error": error,
                    "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:10+00:00",
                    "config": {"train": {"lr": lr, "max_steps": steps}, "validation": {"examples": 50, "score_on": "validation"}}},
            "quality": {"accuracy": val_score, "main_metric": "accuracy"} if val_score is not None else {},
            "curve": curve or []}


def test_select_takes_the_best_mean_validation_score_and_never_a_pruned_or_diverged_trial():
    trials = [trial_record(1e-4, 0.70), trial_record(1e-4, 0.74, seed=1), trial_record(1e-3, 0.71), trial_record(1e-3, 0.71, seed=1),
              trial_record(1e-2, 0.99, status="pruned", error="pruned at step 5"),  # a pruned trial's score is partial: never chosen
              trial_record(1e-1, None, status="failed", error="diverged: loss is nan at step 3")]
    sel = tune.select(trials, "accuracy", "grid")
    assert sel["chosen_lr"] == 1e-4 and sel["split"] == "validation" and sel["metric"] == "accuracy"
    assert sel["lrs"] == [1e-4, 1e-3, 1e-2, 1e-1] and sel["scores"] == [pytest.approx(0.72), pytest.approx(0.71), None, None]
    assert sel["trials"] == 6 and sel["pruned"] == 1 and sel["failed"] == 1 and sel["cost_s"] == 60.0
    assert tune.select([trial_record(1e-3, None, status="failed", error="diverged: x")], "accuracy", "grid")["chosen_lr"] is None


def test_a_rate_whose_trials_predicted_one_class_is_never_chosen_over_one_that_learned():
    """The yes/no task of issue 29: both full fine-tuning trials at 5e-5 answered "yes" to every row
    (accuracy = the majority, 0.657) and won the tie; a rate that learned anything now ranks first."""
    def stuck(lr: float, seed: int = 0) -> dict:
        rec = trial_record(lr, 0.657, seed=seed)
        rec["quality"].update(constant_predictions=True, majority_baseline=0.657)
        return rec

    def learner(lr: float, score: float) -> dict:
        rec = trial_record(lr, score)
        rec["quality"].update(constant_predictions=False, majority_baseline=0.657)
        return rec

    sel = tune.select([stuck(5e-5), stuck(5e-5, seed=1), learner(2e-4, 0.640), learner(1e-3, 0.700)], "accuracy", "grid")
    assert sel["chosen_lr"] == 1e-3 and sel["constant_lrs"] == [5e-5] and not sel["none_learned"]
    sel = tune.select([stuck(5e-5), learner(2e-4, 0.640)], "accuracy", "grid")  # 0.657 > 0.640, and still ranked last
    assert sel["chosen_lr"] == 2e-4 and sel["majority_lrs"] == [5e-5, 2e-4]
    sel = tune.select([stuck(5e-5), stuck(2e-4)], "accuracy", "grid")  # nothing learned: said, and the smaller rate kept
    assert sel["none_learned"] and sel["chosen_lr"] == 5e-5


def fake_stage(tmp_path: Path, val_best: float, eval_best: float, diverge: bool = False, by_steps: dict[int, float] | None = None):
    """A launcher that writes records without training: a trial's validation score peaks at
    val_best (or, by its steps trained, at by_steps[steps]), and what the reported split would say
    peaks at eval_best."""
    launched: list[list[str]] = []

    def launch(jobs: list[list[str]]) -> list[str]:
        paths = []
        for job in jobs:
            launched.append(job)
            cfg = make_cfg(job)
            lr = float(cfg.train.lr)
            peak = val_best if cfg.validation.score_on == "validation" else eval_best
            if by_steps and cfg.validation.score_on == "validation":
                peak = by_steps[int(cfg.train.stop_after or cfg.train.max_steps)]
            diverged = diverge and cfg.validation.score_on == "validation"
            rec = {"schema_version": 1, "run": {"id": f"r{len(launched)}", "role": tune.role(cfg), "status": "failed" if diverged else "success",
                                                "error": "diverged: loss is nan at step 2" if diverged else None,
                                                "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:02+00:00",
                                                "config": {"train": {"lr": lr, "max_steps": int(cfg.train.max_steps), "stop_after": cfg.train.stop_after},
                                                           "validation": dict(cfg.validation)}},
                   "quality": {"accuracy": 1 - abs(lr - peak) / peak, "main_metric": "accuracy"}}
            paths.append(str(write_atomic(tmp_path / f"r{len(launched)}.json", rec)))
        return paths

    return launch, launched


def test_the_stage_chooses_on_validation_then_runs_every_seed_at_that_lr_scored_on_the_reported_split(tmp_path: Path):
    root = write_tsv_task(tmp_path)
    jobs = [[f"seed={s}", "method=lora", "task=sst2", f"data_root={root}", "model=tiny-bert", "tune.lrs=[0.0001,0.001,0.01]",
             "tune.val_examples=10", "tune.max_steps=4"] for s in (0, 1, 2)]
    jobs += [["seed=0", "method=none", "task=sst2", f"data_root={root}", "model=tiny-bert"]]
    launch, launched = fake_stage(tmp_path / "records", val_best=0.001, eval_best=0.01)
    finals = tune.run_tuning(jobs, make_cfg, launch, log=lambda line: None)
    trials = [job for job in launched if "validation.score_on=validation" in job]
    assert len(trials) == 3 and all("seed=0" in t and "train.max_steps=4" in t and "inference.enabled=false" in t for t in trials)
    final_jobs = [job for job in launched if job not in trials]
    lora = [job for job in final_jobs if "method=lora" in job]
    assert len(lora) == 3 and all("train.lr=0.001" in job and "validation.examples=10" in job for job in lora)  # validation's best, not eval's 0.01
    assert sorted(next(o for o in job if o.startswith("seed=")) for job in lora) == ["seed=0", "seed=1", "seed=2"]
    selection = make_cfg(lora[0]).selection
    assert selection.chosen_lr == 0.001 and selection.split == "validation" and list(selection.lrs) == [0.0001, 0.001, 0.01]
    assert [job for job in final_jobs if "method=none" in job] == [jobs[-1][1:] + ["seed=0"]]  # nothing to tune: runs as it is
    assert len(finals) == 4


def test_tpe_mode_asks_the_same_rates_again_on_a_relaunch_and_chooses_among_them(tmp_path: Path):
    """Optuna's seeded TPE sampler, told results in a fixed order: a relaunch asks the same rates,
    so the app finds their records and runs nothing new."""
    jobs = [["seed=0", "method=lora", "model=tiny-bert", "tune.mode=tpe", "tune.trials=4", "tune.val_examples=10"]]
    asked = []
    for attempt in range(2):
        launch, launched = fake_stage(tmp_path / f"records{attempt}", val_best=0.002, eval_best=0.0001)
        tune.run_tuning(jobs, make_cfg, launch, log=lambda line: None)
        asked.append([next(o for o in job if o.startswith("train.lr=")) for job in launched if "validation.score_on=validation" in job])
        final = make_cfg([job for job in launched if "validation.score_on=validation" not in job][0])
        lrs = [float(x.split("=")[1]) for x in asked[-1]]
        assert final.selection.mode == "tpe" and final.selection.chosen_lr == min(lrs, key=lambda lr: abs(lr - 0.002))
        assert all(5e-5 <= lr <= 5e-3 for lr in lrs)  # within the method's default / 10 ... x 10
    assert len(asked[0]) == 4 and asked[0] == asked[1]


def test_a_point_whose_every_trial_diverged_runs_no_finals_and_says_why(tmp_path: Path):
    launch, launched = fake_stage(tmp_path, 1e-3, 1e-3, diverge=True)
    lines: list[str] = []
    finals = tune.run_tuning([["seed=0", "method=lora", "model=tiny-bert", "tune.trials=2"]], make_cfg, launch, log=lines.append)
    assert finals == [] and len(launched) == 2 and "no trial succeeded (0 pruned, 2 failed)" in lines[-1]


def test_train_lr_set_by_hand_in_a_tuned_sweep_is_refused_before_anything_launches(tmp_path: Path):
    launch, launched = fake_stage(tmp_path, 1e-3, 1e-3)
    with pytest.raises(ConfigError, match="train.lr"):
        tune.run_tuning([["method=lora", "train.lr=0.1", "model=tiny-bert"]], make_cfg, launch, log=lambda line: None)
    assert launched == []


def test_the_grid_is_log_spaced_around_the_methods_default_and_launched_from_the_middle():
    grid = tune.lr_grid(make_cfg(["tune.trials=5"]).tune, 5e-4)
    assert grid == [5e-05, 0.000158, 0.0005, 0.00158, 0.005]
    assert tune.middle_out(grid) == [0.0005, 0.00158, 0.000158, 0.005, 5e-05]


# ---------------------------------------------------------------- the pruner and divergence, in real runs
def test_the_median_pruner_stops_a_clearly_worse_trial_and_the_run_is_a_pruned_row(tmp_path: Path):
    cfg = make_cfg(["model=tiny-bert", "method=lora", "tracking=none", f"results_dir={tmp_path}", "train.max_steps=6",
                    "train.eval_every=2", "train.batch_size=4", "validation.examples=16", "validation.score_on=validation",
                    "inference.enabled=false", "forgetting.enabled=false", "keep_artifacts=false", "tune.prune_startup_trials=2"])
    plain = json.loads(json.dumps(dict(__import__("omegaconf").OmegaConf.to_container(cfg, resolve=True))))
    study = tune.study_key(plain)
    for i in range(2):  # two finished siblings that scored 1.0 at every checkpoint: a random-weight model cannot
        write_atomic(tmp_path / f"20260101-000000-{i}-tiny-bert-embedded-sentiment-lora-s0-x.json", trial_record(1e-2 * (i + 1), 1.0, steps=6, study=study,
                                                             curve=[{"step": s, "eval": {"accuracy": 1.0}} for s in (2, 4)]))
    pruner = tune.MedianPruner(cfg, study, "accuracy")
    assert pruner.should_stop(2, {"accuracy": 0.5}).startswith("pruned at step 2")
    assert tune.MedianPruner(cfg, study, "accuracy").should_stop(2, {"accuracy": 1.0}) is None  # level with the median: goes on
    assert tune.MedianPruner(cfg, "another-point", "accuracy").should_stop(2, {"accuracy": 0.0}) is None  # no finished siblings
    rec = run(cfg)
    assert rec["run"]["status"] == "pruned" and rec["run"]["role"] == "trial" and rec["run"]["error"].startswith("pruned at step 2")
    assert len(rec["curve"]) == 2 and rec["data"]["scored"] == "validation" and rec["data"]["eval_examples"] == 16
    assert is_final(rec["run"])  # a relaunch does not rerun it


def test_a_diverged_run_is_a_failed_row_with_its_curve_and_is_final_for_a_trial(tmp_path: Path):
    cfg = make_cfg(["model=tiny-bert", "method=full", "tracking=none", f"results_dir={tmp_path}", "train.max_steps=30",
                    "train.lr=10", "train.warmup_ratio=0", "train.max_grad_norm=0", "train.batch_size=4", "eval.max_examples=8",
                    "inference.enabled=false", "forgetting.enabled=false", "keep_artifacts=false"])
    rec = run(cfg)
    assert rec["run"]["status"] == "failed" and rec["run"]["error"].startswith("diverged:"), rec["run"]["error"]
    assert 0 < len(rec["curve"]) < 30 and "quality" not in rec
    assert is_final(rec["run"]) and tune.select([dict(rec, run={**rec["run"], "config": rec["run"]["config"]})], "accuracy", "grid")["chosen_lr"] is None


# ---------------------------------------------------------------- the whole stage from the command line
LAUNCHERS = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
             "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]}


@pytest.mark.parametrize("pruner", ["median", "halving"])
@pytest.mark.parametrize("launcher", [pytest.param(name, marks=[pytest.mark.system]) for name in LAUNCHERS])
def test_a_tuned_sweep_from_the_command_line_then_relaunched_runs_nothing_new(tmp_path: Path, launcher: str, pruner: str):
    """The stage reads each job's record path from what the launcher returns: the same under every
    launcher, with the median pruner and with successive halving (two rates, rungs at steps 1 and 3
    of 4: both rates train both rungs, four trials)."""
    results = tmp_path / "results"
    args = [sys.executable, "-m", "bench", "-m", *LAUNCHERS[launcher], "model=tiny-bert", "method=lora", "tracking=none", "train.batch_size=4",
            "train.max_steps=4", "eval.max_examples=8", "inference.enabled=false", "forgetting.enabled=false", "keep_artifacts=false",
            "tune.enabled=true", "tune.lrs=[0.001,0.01]", "tune.val_examples=16", f"tune.pruner={pruner}", "seed=0,1", f"results_dir={results}"]
    trials = 4 if pruner == "halving" else 2
    first = subprocess.run(args + [f"hydra.sweep.dir={tmp_path / 's1'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    assert sorted(r["run"]["role"] for r in records) == ["final", "final"] + ["trial"] * trials
    if pruner == "halving":
        assert sorted(r["run"]["config"]["train"]["stop_after"] for r in records if r["run"]["role"] == "trial") == [1, 1, 3, 3]
    schema = json.loads((ROOT / "bench" / "records" / "schema.json").read_text())
    finals = [r for r in records if r["run"]["role"] == "final"]
    for rec in finals:
        jsonschema.validate(rec, schema)
        assert rec["selection"]["lrs"] == [0.001, 0.01] and rec["selection"]["chosen_lr"] == rec["run"]["config"]["train"]["lr"]
        assert rec["data"]["validation_examples"] == 16 and rec["data"]["scored"] != "validation"
    before = list(results.glob("*.json"))
    again = subprocess.run(args + [f"hydra.sweep.dir={tmp_path / 's2'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in results.glob("*.json")) == sorted(p.name for p in before)  # no new record
    assert launcher == "submitit_local" or again.stdout.count("skip:") == 2 + trials  # submitit's jobs print to their own logs


@pytest.mark.system
def test_a_bad_tuning_knob_exits_2_naming_it_before_any_run(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "bench", "-m", "model=tiny-bert", "tune.enabled=true", "tune.trials=1",
                          f"results_dir={tmp_path / 'r'}", f"hydra.sweep.dir={tmp_path / 's'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "tune.trials=1 is not valid: an integer >= 2" in out.stderr
    assert not (tmp_path / "r").exists()
    single = subprocess.run([sys.executable, "-m", "bench", "model=tiny-bert", "tune.enabled=true", f"results_dir={tmp_path / 'r'}",
                             f"hydra.run.dir={tmp_path / 'o'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert single.returncode == 2 and "add -m" in single.stderr and not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real datasets not found at {SHARED_DATA}")
def test_tune_quick_preset_tunes_then_runs_its_finals_and_a_relaunch_runs_nothing(tmp_path: Path):
    """The README's quick check, as a user runs it (about 2.5 minutes on 2 cores)."""
    results = tmp_path / "results"
    args = [sys.executable, "-m", "bench", "-m", "experiment=tune_quick", f"data_root={SHARED_DATA}", f"results_dir={results}", "tracking=none"]
    first = subprocess.run(args + [f"hydra.sweep.dir={tmp_path / 's1'}"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    trials = [r for r in records if r["run"]["role"] == "trial"]
    finals = [r for r in records if r["run"]["role"] == "final"]
    assert len(trials) == 6 and len(finals) == 4 and {r["run"]["seed"] for r in finals} == {0, 1}
    assert all(r["data"]["scored"] == "validation" and r["data"]["eval_examples"] == 200 for r in trials)
    for rec in finals:
        assert rec["run"]["status"] == "success" and rec["data"]["scored"] == "dev.tsv" and rec["quality"]["num_examples"] == 400
        mine = [t for t in trials if t["run"]["study"] == rec["run"]["study"]]
        best = max((t for t in mine if t["run"]["status"] == "success"), key=lambda t: t["quality"]["accuracy"])
        assert rec["selection"]["chosen_lr"] == rec["run"]["config"]["train"]["lr"] == best["run"]["config"]["train"]["lr"]
    print("tune_quick finals:", {(r["run"]["method"], r["run"]["seed"]): (r["run"]["config"]["train"]["lr"], r["quality"]["accuracy"]) for r in finals})
    again = subprocess.run(args + [f"hydra.sweep.dir={tmp_path / 's2'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("skip:") == 10 and len(list(results.glob("*.json"))) == 10


def test_grid_trials_go_round_by_round_across_points_so_the_pruner_has_finished_trials_first(tmp_path: Path):
    """With two points of three rates each, the launch order is each point's middle rate, then each
    point's next: a point's third rate is never launched before the other point's first two."""
    root = write_tsv_task(tmp_path)
    common = ["task=sst2", f"data_root={root}", "model=tiny-bert", "tune.lrs=[0.0001,0.001,0.01]", "tune.val_examples=10", "seed=0"]
    launch, launched = fake_stage(tmp_path / "records", val_best=0.001, eval_best=0.001)
    tune.run_tuning([["method=lora", *common], ["method=full", *common]], make_cfg, launch, log=lambda line: None)
    trials = [(next(o for o in job if o.startswith("method=")), next(o for o in job if o.startswith("train.lr=")))
              for job in launched if "validation.score_on=validation" in job]
    assert trials == [("method=lora", "train.lr=0.001"), ("method=full", "train.lr=0.001"),
                      ("method=lora", "train.lr=0.01"), ("method=full", "train.lr=0.01"),
                      ("method=lora", "train.lr=0.0001"), ("method=full", "train.lr=0.0001")]


def test_validation_dialogues_carved_from_dialogsums_training_file_are_scored_against_their_summary(tmp_path: Path):
    """DialogSum's training rows carry `summary` but none of the eval split's summary1..3: a held-out
    row is scored against its own training target instead of zero references (ROUGE crashed on those)."""
    from conftest import write_dialogsum_like

    from bench.tasks.summarization import _references

    root = write_dialogsum_like(tmp_path / "data", n=8)
    cfg = make_cfg(["task=dialogsum", "model=tiny-llama", f"data_root={root}", "validation.examples=3", "validation.score_on=validation"])
    _, scored = _rows(cfg, trains=True)
    assert len(scored) == 3 and all("summary1" not in row for row in scored)
    assert [_references(cfg.task, row) for row in scored] == [[row["summary"]] for row in scored]
    test_row = {"dialogue": "x", "summary1": "a", "summary2": "b", "summary3": "c"}
    assert _references(cfg.task, test_row) == ["a", "b", "c"]  # the reported split keeps every reference


def test_a_trial_killed_mid_search_is_run_again_before_the_choice_and_finals_name_their_trials(tmp_path: Path):
    """The best rate's trial is killed outright (an oom record, as after kill -9): the stage runs it
    again before choosing, so it chooses what a clean search chooses; the finals name the trials."""
    root = write_tsv_task(tmp_path)
    jobs = [["seed=0", "method=lora", "task=sst2", f"data_root={root}", "model=tiny-bert", "tune.lrs=[0.0001,0.001,0.01]",
             "tune.val_examples=10", "tune.max_steps=4"]]
    launch, launched = fake_stage(tmp_path / "records", val_best=0.001, eval_best=0.001)
    killed: list[str] = []

    def kill_once(batch: list[list[str]]) -> list[str]:
        paths = launch(batch)
        for job, path in zip(batch, paths):
            if "train.lr=0.001" in job and "validation.score_on=validation" in job and not killed:
                rec = json.loads(Path(path).read_text())
                rec["run"].update(status="oom", error="run process killed by signal 9 (SIGKILL: the kernel's out-of-memory killer, or kill -9)")
                rec["quality"] = {}
                Path(path).write_text(json.dumps(rec))
                killed.append(path)
        return paths

    lines: list[str] = []
    tune.run_tuning(jobs, make_cfg, kill_once, log=lines.append)
    assert killed and any("killed before their verdict" in line for line in lines)
    trials = [job for job in launched if "validation.score_on=validation" in job]
    assert sum("train.lr=0.001" in job for job in trials) == 2  # run again, once
    final = [job for job in launched if job not in trials]
    assert len(final) == 1 and "train.lr=0.001" in final[0]  # the clean search's choice
    selection = make_cfg(final[0]).selection
    assert len(selection.trial_ids) == 3 and Path(killed[0]).stem not in list(selection.trial_ids)


def test_the_report_leaves_out_finals_whose_search_was_replaced():
    """Two searches of one study chose different rates (a trial rerun after a kill): one tuned row,
    the newest search's; the older finals are named as left out."""
    import pandas as pd

    from bench.report.frames import stale_finals

    def final(i: int, lr: float, started: str, trial_ids: list[str]) -> dict:
        return {"id": f"f{i}", "role": "final", "study": "s", "started_at": started,
                "selection": {"chosen_lr": lr, "lrs": [1e-4, 1e-3], "trial_ids": trial_ids, "trials": 2, "mode": "grid"}}

    runs = pd.DataFrame([final(0, 1e-4, "2026-01-01T00:00:00", ["a", "b"]), final(1, 1e-4, "2026-01-01T00:01:00", ["a", "b"]),
                         final(2, 1e-3, "2026-01-02T00:00:00", ["a", "c"]), final(3, 1e-3, "2026-01-02T00:01:00", ["a", "c"]),
                         {"id": "t", "role": "trial", "study": "s", "started_at": "2026-01-01", "selection": None}])
    assert sorted(stale_finals(runs)) == ["f0", "f1"]
    assert stale_finals(runs[runs["id"].isin(["f0", "f1", "t"])]) == []  # one search: nothing stale


# ---------------------------------------------------------------- successive halving, its cost, the validation noise
def test_halving_rungs_grow_by_the_reduction_below_the_trials_budget():
    cfg = make_cfg(["tune.pruner=halving"])
    assert tune.rungs(cfg.tune, 250) == [28, 84]  # 250 / 3^2 rounded up, then x 3 while below 250
    assert tune.rungs(make_cfg(["tune.min_steps=10", "tune.reduction=2"]).tune, 100) == [10, 20, 40, 80]


def test_halving_runs_rung_by_rung_and_chooses_the_best_at_the_last_rung_not_the_short_trials_best(tmp_path: Path):
    """7 rates: all train to step 3 (on the finals' 27-step schedule), the best third but at least
    two go on to step 9; a clearly worse rate never trains past the first rung, and the choice is
    the best at step 9 even where step 3 preferred a higher rate (short trials favour high rates)."""
    root = write_tsv_task(tmp_path)
    lrs = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    jobs = [[f"seed={s}", "method=lora", "task=sst2", f"data_root={root}", "model=tiny-bert", f"tune.lrs=[{','.join(map(str, lrs))}]",
             "tune.val_examples=10", "tune.pruner=halving", "train.max_steps=27"] for s in (0, 1)]
    lines: list[str] = []
    launch, launched = fake_stage(tmp_path / "records", val_best=0.0, eval_best=1e-3, by_steps={3: 3e-3, 9: 1e-3})
    tune.run_tuning(jobs, make_cfg, launch, log=lines.append)
    trials = [make_cfg(job) for job in launched if "validation.score_on=validation" in job]
    first, second = [t for t in trials if t.train.stop_after == 3], [t for t in trials if t.train.stop_after == 9]
    assert len(first) == 7 and all(t.train.max_steps == 27 and t.train.eval_every == 0 and t.seed == 0 for t in first)
    assert sorted(t.train.lr for t in second) == [1e-3, 3e-3]  # the best two at step 3 (7 // 3 = 2); 1e-5 stopped at step 3
    finals = [make_cfg(job) for job in launched if "validation.score_on=validation" not in job]
    assert [f.train.lr for f in finals] == [1e-3, 1e-3] and finals[0].train.stop_after is None  # step 9's best, not step 3's 3e-3
    sel = finals[0].selection
    assert sel.pruner == "halving" and sel.trials == 9 and sel.pruned == 5 and list(sel.reached) == [3, 3, 3, 3, 9, 9, 3]
    assert sel.scores[4] == pytest.approx(1.0) and sel.scores[5] == pytest.approx(-1.0)  # each rate at its last rung: step 9 for these two
    assert sel.scores[0] == pytest.approx(1 - (3e-3 - 1e-5) / 3e-3)  # ... and step 3 for the rest
    assert any("lr 0.003, 0.001 go on to step 9" in line for line in lines)
    again, relaunched = fake_stage(tmp_path / "again", val_best=0.0, eval_best=1e-3, by_steps={3: 3e-3, 9: 1e-3})
    tune.run_tuning(jobs, make_cfg, again, log=lambda line: None)
    assert relaunched == launched  # the same cuts on a relaunch: the same jobs, so a real launcher skips every one
    with pytest.raises(ConfigError, match="tune.min_steps"):
        tune.run_tuning([jobs[0] + ["tune.min_steps=27"]], make_cfg, launch, log=lambda line: None)
    with pytest.raises(ConfigError, match="tune.pruner"):
        tune.run_tuning([jobs[0] + ["tune.mode=tpe"]], make_cfg, launch, log=lambda line: None)


def test_a_halving_trial_stops_at_its_rung_on_the_finals_schedule_and_is_scored_once(tmp_path: Path):
    base = ["model=tiny-bert", "method=lora", "tracking=none", f"results_dir={tmp_path}", "train.max_steps=27", "train.lr=0.001",
            "train.batch_size=4", "validation.examples=16", "validation.score_on=validation", "tune.pruner=halving",
            "train.eval_every=0", "inference.enabled=false", "forgetting.enabled=false", "keep_artifacts=false"]
    rec = run(make_cfg(base + ["train.stop_after=9"]))
    assert rec["run"]["status"] == "success" and [p["step"] for p in rec["curve"]] == list(range(1, 10))
    assert not any("eval" in p for p in rec["curve"]) and rec["quality"]["accuracy"] is not None  # scored at its rung only
    whole = run(make_cfg(base + [f"results_dir={tmp_path / 'whole'}", "train.eval_every=9"]))
    assert [p["lr"] for p in rec["curve"]] == pytest.approx([p["lr"] for p in whole["curve"][:9]])  # the 27-step schedule, cut at 9
    assert rec["curve"][-1]["loss"] == pytest.approx(whole["curve"][8]["loss"], rel=1e-5)  # the same training, so far
    assert rec["quality"]["accuracy"] == pytest.approx(next(p["eval"]["accuracy"] for p in whole["curve"] if p["step"] == 9))
    assert rec["run"]["role"] == "trial" and rec["speed"]["flops_per_token"] is None  # a trial skips the FLOP count's extra step
    plain = run(make_cfg([b for b in base if not b.startswith("validation.score_on")] + [f"results_dir={tmp_path / 'plain'}", "train.stop_after=9"]))
    assert plain["run"]["role"] == "run" and plain["speed"]["flops_per_token"] > 0  # a run that is no trial counts them
    with pytest.raises(ConfigError, match="train.stop_after"):
        run(make_cfg(base + ["train.stop_after=28"]))


def test_a_tuned_final_records_what_its_tuning_cost_in_final_runs_and_the_validation_noise(tmp_path: Path):
    selection = ("selection={split:validation,validation_examples:16,metric:accuracy,mode:grid,trials:2,trial_steps:4,"
                 "lrs:[0.001,0.01],chosen_lr:0.001,cost_s:30.0,validation_se:0.05}")
    cfg = make_cfg(["model=tiny-bert", "method=lora", "tracking=none", f"results_dir={tmp_path}", "train.max_steps=4", "train.lr=0.001",
                    "train.batch_size=4", "validation.examples=16", "eval.max_examples=8", "inference.enabled=false",
                    "forgetting.enabled=false", "keep_artifacts=false", selection])
    rec = run(cfg)
    seconds = tune.run_seconds(rec["run"])
    assert rec["run"]["role"] == "final" and rec["selection"]["cost_ratio"] == pytest.approx(30.0 / seconds, rel=0.01)
    jsonschema.validate(rec, json.loads((ROOT / "bench" / "records" / "schema.json").read_text()))


def test_the_validation_noise_is_the_bootstrap_standard_error_of_the_chosen_trials_score():
    import math

    from bench.measure import significance

    rec = trial_record(1e-3, 0.8)
    rec["run"]["seed"] = 0
    rec["quality"]["per_example"] = {"predictions": [1] * 80 + [0] * 20, "references": [1] * 100}  # accuracy 0.8 on 100 rows
    se = significance.standard_error(rec, "accuracy")
    assert se == pytest.approx(math.sqrt(0.8 * 0.2 / 100), rel=0.15)  # the binomial standard error, 0.04
    assert significance.standard_error(trial_record(1e-3, 0.8), "accuracy") is None  # kept no predictions: no figure
    assert tune.select([rec, trial_record(1e-2, 0.5)], "accuracy", "grid")["validation_se"] == pytest.approx(se, abs=1e-5)


def test_two_searches_differing_only_in_their_trials_leave_one_tuned_row_the_newest(tmp_path: Path):
    """tune.trials=3, then tune.trials=5, into one results folder: the second search's finals are a
    new search (other lrs), never skipped as the first's, and the report keeps only the newest."""
    import pandas as pd

    from bench.records.store import same_search
    from bench.report.frames import stale_finals

    selections = []
    for trials in (3, 5):
        jobs = [["seed=0", "method=lora", "model=tiny-bert", f"tune.trials={trials}", "tune.val_examples=10", "tune.max_steps=4"]]
        launch, launched = fake_stage(tmp_path / f"search-{trials}", val_best=5e-4, eval_best=5e-4)
        tune.run_tuning(jobs, make_cfg, launch, log=lambda line: None)
        final = [job for job in launched if "validation.score_on=validation" not in job]
        selections.append(dict(make_cfg(final[0]).selection))
    assert not same_search({"config": {"selection": selections[0]}}, selections[1])  # the relaunch does not reuse the first's finals
    runs = pd.DataFrame([{"id": f"f{i}", "role": "final", "study": "s", "started_at": f"2026-01-0{i + 1}T00:00:00", "selection": sel}
                         for i, sel in enumerate(selections)])
    assert stale_finals(runs) == ["f0"]


def test_the_report_shows_each_halving_rate_at_its_last_rung_and_marks_the_outranked_ones_pruned():
    from bench.report.frames import last_rungs, runs_frame

    def rung(lr: float, score: float, steps: int | None) -> dict:
        rec = trial_record(lr, score, steps=27)
        rec["run"].update(id=f"t-{lr}-{steps}", model="m", task="t", method="lora", seed=0)
        rec["run"]["config"]["train"]["stop_after"] = steps
        return rec

    records = [rung(1e-4, 0.60, 3), rung(1e-3, 0.70, 3), rung(1e-2, 0.80, 3), rung(1e-3, 0.85, 9), rung(1e-2, 0.75, 9)]
    view = last_rungs(runs_frame(records)).sort_values("lr")
    assert list(view["stop_after"]) == [3, 9, 9] and list(view["status"]) == ["pruned", "success", "success"]
    assert list(view["score"]) == [0.60, 0.85, 0.75]  # 1e-2 at step 9 (0.75), not its step-3 lead (0.80)
    plain = runs_frame([rung(1e-3, 0.7, None)])
    assert last_rungs(plain).equals(plain)  # trials without rungs pass through


def test_a_summarization_trial_scored_by_loss_skips_generation_and_its_loss_is_the_generating_runs(tmp_path: Path):
    """tune.score=loss: the trial scores the mean loss per reference token on its validation rows,
    teacher-forced, without generating; a trial that generates records the same loss beside ROUGE
    (the same training: the runs are deterministic on the CPU). The choice takes the lowest loss."""
    base = ["model=tiny-llama", "task=dialogsum", f"data_root={SHARED_DATA}", "method=lora", "tracking=none", "train.max_steps=3",
            "train.batch_size=2", "validation.examples=6", "validation.score_on=validation", "eval.max_new_tokens=4",
            "inference.enabled=false", "forgetting.enabled=false", "keep_artifacts=false"]
    by_loss = run(make_cfg(base + [f"results_dir={tmp_path / 'loss'}", "validation.score=loss"]))
    generated = run(make_cfg(base + [f"results_dir={tmp_path / 'metric'}"]))
    q, g = by_loss["quality"], generated["quality"]
    assert q["main_metric"] == "loss" and "rouge1" not in q and q["num_examples"] == 6 and len(q["per_example"]["loss"]) == 6
    assert g["main_metric"] == "rouge1" and g["loss"] == pytest.approx(q["loss"], rel=1e-5)
    assert by_loss["run"]["study"] == generated["run"]["study"] and by_loss["run"]["config_hash"] != generated["run"]["config_hash"]
    scored = [trial_record(1e-4, None), trial_record(1e-3, None)]
    for rec, loss in zip(scored, (2.1, 1.7)):
        rec["quality"] = {"loss": loss, "main_metric": "loss"}
    assert tune.select(scored, "loss", "grid")["chosen_lr"] == 1e-3  # lower is better


@pytest.mark.parametrize("knob", ["tune.score=loss", "validation.score=loss"])
def test_scoring_trials_by_loss_on_a_task_kind_without_one_is_refused_naming_the_field(knob: str):
    from bench.config.checks import check

    with pytest.raises(ConfigError, match=knob.split("=")[0].replace(".", r"\.")) as err:
        check(make_cfg(["model=tiny-llama", "task=synthetic", knob]))  # its metric is a loss already
    assert "classification, summarization" in str(err.value)
    check(make_cfg(["task=sst2", knob]))  # classification: the labels' cross-entropy


def test_a_classification_trial_scored_by_loss_ranks_by_cross_entropy_and_keeps_its_accuracy(tmp_path: Path):
    """The loss comes from the same logits as the labels: lower is better, and the constant-class
    rule still ranks a one-class trial last."""
    base = ["model=tiny-bert", "method=lora", "tracking=none", f"results_dir={tmp_path}", "train.max_steps=3", "train.batch_size=4",
            "validation.examples=16", "validation.score_on=validation", "inference.enabled=false", "forgetting.enabled=false",
            "keep_artifacts=false", "validation.score=loss"]
    rec = run(make_cfg(base))
    q = rec["quality"]
    assert q["main_metric"] == "loss" and q["loss"] > 0 and q["accuracy"] is not None and len(q["per_example"]["loss"]) == 16
    import math
    import statistics

    from bench.measure import significance

    assert significance.standard_error(rec, "loss") == pytest.approx(
        statistics.stdev(q["per_example"]["loss"]) / math.sqrt(16), rel=0.25)  # the loss's own bootstrap, not the accuracy's
    low, high, stuck = trial_record(1e-4, None), trial_record(1e-3, None), trial_record(1e-2, None)
    for r, loss in ((low, 0.55), (high, 0.40), (stuck, 0.30)):
        r["quality"] = {"loss": loss, "main_metric": "loss", "constant_predictions": r is stuck}
    assert tune.ranked([low, high, stuck], "loss") == [1e-3, 1e-4, 1e-2]  # the choice: a one-class trial last
    assert tune.ranked([low, high, stuck], "loss", constant_last=False) == [1e-2, 1e-3, 1e-4]  # a promotion: by the loss alone


@pytest.mark.system
def test_a_tuned_generation_sweep_scored_by_loss_chooses_by_it_and_a_metric_search_never_reuses_its_trials(tmp_path: Path):
    """tune.score=loss end to end on a summarization task: the trials score the reference loss
    (no ROUGE), the finals record that the lr was chosen by loss and score ROUGE and loss on the
    eval split, the tuning table names the loss; the same sweep with tune.score=metric runs its own
    trials (validation.score is part of a trial's identity)."""
    results = tmp_path / "results"
    args = [sys.executable, "-m", "bench", "-m", "model=tiny-llama", "task=dialogsum", f"data_root={SHARED_DATA}", "method=lora",
            "tracking=none", "train.batch_size=2", "train.max_steps=4", "eval.max_examples=4", "eval.max_new_tokens=4",
            "inference.enabled=false", "forgetting.enabled=false", "keep_artifacts=false", "tune.enabled=true",
            "tune.lrs=[0.001,0.01]", "tune.val_examples=6", "tune.pruner=halving", "seed=0", f"results_dir={results}"]
    first = subprocess.run(args + ["tune.score=loss", f"hydra.sweep.dir={tmp_path / 's1'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    trials = [r for r in records if r["run"]["role"] == "trial"]
    (final,) = [r for r in records if r["run"]["role"] == "final"]
    assert len(trials) == 4 and all(r["run"]["config"]["validation"]["score"] == "loss" and r["quality"]["main_metric"] == "loss"
                                    and "rouge1" not in r["quality"] for r in trials)
    assert final["selection"]["metric"] == "loss" and {"rouge1", "loss"} <= set(final["quality"])
    jsonschema.validate(final, json.loads((ROOT / "bench" / "records" / "schema.json").read_text()))
    out = subprocess.run([sys.executable, "-m", "bench", "report", f"results_dir={results}", f"output_dir={tmp_path / 'report'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    table = next((tmp_path / "report" / "tables").glob("*__tuning.md")).read_text()
    assert "validation loss by lr" in table
    again = subprocess.run(args + ["tune.score=metric", f"hydra.sweep.dir={tmp_path / 's2'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(results.glob("*.json"))) == len(records) + 5  # 4 trials scored by ROUGE and their final: nothing reused
