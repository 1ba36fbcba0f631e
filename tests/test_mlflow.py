"""MLflow tracking (tracking=mlflow, an optional extra): a real run written to a local SQLite store
and read back with MlflowClient, compared with the record; a tracker that cannot start never costs
the record; without the package the run is refused before any model loads."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bench.errors import ConfigError
from bench.records import tracking
from bench.run.pipeline import run
from conftest import ROOT

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason=f"MLflow is an optional extra, not installed here ({tracking.MLFLOW_INSTALL})")


def _store(rec: dict):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=rec["tracking"]["tracking_uri"])


@pytest.mark.system  # 15 to 20 s: MLflow builds its SQLite tables once per store
@needs_mlflow
def test_a_run_goes_to_the_local_sqlite_store_with_its_params_curves_and_final_quality(cfg_factory, tmp_path: Path):
    """MiniLM has real weights, so its eval curve and final quality are mirrored too."""
    rec = run(cfg_factory("model=minilm-l6", "method=bitfit", "tracking=mlflow", "train.max_steps=2", "train.eval_every=1",
                          "inference.enabled=false", "forgetting.enabled=false"))
    assert rec["run"]["status"] == "success" and rec["tracking"]["error"] is None
    assert rec["tracking"]["backend"] == "mlflow" and rec["tracking"]["mode"] == "local"
    assert rec["tracking"]["tracking_uri"] == f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}" and (tmp_path / "results" / "mlflow.db").is_file()
    client = _store(rec)
    mlrun = client.get_run(rec["tracking"]["run_id"])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == rec["run"]["id"]
    assert client.get_experiment(mlrun.info.experiment_id).name == "peft-bench"
    assert {k: mlrun.data.tags[k] for k in ("method", "model", "task")} == {"method": "bitfit", "model": "minilm-l6", "task": "embedded-sentiment"}

    params, config = mlrun.data.params, rec["run"]["config"]
    assert params["train.lr"] == str(config["train"]["lr"]) and params["train.max_steps"] == "2"
    assert params["method.name"] == "bitfit" and params["model.name"] == "minilm-l6" and params["config_hash"] == rec["run"]["config_hash"]
    assert params["task.metrics"] == json.dumps(config["task"]["metrics"])  # a list, as JSON
    assert len(params) == len(tracking.flat_params(config)) + 1

    history = client.get_metric_history(mlrun.info.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([p["loss"] for p in rec["curve"]], rel=1e-12)
    assert [m.value for m in client.get_metric_history(mlrun.info.run_id, "train/lr")] == pytest.approx([p["lr"] for p in rec["curve"]])
    evals = client.get_metric_history(mlrun.info.run_id, "eval/accuracy")
    assert sorted({m.step for m in evals}) == [1, 2]  # each evaluation; the final one at the last step (MLflow keeps one of two equal points)
    assert evals[0].value == pytest.approx(rec["curve"][0]["eval"]["accuracy"]) and evals[-1].value == pytest.approx(rec["quality"]["accuracy"])

    metrics = mlrun.data.metrics  # the record's figures, under the names W&B's summary uses
    assert metrics["quality/accuracy"] == pytest.approx(rec["quality"]["accuracy"]) and metrics["quality/f1"] == pytest.approx(rec["quality"]["f1"])
    assert metrics["params/trainable"] == rec["params"]["trainable"] and metrics["memory/peak_bytes"] == rec["memory"]["peak_bytes"]
    assert metrics["speed/step_time_median_s"] == pytest.approx(rec["speed"]["step_time_median_s"])
    assert mlrun.data.tags["run/status"] == "success" and mlrun.data.tags["quality/main_metric"] == rec["quality"]["main_metric"]

    on_disk = json.loads(Path(rec["run"]["path"]).read_text())
    jsonschema.validate(on_disk, json.loads((Path(tracking.__file__).parent / "schema.json").read_text()))
    assert on_disk["tracking"] == rec["tracking"]
    copy = Path(client.download_artifacts(mlrun.info.run_id, "record.json", str(tmp_path)))
    assert json.loads(copy.read_text()) == {**on_disk, "run": {**on_disk["run"], "path": rec["run"]["path"]}}  # the record, and where it lies
    assert Path(rec["tracking"]["dir"]).is_dir() and Path(rec["tracking"]["dir"]).is_relative_to(tmp_path / "results" / "mlflow-artifacts")


@needs_mlflow
def test_an_mlflow_that_cannot_start_leaves_the_run_and_record_whole(cfg_factory, tmp_path: Path):
    """No place for the store (a file where its folder should be): the run completes and says why."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    rec = run(cfg_factory("model=tiny-bert", "method=lora", "tracking=mlflow", f"tracking.tracking_uri=sqlite:///{blocker}/sub/mlflow.db"))
    assert rec["run"]["status"] == "success" and rec["quality"]["num_examples"] == 8
    assert rec["tracking"]["error"].startswith("mlflow.start_run: ") and rec["tracking"]["run_id"] is None
    assert json.loads(Path(rec["run"]["path"]).read_text())["tracking"]["error"] == rec["tracking"]["error"]


def test_tracking_mlflow_without_the_package_is_refused_before_any_model_loads(cfg_factory, monkeypatch, tmp_path: Path):
    import bench.run.pipeline

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow fails, find_spec finds nothing: as if not installed
    monkeypatch.setattr(bench.run.pipeline, "execute", lambda *a, **k: pytest.fail("the run started"))
    with pytest.raises(ConfigError) as info:
        run(cfg_factory("model=tiny-bert", "tracking=mlflow"))
    assert info.value.field == "tracking" and "pip install -e '.[mlflow]'" in str(info.value)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").glob("*.json"))


def test_the_command_line_refuses_tracking_mlflow_without_the_package_in_one_line(tmp_path: Path):
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "from bench.cli import main\n"
            f"main(['model=tiny-bert', 'tracking=mlflow', 'results_dir={tmp_path / 'results'}'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "config error: tracking='mlflow' is not valid: an installed tracker; MLflow is not installed: "
        "pip install -e '.[mlflow]' (or tracking=wandb, tracking=none)"]
    assert not (tmp_path / "results").exists()


@needs_mlflow
@pytest.mark.parametrize("override,field", [("tracking.experiment=' '", "tracking.experiment"), ("tracking.tracking_uri=null", "tracking.tracking_uri")])
def test_a_bad_mlflow_setting_fails_before_any_model_loads(cfg_factory, override: str, field: str):
    from bench.config.plan import validate

    with pytest.raises(ConfigError) as info:
        validate(cfg_factory("model=tiny-bert", "tracking=mlflow", override))
    assert info.value.field == field


def test_flat_params_names_each_leaf_by_its_dotted_path():
    flat = tracking.flat_params({"train": {"lr": 0.001, "max_steps": 3}, "task": {"metrics": ["accuracy", "f1"]}, "forgetting": {"text": None},
                                 "selection": {}, "note": "x" * 7000})
    assert flat == {"train.lr": "0.001", "train.max_steps": "3", "task.metrics": '["accuracy", "f1"]', "forgetting.text": "None",
                    "selection": "{}", "note": "x" * 6000}
