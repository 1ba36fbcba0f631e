"""One tiny run per task kind and model family, each checked through its record."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bench.methods import METHODS
from bench.records.store import SCHEMA_PATH, load_records
from bench.run.pipeline import run
from conftest import tiered, write_dialogsum_like

SCHEMA = json.loads(SCHEMA_PATH.read_text())


def _check(record: dict) -> dict:
    assert record["run"]["status"] == "success", record["run"].get("traceback") or record["run"]["error"]
    on_disk = json.loads(Path(record["run"]["path"]).read_text())
    jsonschema.validate(on_disk, SCHEMA)
    return on_disk


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama", "tiny-t5"])
@pytest.mark.parametrize("method", ["none", "full", "lora"])
def test_classification_every_family(cfg_factory, model: str, method: str):
    rec = _check(run(cfg_factory(f"model={model}", f"method={method}", "task=embedded-sentiment")))
    assert rec["run"]["random_weights"] is True
    assert rec["quality"]["num_examples"] == 8
    assert 0.0 <= rec["quality"]["accuracy"] <= 1.0
    if method == "none":
        assert rec["params"]["trainable"] == 0
        assert rec["speed"]["steps"] == 0 and rec["storage"]["bytes"] == 0 and rec["memory"]["phase"] == "eval"
    else:
        assert rec["speed"]["steps"] == 3 and len(rec["curve"]) == 3
        assert rec["speed"]["tokens_per_s"] > 0 and rec["speed"]["step_time_median_s"] > 0
        assert rec["storage"]["bytes"] > 0 and rec["memory"]["phase"] == "train"
    if method == "full":
        assert rec["params"]["trainable"] == rec["params"]["total"]


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-t5"])
@pytest.mark.parametrize("method", ["none", "lora"])
def test_summarization_decoder_and_encoder_decoder(cfg_factory, tmp_path: Path, model: str, method: str):
    root = write_dialogsum_like(tmp_path / "data")
    rec = _check(run(cfg_factory(f"model={model}", f"method={method}", "task=dialogsum", f"data_root={root}")))
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert 0.0 <= rec["quality"][key] <= 1.0
    assert rec["quality"]["num_examples"] == 6
    assert rec["quality"]["main_metric"] == "rouge1"


def test_storage_equals_saved_files(cfg_factory):
    rec = _check(run(cfg_factory("model=tiny-bert", "method=lora")))
    folder = Path(rec["storage"]["path"])
    assert rec["storage"]["bytes"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert rec["storage"]["files"] == ["adapter_config.json", "adapter_model.safetensors"]


def test_keep_artifacts_false_still_measures_storage(cfg_factory):
    rec = _check(run(cfg_factory("model=tiny-bert", "method=full", "keep_artifacts=false")))
    assert rec["storage"]["bytes"] > 0 and rec["storage"]["path"] is None
    assert not (Path(rec["run"]["config"]["results_dir"]) / "artifacts" / rec["run"]["id"]).exists()


def _spy_save(monkeypatch, method: str, fail: BaseException | None = None) -> list[Path]:
    """Replace the method's save (as registered) with one that notes each folder it is given, then
    saves for real, or writes a 0-byte file (as peft's model card is written first) and raises `fail`."""
    from dataclasses import replace

    entry, folders = METHODS[method], []

    def save(model, folder: Path) -> None:
        folders.append(Path(folder))
        if fail is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "README.md").write_bytes(b"")
            raise fail
        entry.save(model, folder)

    monkeypatch.setitem(METHODS, method, replace(entry, save=save))
    return folders


def test_unkept_artifacts_are_measured_outside_results_dir(cfg_factory, monkeypatch):
    """keep_artifacts=false writes nothing into results_dir (a full results disk cannot fail the
    run there); the figure is still the bytes on disk of the files the method saves."""
    folders = _spy_save(monkeypatch, "full")
    cfg = cfg_factory("model=tiny-bert", "method=full", "keep_artifacts=false", "inference.enabled=false", "forgetting.enabled=false")
    done = run(cfg)
    rec = _check(done)
    results = Path(cfg.results_dir).resolve()
    assert len(folders) == 1 and results not in folders[0].resolve().parents
    assert not folders[0].exists()  # the temporary folder is gone
    assert rec["storage"]["files"] == ["model.safetensors"] and "estimated" not in rec["storage"]
    assert rec["storage"]["bytes"] > rec["params"]["total"] * 4  # the tensors and the file's header
    assert sorted(p.name for p in results.iterdir()) == [Path(done["run"]["path"]).name]


@pytest.mark.parametrize("keep", [True, False])
def test_a_save_that_fails_leaves_no_partial_files(cfg_factory, monkeypatch, keep: bool):
    """The disk fills up while the method saves: kept artifacts make the run a failed record and
    leave nothing behind (no 0-byte README.md); unkept ones only measure, so the finished run is a
    success whose storage figure is the tensors' bytes and says so."""
    import errno

    _spy_save(monkeypatch, "full", OSError(errno.ENOSPC, "No space left on device"))
    cfg = cfg_factory("model=tiny-bert", "method=full", f"keep_artifacts={str(keep).lower()}", "inference.enabled=false",
                      "forgetting.enabled=false")
    rec = run(cfg)
    results = Path(cfg.results_dir)
    assert sorted(p.name for p in results.iterdir()) == [Path(rec["run"]["path"]).name]  # the record alone: no artifacts/
    if keep:
        assert rec["run"]["status"] == "failed" and "No space left on device" in rec["run"]["error"]
    else:
        on_disk = _check(rec)
        assert on_disk["storage"]["bytes"] == on_disk["params"]["trainable"] * 4 and on_disk["storage"]["path"] is None
        assert "No space left on device" in on_disk["storage"]["estimated"]


@pytest.mark.parametrize("short", ["disk", "file_size_limit"])
def test_kept_artifacts_without_room_are_refused_before_training(cfg_factory, monkeypatch, short: str):
    """keep_artifacts=true sizes what the run will save (its trainable tensors, each once) before
    training: a disk without room, or a file size limit below it, is a failed record naming
    keep_artifacts and results_dir, written before any step; nothing is left in artifacts/."""
    import bench.records.store as store
    import bench.run.pipeline as run_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the artifacts cannot be kept")

    monkeypatch.setattr(run_module, "train", no_training)
    if short == "disk":
        monkeypatch.setattr(store, "free_bytes", lambda path: 3 << 20)
    else:
        monkeypatch.setattr(store, "file_size_limit", lambda: 2 << 20)  # ulimit -f 2048
    cfg = cfg_factory("model=tiny-bert", "method=full", "keep_artifacts=true")
    rec = run(cfg)
    error = rec["run"]["error"]
    assert rec["run"]["status"] == "failed" and "ConfigError: keep_artifacts=True is not valid" in error, error
    assert f"results_dir={cfg.results_dir!r}" in error and ("3.0 MiB free" if short == "disk" else "ulimit -f") in error
    assert sorted(p.name for p in Path(cfg.results_dir).iterdir()) == [Path(rec["run"]["path"]).name]
    assert "curve" not in rec and not rec["run"].get("refused")  # no step ran; not a refusal of the config (room can be made)
    # a method that saves little fits where the whole model does not
    assert run_module.saved_tensor_bytes(build_model("lora")) < 3 << 20 < run_module.saved_tensor_bytes(build_model("full"))


def build_model(method: str):
    from conftest import build, make_cfg

    model, task, _ = build(make_cfg(["model=tiny-bert", f"method={method}", "tracking=none"]))
    return METHODS[method].apply(model, make_cfg([f"method={method}"]).method, task)


def test_record_sections_and_env(cfg_factory):
    rec = _check(run(cfg_factory("model=tiny-bert", "method=lora", "seed=3")))
    assert rec["run"]["seed"] == 3 and len(rec["run"]["config_hash"]) == 64
    assert rec["env"]["packages"]["torch"] and rec["env"]["packages"]["transformers"]
    assert rec["env"]["device"] == "cpu" and rec["env"]["torch_threads"] >= 1
    bd = rec["memory"]["breakdown"]
    assert bd["gradients_bytes"] == bd["trainable_weights_bytes"] > 0
    assert bd["optimizer_state_bytes"] >= 2 * bd["trainable_weights_bytes"]  # AdamW: exp_avg + exp_avg_sq
    assert [p["step"] for p in rec["curve"]] == [1, 2, 3]


def test_failed_run_is_a_record_with_its_reason(cfg_factory, monkeypatch):
    import bench.run.pipeline as run_module

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(run_module, "train", boom)
    cfg = cfg_factory("model=tiny-bert", "method=full")
    rec = run(cfg)
    assert rec["run"]["status"] == "failed" and "simulated failure" in rec["run"]["error"]
    (stored,) = load_records(cfg.results_dir)
    jsonschema.validate(stored, SCHEMA)
    assert stored["run"]["status"] == "failed"


def test_config_error_in_a_sweep_becomes_a_failed_record(cfg_factory):
    cfg = cfg_factory("model=tiny-bert", "method=lora", "method.r=0")
    rec = run(cfg, sweep="sweep-a")
    assert rec["run"]["status"] == "failed" and "method.r=0" in rec["run"]["error"]
    (stored,) = load_records(cfg.results_dir)
    assert stored["run"]["sweep"] == "sweep-a"


def test_eval_every_adds_eval_points_to_curve(cfg_factory):
    rec = _check(run(cfg_factory("model=tiny-bert", "method=lora", "train.max_steps=4", "train.eval_every=2")))
    assert "accuracy" in rec["curve"][1]["eval"] and "eval" not in rec["curve"][3]


@pytest.mark.system
def test_cli_sweep_writes_a_record_per_point_and_prints_the_table(tmp_path: Path):
    """A real `-m` sweep: each point in its own process, a bad point recorded as failed, the table printed."""
    import subprocess
    import sys

    from conftest import ROOT

    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "-m", "model=tiny-bert", "method=lora", "method.r=0,2", "seed=0,1",
         "train.max_steps=2", "train.batch_size=4", "eval.max_examples=8", f"results_dir={results}",
         f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = load_records(results)
    assert len(records) == 4
    by_point = {(r["run"]["config"]["method"]["r"], r["run"]["seed"]): r["run"]["status"] for r in records}
    assert by_point == {(0, 0): "failed", (0, 1): "failed", (2, 0): "success", (2, 1): "success"}
    assert all(r["run"]["sweep"] == str(tmp_path / "multirun") for r in records)
    assert "4 points in this sweep" in proc.stdout and "method.r=0 is not valid" in proc.stdout


def test_report_table_shows_each_rows_own_main_metric():
    from bench.report.tables import markdown_table

    def rec(task: str, quality: dict) -> dict:
        return {"run": {"model": "m", "task": task, "method": "lora", "seed": 0, "status": "success", "started_at": "t"},
                "params": {"trainable": 10, "total": 100, "percent": 10.0}, "quality": quality}

    table = markdown_table([rec("a", {"main_metric": "mcc", "accuracy": 0.5, "mcc": 0.25}),
                            rec("b", {"main_metric": "rouge1", "rouge1": 0.3456})])
    assert "| mcc 0.250, accuracy 0.500 |" in table and "| rouge1 0.346 |" in table
    assert "10 (10.00%)" in table
    random = rec("c", {"main_metric": "accuracy", "accuracy": 0.9})
    random["run"]["random_weights"] = True
    assert "0.900" not in markdown_table([random]) and "not a quality result" in markdown_table([random])


PAIRS = [("tiny-bert", "embedded-sentiment"), ("tiny-llama", "embedded-sentiment"), ("tiny-t5", "embedded-sentiment"),
         ("tiny-llama", "dialogsum"), ("tiny-t5", "dialogsum")]  # (model, task): three families, two task kinds


# Of the methods declared by a YAML (one code path, bench/methods/peft_types.py), those that exercise
# each of its parts: the loop's optimizer hook (loraplus) and step hook (adalora), the save that
# converts a moved base (pissa), the head set on a config class without modules_to_save
# (trainable_tokens), norms as targets (ln_tuning), and plain wrappers (oft, vera). Every YAML method
# runs end to end on tiny-bert and tiny-llama in results/reference/all-methods-tiny (a preset).
YAML_SPREAD = ("oft", "vera", "loraplus", "adalora", "pissa", "trainable_tokens", "ln_tuning")
END_TO_END = [name for name, m in sorted(METHODS.items()) if m.trains and (not m.source or name in YAML_SPREAD)]


@pytest.mark.parametrize("method", tiered(END_TO_END, keep=("lora", "prompt_tuning")))
def test_every_method_end_to_end_or_a_failed_record_with_its_reason(cfg_factory, tmp_path: Path, method: str):
    """Each registered method on each pair, with its first test example: a success, or (where the
    method declares it refuses such a model) a failed record with that reason and nothing loaded."""
    declared = METHODS[method].refuses
    data = f"data_root={write_dialogsum_like(tmp_path / 'data')}"
    succeeded = 0
    for model, task in PAIRS:
        cfg = cfg_factory(f"model={model}", f"method={method}", f"task={task}", data, *METHODS[method].examples[0])
        record = run(cfg, sweep="test-sweep")  # inside a sweep a config error becomes a failed record
        if record["run"]["status"] == "failed" and record["run"]["error"].startswith("config: "):
            assert any(reason in record["run"]["error"] for reason in declared), (model, task, record["run"]["error"])
            assert "params" not in record  # nothing was loaded
            continue
        rec = _check(record)
        assert rec["speed"]["steps"] == 3 and rec["storage"]["bytes"] > 0, (model, task)
        assert 0 < rec["params"]["trainable"] <= rec["params"]["total"], (model, task)
        assert rec["params"]["what_trains"] == METHODS[method].summary
        assert rec["params"]["head_trainable"] == (task != "dialogsum")
        assert rec["quality"][rec["quality"]["main_metric"]] >= 0.0
        succeeded += 1
    assert succeeded >= 2, f"{method} ran on fewer than two of {PAIRS}"
