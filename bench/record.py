"""The run record: one self-describing JSON per run, the single source of truth. Written
atomically (temp file + fsync + rename), never edited afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SCHEMA_PATH = Path(__file__).with_name("record_schema.json")
SCHEMA_VERSION = 1
# Keys that change where results go or how they are shown, not what is measured.
# `tune` drives the sweeper (which trials and finals to launch), and `selection` reports how a final's
# lr was chosen: the run itself is fixed by train.lr and validation.*, which are identity.
NON_IDENTITY_KEYS = ("results_dir", "data_root", "tracking", "keep_artifacts", "experiment", "force", "cache_data",
                     "tune", "selection")


# Knobs added after records existed, with the default that reproduces the earlier behaviour. At
# that default a knob is left out of the digest, so an earlier record still matches its point
# (a sweep skips it, the report joins its seeds); set to anything else, it makes a new point.
ADDED_KNOBS: dict[tuple[str, str], Any] = {
    ("train", "group_by_length"): False,
    ("speed", "attention"): "auto", ("speed", "precision"): "fp32", ("speed", "compile"): False,
    ("speed", "gradient_checkpointing"): False, ("speed", "fused_adamw"): "auto",
    ("train", "diverge_factor"): 10.0,
    ("validation", "examples"): 0, ("validation", "seed"): 0, ("validation", "score_on"): "eval",
    ("eval", "keep_predictions"): 3,
}


def config_digest(plain: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """sha256 of a resolved config (a plain dict) minus where-it-goes keys, `leave_out`, and
    added knobs at their default."""
    kept = {k: v for k, v in plain.items() if k not in NON_IDENTITY_KEYS and k not in leave_out}
    for (section, key), default in ADDED_KNOBS.items():
        if isinstance(kept.get(section), dict) and key in kept[section] and kept[section][key] == default:
            kept[section] = {k: v for k, v in kept[section].items() if k != key}
            if not kept[section]:
                del kept[section]  # a section that holds only added knobs at their defaults
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def config_hash(cfg: DictConfig) -> str:
    """Equal hashes = the same experiment (the report's points also leave out the seed)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return config_digest(plain)


def write_atomic(path: Path, record: dict[str, Any]) -> Path:
    """Write JSON so that a reader sees either nothing or the whole file, even after kill -9."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def is_other_json(data: Any) -> bool:
    """JSON that does not try to be a run record (no schema_version, no run): another tool's output
    kept beside the records, such as bench.cost's cost-<device>.json."""
    return not isinstance(data, dict) or ("schema_version" not in data and "run" not in data)


def record_problem(data: Any) -> str | None:
    """Why parsed JSON that tries to be a run record is not one that tables can be built from, or None."""
    if data.get("schema_version") != SCHEMA_VERSION:
        return f"schema_version is {data.get('schema_version')!r}, this version reads {SCHEMA_VERSION}"
    run = data.get("run")
    if not isinstance(run, dict):
        return f"run is {type(run).__name__}, not an object"
    for key in ("id", "model", "task", "method", "status", "started_at"):
        if not isinstance(run.get(key), str):
            return f"run.{key} is {'missing' if key not in run else type(run[key]).__name__}, not a string"
    for section in ("params", "memory", "speed", "quality", "inference", "storage", "forgetting", "selection"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            return f"{section} is {type(data[section]).__name__}, not an object"
    return None


def load_records(results_dir: str | Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Every record (*.json, recursively) under results_dir, each run once: temp files, the
    tracker's folders (W&B keeps a copy of each record) and repeated run ids are skipped. A file
    that is not a readable record (not UTF-8, not JSON, cut short, without the run's names) is
    left out; `skipped` receives one "path: why" line for each. Other tools' JSON (`is_other_json`)
    is left out without a line."""
    out, seen = [], set()
    for path in sorted(Path(results_dir).rglob("*.json")):
        if path.name.startswith(".") or "wandb" in path.relative_to(results_dir).parts[:-1]:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if is_other_json(data):
                continue
            problem = record_problem(data)
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not (whole) JSON
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        if problem:
            if skipped is not None:
                skipped.append(f"{path}: {problem}")
            continue
        if data["run"]["id"] in seen:
            continue
        seen.add(data["run"]["id"])
        out.append(data)
    return out


def run_seconds(run: dict[str, Any]) -> float | None:
    """A run's own time, start to finish (what a tuning trial cost), from its record's `run` section."""
    from datetime import datetime

    try:
        return (datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def is_final(run: dict[str, Any]) -> bool:
    """A verdict that rerunning the same config would only repeat: success, a trial stopped by the
    pruner, or a diverged loss (the same seed diverges again). Failures of the machine (OOM, a kill,
    a crash) are not final: a relaunch retries them."""
    status = run.get("status")
    return status in ("success", "pruned") or (status == "failed" and str(run.get("error") or "").startswith("diverged"))


def find_success(results_dir: str | Path, digest: str, final: bool = False) -> Path | None:
    """The record of a successful run with this config hash in results_dir, if there is one (with
    final=True: any record that `is_final`). Records are named ...-<hash[:8]>.json, so only a handful
    of files are opened; a half-written file cannot match (writes are atomic, temp files start with a dot)."""
    for path in sorted(Path(results_dir).glob(f"*-{digest[:8]}.json")):
        try:
            run = json.loads(path.read_text())["run"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            continue
        if run.get("config_hash") == digest and (is_final(run) if final else run.get("status") == "success"):
            return path
    return None
