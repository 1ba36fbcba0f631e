"""Nothing lost because of where it is written, and no point run twice: results_dir proven
writable before any work, a refused record written beside it, a claim (file lock) per sweep
point, a cap on retried failures, records readable by the team, and unchanged config hashes."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench import report
from bench.errors import ConfigError
from bench.records.store import (CLAIMS, FALLBACK, PROBE_BYTES, check_max_attempts, check_results_dir, claim, config_digest,
                          load_records, write_atomic, write_record)
from conftest import ROOT, make_cfg, reference_records

SMALL = ["model=tiny-bert", "method=lora", "train.batch_size=4", "eval.max_examples=8", "eval.batch_size=8",
         "inference.enabled=false", "forgetting.enabled=false", "tracking=none"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}


def bench(args: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, file_limit: int | None = None,
          timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; file_limit: `ulimit -f` in bytes for the child only."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))) if file_limit else None
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def tree_top(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def a_record(run_id: str = "20260101-000000-000000-x-y-z-s0-abcdef12") -> dict:
    return {"schema_version": 1, "run": {"id": run_id, "config_hash": "abcdef12" * 8, "status": "success", "model": "x",
                                         "task": "y", "method": "z", "started_at": "2026-01-01T00:00:00+00:00"}}


# --- (1a) results_dir proven writable before any work -------------------------------------------

def test_a_writable_results_dir_passes_and_nothing_is_created(tmp_path: Path):
    assert check_results_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"  # can become a folder
    assert check_results_dir(str(tmp_path)) == tmp_path
    assert tree(tmp_path) == []  # the probe is removed, no folder is made


@pytest.mark.parametrize("value,problem", [
    ("", "empty would write into the current folder"),
    ("  ", "empty would write into the current folder"),
    (None, "empty would write into the current folder"),
    ("{tmp}/a-file", "it is a file, not a folder"),
    ("{tmp}/a-file/under", "a-file is a file, not a folder"),
    ("{tmp}/a-link/under", "a-link is a link to nothing, not a folder"),
])
def test_a_results_dir_that_cannot_hold_records_is_refused_by_name(tmp_path: Path, value, problem: str):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-link").symlink_to(tmp_path / "gone")
    value = value.format(tmp=tmp_path) if value else value
    with pytest.raises(ConfigError) as error:
        check_results_dir(value)
    assert error.value.field == "results_dir" and problem in str(error.value)
    assert tree(tmp_path) == ["a-file", "a-link"] and (tmp_path / "a-file").read_text() == "not a folder"


def test_the_probe_is_a_fsynced_mebibyte_so_a_small_file_size_limit_is_caught(tmp_path: Path):
    """Run in a child with `ulimit -f 64` (KiB): a record would fit under it, the 1 MiB probe does not."""
    code = ("from bench.records.store import check_results_dir\n"
            "from bench.errors import ConfigError\n"
            "try:\n    check_results_dir(__import__('sys').argv[1])\n"
            "except ConfigError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024)))
    assert out.returncode == 0, out.stderr
    assert f"results_dir='{tmp_path / 'results'}' is not valid: cannot write a 1 MiB file in {tmp_path}" in out.stdout
    assert "ulimit -f" in out.stdout and PROBE_BYTES == 1 << 20
    assert tree(tmp_path) == []  # the half-written probe was removed


@pytest.mark.system
def test_under_a_file_size_limit_artifacts_are_refused_before_training_or_measured_without_files(tmp_path: Path):
    """`ulimit -f 2048` (2 MiB; the record's 1 MiB probe fits, tiny-bert's 4 MiB of weights do not):
    method=full keep_artifacts=true is a failed record naming keep_artifacts and results_dir,
    written before training; keep_artifacts=false trains, and its storage figure is the tensors'
    bytes, since even a temporary file that size cannot be written. Nothing else is left in results_dir."""
    limit = 2048 * 1024
    for keep in ("true", "false"):
        results = tmp_path / f"results-{keep}"
        proc = bench([*SMALL, "method=full", f"keep_artifacts={keep}", "train.max_steps=2", f"results_dir={results}",
                      f"hydra.run.dir={tmp_path / 'hydra-run'}"], file_limit=limit)
        records = load_records(results)
        assert len(records) == 1 and tree(results) == [f"{records[0]['run']['id']}.json"], (keep, proc.stderr[-3000:])
        rec = records[0]
        if keep == "true":
            assert proc.returncode == 1 and rec["run"]["status"] == "failed", proc.stderr[-3000:]
            assert "keep_artifacts=True is not valid" in rec["run"]["error"] and f"results_dir={str(results)!r}" in rec["run"]["error"]
            assert "ulimit -f" in rec["run"]["error"] and "curve" not in rec and "train 1/2" not in proc.stdout + proc.stderr
        else:
            assert proc.returncode == 0 and rec["run"]["status"] == "success", proc.stderr[-3000:]
            assert rec["storage"]["bytes"] == rec["params"]["trainable"] * 4 > limit and "File too large" in rec["storage"]["estimated"]


@pytest.mark.parametrize("fail,problem", [
    ("mkstemp", "cannot create a file in {tmp} (Permission denied); give a writable folder"),  # a read-only folder (not as root)
    ("fsync", "cannot write a 1 MiB file in {tmp} (the disk is full)"),
])
def test_a_read_only_folder_or_a_full_disk_is_refused_and_the_probe_removed(tmp_path: Path, monkeypatch, fail: str, problem: str):
    """Root may write into a chmod'ed folder, so the two refusals of the OS are simulated where they happen."""
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied") if fail == "mkstemp" else OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile if fail == "mkstemp" else os, fail, refuse)
    with pytest.raises(ConfigError) as error:
        check_results_dir(tmp_path / "results")
    assert str(error.value) == f"results_dir='{tmp_path / 'results'}' is not valid: " + problem.format(tmp=tmp_path) + \
        ("" if fail == "mkstemp" else "; give a folder with room for the records")
    assert tree(tmp_path) == []


def test_max_attempts_is_a_whole_number_of_at_least_one():
    assert check_max_attempts(3) == 3
    for bad in (0, -1, "3", 2.5, True, None):
        with pytest.raises(ConfigError, match="max_attempts"):
            check_max_attempts(bad)


@pytest.mark.system
def test_the_cli_refuses_an_unwritable_results_dir_before_training(tmp_path: Path):
    """A single run and a sweep, each with results_dir a file, under a file, empty, and under
    `ulimit -f 64`: exit 2 with one `config error: results_dir=...` line, no training, no record,
    nothing created (not in results_dir's parent, not in the sweep folder, not in the project root)."""
    (tmp_path / "a-file").write_text("not a folder")
    root_before = tree_top(ROOT)
    cases = [([f"results_dir={tmp_path / 'a-file'}"], None), ([f"results_dir={tmp_path / 'a-file' / 'under'}"], None),
             (["results_dir="], None), ([f"results_dir={tmp_path / 'results'}"], 64 * 1024)]
    for mode in ("run", "sweep"):
        for where, limit in cases:
            args = [*SMALL, "train.max_steps=2", *where, f"hydra.run.dir={tmp_path / 'hydra-run'}"]
            if mode == "sweep":
                args = ["-m", *args, "method.r=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
            proc = bench(args, file_limit=limit)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert proc.returncode == 2, (mode, where, proc.stderr[-2000:])
            assert len(lines) == 1 and lines[0].startswith("config error: results_dir="), (mode, where, lines[-3:])
            assert "Traceback" not in proc.stderr and "train " not in proc.stdout + proc.stderr
            assert not (tmp_path / "results").exists() and not (tmp_path / "sweep").exists()
            assert {p.split("/")[0] for p in tree(tmp_path)} <= {"a-file", "hydra-run"}  # only Hydra's own log folder
    assert tree_top(ROOT) == root_before  # `results_dir=` wrote nothing into the project root
    proc = bench(["-m", *SMALL, "method.r=1,2", "max_attempts=0", f"results_dir={tmp_path / 'results'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("config error: max_attempts=0 is not valid")
    assert not (tmp_path / "results").exists() and not (tmp_path / "sweep").exists()


# --- (1b) a record that results_dir refuses at the end goes beside it ----------------------------

def test_a_refused_record_is_written_to_the_fallback_folder_and_stderr_says_where(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    became_a_file = tmp_path / "results"
    became_a_file.write_text("the folder became a file mid-run")
    path = write_record(became_a_file, a_record())
    assert path == tmp_path / "tmp" / FALLBACK / f"{a_record()['run']['id']}.json"
    assert json.loads(path.read_text()) == a_record()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and f"results_dir={str(became_a_file)!r} refused the record" in err[0]


def test_a_run_whose_results_dir_becomes_a_file_keeps_its_record_in_the_fallback(tmp_path: Path, monkeypatch, capsys, cfg_factory):
    """The run's own write path (run.conclude -> finish), after the work: the record, measurements
    included, lands in $TMPDIR/peft-bench-unwritten/ and is the path the run reports."""
    from bench.run import pipeline as run_module
    from bench.records import tracking

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    cfg = cfg_factory()
    record = run_module.new_record(cfg, None)
    record["quality"] = {"accuracy": 0.75}  # what the work measured
    Path(cfg.results_dir).write_text("a file now")
    done = run_module.conclude(record, Path(cfg.results_dir), tracking.start(cfg, record), "success")
    kept = json.loads(Path(done["run"]["path"]).read_text())
    assert Path(done["run"]["path"]).parent == tmp_path / "tmp" / FALLBACK
    assert kept["quality"] == {"accuracy": 0.75} and kept["run"]["status"] == "success"
    assert done["run"]["path"] in capsys.readouterr().err


@pytest.mark.system
def test_a_single_run_whose_results_folder_becomes_a_file_mid_run_keeps_its_work(tmp_path: Path):
    """The folder is replaced by a file while the run trains: no traceback, the record (with its
    training curve) is in the fallback folder under $TMPDIR, and stderr's line says where."""
    results, log = tmp_path / "results", tmp_path / "run.log"
    env = {**ENV, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "bench", *SMALL, "train.max_steps=200", "train.log_every=20",
                             f"results_dir={results}", f"hydra.run.dir={tmp_path / 'hydra-run'}"],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while "train 20/200" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        shutil.rmtree(results, ignore_errors=True)
        results.write_text("a file now")
        proc.wait(timeout=240)
    finally:
        proc.kill()
    out = log.read_text()
    fallback = sorted((tmp_path / "tmp" / FALLBACK).glob("*.json"))
    assert len(fallback) == 1, out[-3000:]
    kept = json.loads(fallback[0].read_text())
    assert len(kept["curve"]) > 0 and kept["speed"]["steps"] == 200  # the training is in the record
    assert f"written to {fallback[0]} instead" in out and "Traceback" not in out
    assert f"record: {fallback[0]}" in out  # the run's summary points at the kept record


# --- (2) a claim per point: concurrent sweeps never run a point twice ----------------------------

def test_a_claimed_point_waits_for_the_holder_then_proceeds(tmp_path: Path, capsys):
    lock = tmp_path / CLAIMS / f"{'ab' * 32}.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, time\n"
                               f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(1.0)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with claim(tmp_path, "ab" * 32):
            waited = time.monotonic() - t0
        assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()
    assert waited > 0.5  # granted only when the holder's 1 s was over (it exited, so the kernel dropped its lock)
    assert "wait: another sweep is running this point" in capsys.readouterr().out
    t0 = time.monotonic()
    with claim(tmp_path, "ab" * 32):  # free now: granted at once, and the same lock file is reused
        assert time.monotonic() - t0 < 0.5
    assert tree(tmp_path) == [CLAIMS, f"{CLAIMS}/{'ab' * 32}.lock"]


def test_records_and_the_report_ignore_the_claims_folder(tmp_path: Path):
    write_atomic(tmp_path / "20260101-000000-000000-a.json", a_record("a"))
    write_atomic(tmp_path / CLAIMS / "b.json", a_record("b"))  # nothing under .claims/ is a record
    (tmp_path / CLAIMS / f"{'ab' * 32}.lock").write_text("")
    assert [r["run"]["id"] for r in load_records(tmp_path)] == ["a"]
    assert [r["run"]["id"] for r in report.read([tmp_path])] == ["a"]  # what the report's tables are built from


@pytest.mark.system
def test_two_identical_sweeps_started_together_run_each_point_once(tmp_path: Path):
    """Same command, same moment, one results_dir: each point has exactly one success record, the
    sweep that came second says `skip:` for it, and the two sweeps have their own Hydra folders
    (the conf's folder names go to the microsecond)."""
    hydra_cfg = make_cfg([], return_hydra_config=True)
    sweep_name = OmegaConf.to_container(hydra_cfg.hydra.sweep, resolve=False)["dir"]
    assert "%f" in sweep_name and "%f" in OmegaConf.to_container(hydra_cfg.hydra.run, resolve=False)["dir"]
    results = tmp_path / "results"
    args = ["-m", *SMALL, "method.r=1,2", "train.max_steps=2", f"results_dir={results}", f"hydra.sweep.dir={tmp_path}/{sweep_name}"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=ENV, stdout=log.open("w"),
                              stderr=subprocess.STDOUT, text=True) for log in logs]
    try:
        codes = [p.wait(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    outs = [log.read_text() for log in logs]
    assert codes == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    records = load_records(results)
    assert sorted(r["run"]["config"]["method"]["r"] for r in records) == [1, 2]  # one record per point, no duplicate
    assert all(r["run"]["status"] == "success" for r in records)
    assert sum(out.count("skip: ") for out in outs) == 2  # every point ran in one sweep and was skipped by the other
    assert all(out.count("2 points in this sweep") == 1 for out in outs)  # each table shows both points, once
    assert len(list(tmp_path.glob("multirun/*/*/multirun.yaml"))) == 2  # two sweeps, two folders
    assert tree(results / CLAIMS) == sorted(f"{r['run']['config_hash']}.lock" for r in records)


# --- (3) a point that keeps failing is retried max_attempts times -------------------------------

@pytest.mark.system
def test_a_relaunch_stops_retrying_a_point_after_max_attempts_failures(tmp_path: Path):
    """A point that crashes (its artifacts folder cannot be made: results_dir/artifacts is a file)
    is retried by each relaunch until it has max_attempts failed records; then it is skipped with
    one `skip:` line saying why, and force=true still runs it."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "artifacts").write_text("in the way of the artifacts folder")
    args = ["-m", *SMALL, "train.max_steps=1", "max_attempts=2", f"results_dir={results}"]

    def sweep(n: int, *extra: str) -> str:
        proc = bench([*args, *extra, f"hydra.sweep.dir={tmp_path / f'sweep{n}'}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    for attempt in (1, 2):
        assert "skip: " not in sweep(attempt)
        assert [r["run"]["status"] for r in load_records(results)] == ["failed"] * attempt
    out = sweep(3)
    skips = [line for line in out.splitlines() if line.startswith("skip: ")]
    assert len(skips) == 1 and "failed 2 times (max_attempts=2" in skips[0] and "force=true reruns it" in skips[0]
    assert len(load_records(results)) == 2  # nothing ran
    assert "skip: " not in sweep(4, "force=true") and len(load_records(results)) == 3
    assert "skip: " not in sweep(5, "max_attempts=4") and len(load_records(results)) == 4  # a higher cap retries


def test_a_point_refused_by_its_config_is_recorded_once_and_skipped_while_the_refusal_stands(cfg_factory, monkeypatch):
    """The skip decision, in-process: a refusal (a ConfigError from validation) is a failed record
    marked run.refused, which counts as no failed attempt; a relaunch finds it and skips the point
    while validation still refuses the config the same way, and runs it again when the config now
    passes or is refused otherwise (what some checks read is the machine: data, models, CUDA)."""
    import jsonschema

    from bench.records.store import SCHEMA_PATH, config_hash, failed_attempts, find_refusal, is_refusal
    from bench.run import pipeline

    cfg = cfg_factory("model=tiny-bert", "method=lora", "method.r=64")
    digest = config_hash(cfg)
    assert pipeline.refused_again(cfg, digest) is None  # nothing recorded yet: the point runs
    rec = pipeline.run(cfg, sweep="sweep-a")
    stored = json.loads(Path(rec["run"]["path"]).read_text())
    jsonschema.validate(stored, json.loads(SCHEMA_PATH.read_text()))
    assert stored["run"]["status"] == "failed" and stored["run"]["refused"] is True
    reason = "method.r=64 is not valid: an integer in [1, 32]"
    assert stored["run"]["error"].startswith(f"config: {reason}")
    assert failed_attempts(cfg.results_dir, digest) == []  # nothing was attempted: max_attempts does not count it
    path, why = pipeline.refused_again(cfg, digest)
    assert path == Path(rec["run"]["path"]) and why.startswith(reason)
    assert find_refusal(cfg.results_dir, digest) == (path, why)
    other = cfg_factory("model=tiny-bert", "method=lora", "method.r=2")
    assert pipeline.refused_again(other, config_hash(other)) is None  # another point: its own records only

    from bench.errors import ConfigError

    monkeypatch.setattr(pipeline, "validate", lambda cfg: None)  # the config passes now (a refusal of the machine, fixed)
    assert pipeline.refused_again(cfg, digest) is None

    def refuse_otherwise(cfg):
        raise ConfigError("data_root", "x", "an existing folder")

    monkeypatch.setattr(pipeline, "validate", refuse_otherwise)
    assert pipeline.refused_again(cfg, digest) is None  # another refusal: the point runs and records it
    # a refusal recorded before run.refused existed says it by its error alone; a crash is no refusal
    assert is_refusal({"status": "failed", "error": "config: method.r=0 is not valid: ..."})
    assert not is_refusal({"status": "failed", "error": "RuntimeError: boom"})
    assert not is_refusal({"status": "success", "error": None, "refused": True})


@pytest.mark.system
def test_a_relaunch_skips_a_point_refused_by_its_config_and_force_reruns_it(tmp_path: Path):
    """The lora_ranks case: r=64 on a model of hidden size 32 is refused; the sweep relaunched runs
    the good point's skip and the refused point's skip, one `skip:` line each, and adds no record."""
    results = tmp_path / "results"
    args = ["-m", *SMALL, "train.max_steps=1", "method.r=2,64", f"results_dir={results}"]

    def sweep(n: int, *extra: str) -> str:
        proc = bench([*args, *extra, f"hydra.sweep.dir={tmp_path / f'sweep{n}'}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    assert "skip: " not in sweep(1)
    records = load_records(results)
    assert sorted((r["run"]["config"]["method"]["r"], r["run"]["status"], r["run"].get("refused")) for r in records) == \
        [(2, "success", None), (64, "failed", True)]
    out = sweep(2)
    skips = [line for line in out.splitlines() if line.startswith("skip: ")]
    assert len(skips) == 2, out[-3000:]
    refused = [line for line in skips if "refused by its config" in line]
    assert len(refused) == 1 and "method.r=64 is not valid" in refused[0] and "force=true reruns it" in refused[0]
    assert len(load_records(results)) == 2  # nothing ran
    assert "skip: " not in sweep(3, "force=true") and len(load_records(results)) == 4


def test_max_attempts_and_the_new_names_leave_every_committed_record_hash_unchanged():
    """Every record under results/reference/ still hashes to its config_hash, with max_attempts in
    its config at the default or any other value (it never makes a new point)."""
    checked = 0
    for path, data in reference_records():
        config, digest = data["run"]["config"], data["run"]["config_hash"]
        assert config_digest(config) == digest, path
        assert config_digest({**config, "max_attempts": 3}) == digest == config_digest({**config, "max_attempts": 7}), path
        checked += 1
    assert checked >= 200  # the reference results hold a few hundred records
    assert make_cfg([]).max_attempts == 3


# --- (4) records readable by a team sharing the folder --------------------------------------------

@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_record_gets_the_umask_mode(tmp_path: Path, mask: int, mode: int):
    old = os.umask(mask)
    try:
        path = write_atomic(tmp_path / "r.json", a_record())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_a_tuned_final_found_under_another_search_is_not_reused(tmp_path: Path):
    """A relaunch with a wider grid that chooses the same lr must not keep the old final, whose
    `selection` describes the smaller grid; scores and cost may differ (a retried trial)."""
    from bench.records.store import find_success

    search = {"split": "validation", "validation_examples": 500, "metric": "accuracy", "mode": "grid", "trial_steps": 100,
              "lrs": [1e-4, 1e-3, 1e-2], "scores": [0.8, 0.9, 0.7], "cost_s": 60.0, "chosen_lr": 1e-3}
    rec = a_record("20260101-000000-000000-x-y-z-s0-abcdef12")
    rec["run"]["config"] = {"selection": search}
    path = write_atomic(tmp_path / f"{rec['run']['id']}.json", rec)
    digest = rec["run"]["config_hash"]
    assert find_success(tmp_path, digest) == path  # not a tuned final: found as before
    assert find_success(tmp_path, digest, selection={**search, "scores": [0.8, 0.91, 0.7], "cost_s": 75.0}) == path
    assert find_success(tmp_path, digest, selection={**search, "lrs": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]}) is None
    assert find_success(tmp_path, digest, selection={**search, "trial_steps": 250}) is None


def test_keep_predictions_changes_what_a_record_keeps_not_the_point():
    """eval.keep_predictions at any value leaves the config hash alone, as keep_artifacts does:
    a sweep does not rerun a finished point because more predictions are asked for."""
    from bench.records.store import config_hash
    from conftest import make_cfg

    base = config_hash(make_cfg([]))
    assert config_hash(make_cfg(["eval.keep_predictions=0"])) == base == config_hash(make_cfg(["eval.keep_predictions=50"]))
    assert config_hash(make_cfg(["eval.max_examples=5"])) != base  # what is scored still is identity


# --- (5) the record's schema version --------------------------------------------------------------

def test_records_are_written_as_schema_2_and_version_1_records_still_load_and_validate(tmp_path: Path):
    """Sections were added after the first records (data, selection, stopped ...): new records say
    schema_version 2; the committed version-1 records still load (report, resume) and match the
    schema; an unknown version is skipped saying which ones this version reads. The version is a
    key of the record, not of its config, so no config hash moves."""
    import jsonschema

    from bench.records.store import SCHEMA_PATH, SCHEMA_VERSION, record_problem

    assert SCHEMA_VERSION == 2
    schema = json.loads(SCHEMA_PATH.read_text())
    committed = next(p for p in sorted((ROOT / "results" / "reference").rglob("*.json"))
                     if '"schema_version": 1' in p.read_text() and '"config_hash"' in p.read_text())
    old = json.loads(committed.read_text())
    new = {**old, "schema_version": SCHEMA_VERSION, "run": {**old["run"], "id": old["run"]["id"] + "-v2"}}
    for data in (old, new):
        assert record_problem(data) is None
        jsonschema.validate(data, schema)
        assert config_digest(data["run"]["config"]) == old["run"]["config_hash"]
    write_atomic(tmp_path / "old.json", old)
    write_atomic(tmp_path / "new.json", new)
    write_atomic(tmp_path / "future.json", {**old, "schema_version": 3, "run": {**old["run"], "id": "future"}})
    skipped: list[str] = []
    assert sorted(r["schema_version"] for r in load_records(tmp_path, skipped)) == [1, 2]
    assert len(skipped) == 1 and "schema_version is 3, this version reads 1 and 2" in skipped[0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**old, "schema_version": 3}, schema)


def test_a_relaunch_finds_a_record_written_before_todays_hash_rules(tmp_path: Path):
    """A committed final of prompt-ladder, written on 2026-12-01 (before speed.count_flops and
    train.stop_after existed), carries a hash that today's config of the same point no longer
    computes; config_hashes (what a relaunch looks records up by) still finds it, so the relaunch
    skips the point instead of training it again."""
    from bench.records.store import config_hash, config_hashes, find_success

    (source,) = (ROOT / "results" / "reference" / "prompt-ladder").glob("20261201-*-minilm-l6-sst2-full-s0-d18abacc.json")
    path = Path(shutil.copy(source, tmp_path / source.name))
    run = json.loads(path.read_text())["run"]
    cfg = make_cfg(["experiment=prompt_tuning_ladder", "model=minilm-l6", "method=full", "seed=0", "train.lr=0.000158",
                    "validation.examples=200", f"results_dir={tmp_path}"])
    assert config_hash(cfg) != run["config_hash"]  # today's digest: an empty `speed` section stays, stop_after is null
    assert config_hashes(cfg)[0] == config_hash(cfg) and run["config_hash"] in config_hashes(cfg)
    assert find_success(tmp_path, config_hashes(cfg), final=True, selection=run["config"]["selection"]) == path
    assert find_success(tmp_path, config_hash(cfg), final=True) is None
