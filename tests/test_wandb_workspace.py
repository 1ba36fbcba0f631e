"""`peft-bench wandb-workspace`: the workspace definition written offline for a reference folder's
records holds the panels the suite promises, each reading a key that bench/records/tracking.py
logs for those very records; a bad project string exits 2 naming `project` before wandb loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import invoke
from bench.records import tracking
from bench.records.store import load_records
from conftest import ROOT

pytest.importorskip("wandb_workspaces", reason="W&B's workspace library is not installed (pip install 'wandb-workspaces==0.4.13')")

REFERENCE = ROOT / "results" / "reference" / "glue-minilm-tuned"  # a tuned GLUE sweep: every method, LoRA at five ranks
TINY = ROOT / "results" / "reference" / "all-methods-tiny"  # random weights: cost figures only


def _write(tmp_path: Path, folder: Path, *extra: str) -> dict:
    out = tmp_path / "workspace.json"
    assert invoke(["wandb-workspace", "my-team/peft-bench", f"results_dir={folder}", f"out={out}", "mode=offline", *extra]) == 0
    return json.loads(out.read_text())


def _panels(definition: dict) -> dict[str, list[dict]]:
    sections = definition["spec"]["section"]["panelBankConfig"]["sections"]
    return {s["name"]: s["panels"] for s in sections}


def _kind(definition: dict, view_type: str) -> list[dict]:
    return [p["config"] for panels in _panels(definition).values() for p in panels if p["viewType"] == view_type]


def test_the_offline_definition_for_the_reference_records_has_every_panel_on_keys_tracking_logs(tmp_path: Path, capsys):
    records = load_records(REFERENCE)
    lora = next(r for r in records if r["run"]["method"] == "lora" and r["run"]["status"] == "success" and r.get("selection"))  # a tuned final
    main = lora["quality"]["main_metric"]
    summary = tracking.flat_figures(lora)  # what the W&B run's summary holds for this record
    history = {k for point in lora["curve"] for k in tracking.step_row(point)}  # its curves
    quality = f"quality/{main}"
    assert main == "accuracy" and {quality, "params/trainable", "memory/peak_bytes", "speed/step_time_median_s", "speed/tokens_per_s"} <= set(summary)
    assert {"train/loss", f"eval/{main}"} <= history
    assert sorted({r["run"]["config"]["method"].get("r") for r in records if r["run"]["method"] == "lora"}) == [1, 4, 8, 16, 64]

    definition = _write(tmp_path, REFERENCE)
    assert (definition["entity"], definition["project"], definition["displayName"]) == ("my-team", "peft-bench", "peft-bench sst2 (accuracy)")
    assert list(_panels(definition)) == ["Quality against cost", "Speed and cost", "Knobs", "Curves"]
    runset = definition["spec"]["section"]["runSets"][0]
    assert runset["grouping"] == [{"section": "run", "name": "jobType"}]  # job_type = the method (tracking.py)

    scatters = {(p["xAxis"], p["yAxis"]): p for p in _kind(definition, "Scatter Plot")}
    y = f"summary:{quality}"
    assert set(scatters) == {("summary:params/trainable", y), ("summary:memory/peak_bytes", y), ("config:method.value.r", y)}
    assert scatters[("config:method.value.r", y)]["showAvgYAxisLine"] is True  # rank vs score: the mean over runs as a line
    assert scatters[("config:method.value.r", y)]["xAxisLogScale"] is True and scatters[("summary:params/trainable", y)]["xAxisLogScale"] is True

    bars = _kind(definition, "Bar Chart")
    assert [b["metrics"] for b in bars] == [["speed/step_time_median_s"], ["speed/tokens_per_s"], ["memory/peak_bytes"]]
    assert all(b["groupBy"] == "jobType" and b["groupAgg"] == "mean" for b in bars)

    (parallel,) = _kind(definition, "Parallel Coordinates Plot")
    assert [c["accessor"] for c in parallel["columns"]] == ["config:train.value.lr", "config:method.value.r", "config:method.value.name",
                                                           "config:model.value.name", y]
    config = lora["run"]["config"]  # W&B's config is the record's: these paths hold the knobs
    assert (config["train"]["lr"], config["method"]["name"], config["model"]["name"]) == (lora["selection"]["chosen_lr"], "lora", "minilm-l6")

    assert [p["metrics"] for p in _kind(definition, "Run History Line Plot")] == [["train/loss"], [f"eval/{main}"]]
    columns = runset["runFeed"]["columnOrder"]
    assert columns[:2] == ["run:displayName", y] and "summary:memory/peak_bytes" in columns
    out = capsys.readouterr().out
    assert "main metric accuracy" in out and "peft-bench wandb-workspace save=" in out  # how to save it later


def test_random_weight_records_get_cost_panels_and_no_quality(tmp_path: Path):
    definition = _write(tmp_path, TINY)
    assert list(_panels(definition)) == ["Speed and cost", "Knobs", "Curves"]
    assert not _kind(definition, "Scatter Plot")
    (parallel,) = _kind(definition, "Parallel Coordinates Plot")
    assert not any(c["accessor"].startswith("summary:quality/") for c in parallel["columns"])
    assert [p["metrics"] for p in _kind(definition, "Run History Line Plot")] == [["train/loss"]]


def test_a_file_written_offline_saves_later_as_it_was(tmp_path: Path, monkeypatch, capsys):
    import wandb_workspaces.workspaces as ws

    from bench.report.wandb_workspace import definition

    sweep = load_records(REFERENCE)[0]["run"]["sweep"]  # the folder that launched the reference sweep
    written = _write(tmp_path, REFERENCE, f"sweep={sweep}", "name=glue")
    assert written["spec"]["section"]["runSets"][0]["filters"]["filters"] == [
        {"key": {"section": "run", "name": "group"}, "op": "=", "value": sweep, "disabled": False}]  # a sweep is a W&B group
    saved = []
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self) or self)
    assert invoke(["wandb-workspace", f"save={tmp_path / 'workspace.json'}"]) == 0
    assert json.loads(json.dumps(definition(saved[0]))) == written
    assert invoke(["wandb-workspace", "other/place", f"save={tmp_path / 'workspace.json'}"]) == 0
    assert (saved[1].entity, saved[1].project, saved[1].name) == ("other", "place", "glue")
    assert "saved: workspace 'glue' in other/place" in capsys.readouterr().out


def test_online_a_save_that_fails_exits_1_and_keeps_the_file(tmp_path: Path, monkeypatch, capsys):
    import wandb_workspaces.workspaces as ws

    def refused(self):
        raise ConnectionError("no network")

    monkeypatch.setattr(ws.Workspace, "save", refused)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the tests' offline default would win over mode=online
    out = tmp_path / "w.json"
    assert invoke(["wandb-workspace", "me/p", f"results_dir={REFERENCE}", f"out={out}", "mode=online"]) == 1
    assert out.is_file() and "not saved (ConnectionError: no network)" in capsys.readouterr().err


@pytest.mark.parametrize("args,field", [
    (["a/b/c"], "project"), (["nobody"], "project"), (["me/"], "project"), (["me/p?1"], "project"), (["/p"], "project"), ([], "project"),
    (["me/p", "results_dir=/nonexistent/folder"], "results_dir"), (["me/p", f"results_dir={REFERENCE}", "metric=bleu"], "metric"),
    (["me/p", f"results_dir={REFERENCE}", "sweep=/no/such/sweep"], "sweep"), (["me/p", "mode=sometimes"], "mode"),
    (["save=/nonexistent/w.json"], "save"), (["me/p", "colour=red"], "colour")])
def test_bad_input_exits_2_naming_the_field(args: list[str], field: str, capsys):
    assert invoke(["wandb-workspace", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"config error: {field}="), err


def test_a_bad_project_is_refused_before_wandb_is_imported():
    code = ("import sys\nfrom bench.cli import invoke\n"
            "rc = invoke(['wandb-workspace', 'my team/peft-bench'])\n"
            "print(rc, 'wandb' in sys.modules, 'wandb_workspaces' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["2", "False", "False"], proc.stderr
    assert "project='my team/peft-bench' is not valid: entity/project" in proc.stderr
