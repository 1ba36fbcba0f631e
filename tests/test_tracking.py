"""W&B tracking, read back from the offline run's own file and compared with the record; a
tracker that fails never costs the record."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bench.records import tracking
from bench.run.pipeline import run
from wandb_log import read_offline_run


def _offline_run(record: dict) -> dict:
    """The offline run as W&B leaves it. W&B's service can still be appending to the run file just
    after finish() returns (seen in about 1 in 4 runs of this file): read until two reads half a
    second apart agree, up to 15 s."""
    import time

    assert record["tracking"]["backend"] == "wandb" and record["tracking"]["mode"] == "offline"
    deadline, previous = time.monotonic() + 15, None
    while True:
        current = read_offline_run(record["tracking"]["dir"])
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current
        time.sleep(0.5)


def test_offline_wandb_run_holds_the_records_config_curves_and_figures(cfg_factory, tmp_path: Path):
    rec = run(cfg_factory("model=tiny-llama", "method=lora", "tracking=wandb", "train.max_steps=4", "train.eval_every=2"))
    assert rec["run"]["status"] == "success" and rec["tracking"]["error"] is None
    folder = Path(rec["tracking"]["dir"])
    assert folder.parent == tmp_path / "results" / "wandb" and folder.name.startswith("offline-run-")
    wb = _offline_run(rec)

    assert wb["run"]["display_name"] == rec["run"]["id"] and wb["run"]["job_type"] == "lora"
    assert wb["run"]["tags"] == ["tiny-llama", "embedded-sentiment"] and "run_group" not in wb["run"]  # not a sweep
    config = {k: v for k, v in wb["config"].items() if k != "_wandb"}
    assert config == {**rec["run"]["config"], "config_hash": rec["run"]["config_hash"]}

    steps = [row for row in wb["history"] if "train/loss" in row]
    assert [row["_step"] for row in steps] == [1, 2, 3, 4]
    assert [row["train/loss"] for row in steps] == pytest.approx([p["loss"] for p in rec["curve"]], rel=1e-12)
    assert [row["train/lr"] for row in steps] == pytest.approx([p["lr"] for p in rec["curve"]], rel=1e-12)

    summary = wb["summary"]
    assert summary["params/trainable"] == rec["params"]["trainable"] and summary["params/total"] == rec["params"]["total"]
    assert summary["memory/peak_bytes"] == rec["memory"]["peak_bytes"]
    assert summary["memory/breakdown/gradients_bytes"] == rec["memory"]["breakdown"]["gradients_bytes"]
    assert summary["speed/step_time_median_s"] == pytest.approx(rec["speed"]["step_time_median_s"])
    assert summary["storage/bytes"] == rec["storage"]["bytes"]
    assert summary["run/status"] == "success" and summary["run/config_hash"] == rec["run"]["config_hash"]
    # tiny-llama has random weights: speed and memory only, so no quality in W&B either
    assert summary["run/random_weights"] is True
    assert not any(k.startswith(("quality/", "eval/")) for k in summary)
    assert not any(k.startswith("eval/") for row in wb["history"] for k in row)
    assert wb["exit_code"] == 0
    on_disk = json.loads(Path(rec["run"]["path"]).read_text())
    jsonschema.validate(on_disk, json.loads((Path(tracking.__file__).parent / "schema.json").read_text()))
    assert json.loads((folder / "files" / "record.json").read_text())["run"]["id"] == on_disk["run"]["id"]
    assert on_disk["tracking"] == rec["tracking"]


def test_quality_goes_to_wandb_for_pretrained_weights(cfg_factory):
    """MiniLM has real weights: its eval curve and final quality are mirrored."""
    rec = run(cfg_factory("model=minilm-l6", "method=bitfit", "tracking=wandb", "train.max_steps=2", "train.eval_every=1",
                          "inference.enabled=false", "forgetting.enabled=false"))
    wb = _offline_run(rec)
    assert wb["summary"]["quality/accuracy"] == rec["quality"]["accuracy"]
    evals = [row for row in wb["history"] if "eval/accuracy" in row]
    assert [row["_step"] for row in evals] == [1, 2]
    assert evals[0]["eval/accuracy"] == rec["curve"][0]["eval"]["accuracy"]
    assert evals[-1]["eval/accuracy"] == rec["quality"]["accuracy"]


def test_a_wandb_that_cannot_start_leaves_the_run_and_record_whole(cfg_factory, tmp_path: Path):
    """No place to write (a file where the folder should be): the run completes and says why."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    rec = run(cfg_factory("model=tiny-bert", "method=lora", "tracking=wandb", f"tracking.dir={blocker / 'sub'}"))
    assert rec["run"]["status"] == "success"
    assert rec["tracking"]["error"].startswith("wandb.init: ") and rec["tracking"]["run_id"] is None
    assert json.loads(Path(rec["run"]["path"]).read_text())["tracking"]["error"] == rec["tracking"]["error"]


def test_a_wandb_that_fails_mid_run_is_dropped_and_the_run_goes_on(cfg_factory, monkeypatch):
    """A network or disk error while logging: W&B is closed for this run, the record is complete."""
    import wandb.sdk.wandb_run as wandb_run

    def broken_log(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wandb_run.Run, "log", broken_log)
    rec = run(cfg_factory("model=tiny-bert", "method=lora", "tracking=wandb"))
    assert rec["run"]["status"] == "success" and rec["quality"]["num_examples"] == 8
    assert rec["tracking"]["error"] == "wandb.log: OSError: [Errno 28] No space left on device"
    assert Path(rec["run"]["path"]).is_file()


def test_a_failed_run_closes_its_wandb_run_as_failed(cfg_factory, monkeypatch):
    """A NaN loss mid-training is a failed row, and its W&B run exits with code 1."""
    import bench.run.pipeline
    from bench.run.train import NonFiniteLoss

    def nan_at_step_1(*args, **kwargs):
        raise NonFiniteLoss("loss is nan at step 1")

    monkeypatch.setattr(bench.run.pipeline, "train", nan_at_step_1)
    rec = run(cfg_factory("model=tiny-bert", "method=full", "tracking=wandb"))
    assert rec["run"]["status"] == "failed" and rec["run"]["error"] == "diverged: loss is nan at step 1"
    wb = _offline_run(rec)
    assert wb["exit_code"] == 1 and wb["summary"]["run/status"] == "failed"


def test_mode_is_online_with_a_key_offline_without_and_wandb_mode_wins(monkeypatch, tmp_path: Path):
    from omegaconf import OmegaConf

    tcfg = OmegaConf.create({"mode": "auto"})
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert tracking.resolve_mode(tcfg) == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert tracking.resolve_mode(tcfg) == "online"
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "abc123")
    assert tracking.resolve_mode(tcfg) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking.resolve_mode(tcfg) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert type(tracking.start(OmegaConf.create({"tracking": {"name": "wandb", "mode": "auto"}}), {})) is tracking.Tracker
    assert tracking.resolve_mode(OmegaConf.create({"mode": "offline"})) == "disabled"


@pytest.mark.parametrize("override,field", [("tracking.mode=sometimes", "tracking.mode"),
                                            ("tracking.init_timeout=0", "tracking.init_timeout"),
                                            ("force=maybe", "force")])
def test_bad_tracking_settings_fail_before_any_model_loads(cfg_factory, override: str, field: str):
    from bench.config.plan import validate
    from bench.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate(cfg_factory("model=tiny-bert", "tracking=wandb", override))
    assert info.value.field == field


def test_flat_figures_keeps_scalars_and_drops_lists():
    record = {"run": {"status": "success", "random_weights": False}, "params": {"trainable": 5},
              "memory": {"breakdown": {"weights_bytes": 10}}, "storage": {"bytes": 3, "files": ["a"]}, "curve": [{"loss": 1}]}
    flat = tracking.flat_figures(record)
    assert flat["params/trainable"] == 5 and flat["memory/breakdown/weights_bytes"] == 10 and flat["storage/bytes"] == 3
    assert "storage/files" not in flat and not any(k.startswith("curve") for k in flat)


def test_both_trackers_name_a_curve_point_alike_and_wandb_mode_leaves_mlflow_alone(monkeypatch):
    """step_row is the one naming of a curve point (W&B and MLflow, and the W&B workspace's panels
    read it); WANDB_MODE=disabled turns W&B off, not MLflow."""
    from omegaconf import OmegaConf

    point = {"step": 3, "loss": 0.5, "lr": 1e-3, "step_time_s": 0.1, "eval": {"accuracy": 0.75, "main_metric": "accuracy"}}
    assert tracking.step_row(point) == {"train/loss": 0.5, "train/lr": 1e-3, "train/step_time_s": 0.1, "eval/accuracy": 0.75}
    assert tracking.step_row(point, log_quality=False) == {"train/loss": 0.5, "train/lr": 1e-3, "train/step_time_s": 0.1}
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(tracking, "MlflowTracker", lambda cfg, record: "an MLflow tracker")
    assert tracking.start(OmegaConf.create({"tracking": {"name": "mlflow"}}), {}) == "an MLflow tracker"
    assert type(tracking.start(OmegaConf.create({"tracking": {"name": "wandb", "mode": "auto"}}), {})) is tracking.Tracker
