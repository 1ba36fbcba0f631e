"""The run record: one self-describing JSON per run, the single source of truth. Written
atomically (temp file + fsync + rename), never edited afterwards. Also what keeps records safe
where they are written: results_dir is proven writable before any work, a record it refuses goes
to a fallback folder, and a sweep point is claimed (a file lock) while it runs."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("schema.json")
# 2: records gained sections after the first ones (data, forgetting, inference, selection, stopped,
# tracking); 1: the earlier records, some without them. Each is optional, so both versions load,
# report and resume. The version is a key of the record, never of its config: no config hash changes.
SCHEMA_VERSION = 2
READ_VERSIONS = (1, 2)  # the versions the loaders accept
# Keys that change where results go or how they are shown, not what is measured.
# `tune` drives the sweeper (which trials and finals to launch), and `selection` reports how a final's
# lr was chosen: the run itself is fixed by train.lr and validation.*, which are identity.
# `max_attempts` only decides whether a relaunch retries a failed point; `adaptive_seeds` how many seeds a sweep launches.
NON_IDENTITY_KEYS = ("results_dir", "data_root", "tracking", "keep_artifacts", "experiment", "force", "cache_data",
                     "tune", "selection", "max_attempts", "adaptive_seeds")
CLAIMS = ".claims"  # results_dir/.claims/<config hash>.lock: the lock a sweep holds while it runs that point
PROBE_BYTES = 1 << 20  # the probe is larger than any record, so a small `ulimit -f` or a nearly full disk shows
FALLBACK = "peft-bench-unwritten"  # $TMPDIR/<this>: where a record goes when results_dir refuses it


# Knobs inside a section that change what a record keeps, not what is measured: never identity.
NON_IDENTITY_KNOBS: tuple[tuple[str, str], ...] = (("eval", "keep_predictions"), ("speed", "count_flops"),
                                                   ("method", "about"))  # a YAML method's docs and test data (bench/methods/peft_types.py)


# Knobs added after records existed, with the default that reproduces the earlier behaviour. At
# that default a knob is left out of the digest, so an earlier record still matches its point
# (a sweep skips it, the report joins its seeds); set to anything else, it makes a new point.
ADDED_KNOBS: dict[tuple[str, str], Any] = {
    ("train", "group_by_length"): False,
    ("speed", "attention"): "auto", ("speed", "precision"): "fp32", ("speed", "compile"): False,
    ("speed", "gradient_checkpointing"): False, ("speed", "fused_adamw"): "auto",
    ("train", "diverge_factor"): 10.0,
    ("validation", "examples"): 0, ("validation", "seed"): 0, ("validation", "score_on"): "eval", ("validation", "score"): "metric",
    ("model", "quantize"): None, ("model", "double_quant"): False,
    ("train", "world_size"): 1,
}


def method_trains(name: Any) -> bool:
    """Whether a method trains anything, as its own `register(..., trains=False)` declares it:
    bench.config.checks.NOT_TRAINING reads that torch-free (the report and the plain checks must not
    load the registry), and tests/test_preflight.py holds it to the registry. An unknown name trains."""
    from bench.config.checks import NOT_TRAINING

    return name not in NOT_TRAINING


# What only training reads, at any value: for a method that trains nothing these cannot change
# its result, so they are not part of its identity (`none` run with train.max_steps=100 and 200
# is one point). The tuning stage's lr is train.lr (and `tune` is never identity).
TRAINING_KNOBS: tuple[tuple[str, str | None], ...] = (("train", None), ("method", "lr"))


def without_training(plain: dict[str, Any]) -> dict[str, Any]:
    """A resolved config as its identity sees it: for a method that trains nothing (its registry
    entry declares trains=False), without TRAINING_KNOBS; any other config as it is (not copied)."""
    method = plain.get("method")
    if not isinstance(method, dict) or method_trains(method.get("name")):
        return plain
    kept = dict(plain)
    for section, key in TRAINING_KNOBS:
        if key is None:
            kept.pop(section, None)
        elif isinstance(kept.get(section), dict):
            kept[section] = {k: v for k, v in kept[section].items() if k != key}
    return kept


# How earlier versions hashed a config, where today's digest differs (config_hashes): records
# written then carry those hashes, and a relaunch must still find them.
#   "speed": before speed.count_flops (the first NON_IDENTITY_KNOBS knob), a section holding only
#     added knobs at their defaults vanished from the digest; since, count_flops is left out after
#     that step, so such a `speed` section stays, empty.
#   "stop_after": before train.stop_after (a successive-halving rung) existed; it was added without
#     an ADDED_KNOBS entry, so today's digest holds its default, null.
EARLIER_RULES = ("speed", "stop_after")


def config_digest(plain: dict[str, Any], leave_out: tuple[str, ...] = (), earlier: tuple[str, ...] = ()) -> str:
    """sha256 of a resolved config (a plain dict) minus where-it-goes keys, `leave_out`, added
    knobs at their default, and the training knobs of a method that trains nothing; `earlier`
    names EARLIER_RULES to hash it as records written before them were."""
    plain = without_training(plain)
    kept = {k: v for k, v in plain.items() if k not in NON_IDENTITY_KEYS and k not in leave_out}
    if "stop_after" in earlier and isinstance(kept.get("train"), dict) and kept["train"].get("stop_after", 0) is None:
        kept["train"] = {k: v for k, v in kept["train"].items() if k != "stop_after"}
    for (section, key), default in ADDED_KNOBS.items():
        if isinstance(kept.get(section), dict) and key in kept[section] and kept[section][key] == default:
            kept[section] = {k: v for k, v in kept[section].items() if k != key}
            if not kept[section]:
                del kept[section]  # a section that holds only added knobs at their defaults
    for section, key in NON_IDENTITY_KNOBS:  # how a record is written, at any value
        if isinstance(kept.get(section), dict) and key in kept[section]:
            kept[section] = {k: v for k, v in kept[section].items() if k != key}
            if "speed" in earlier and not kept[section]:
                del kept[section]
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def config_hash(cfg: DictConfig) -> str:
    """Equal hashes = the same experiment (the report's points also leave out the seed)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return config_digest(plain)


def config_hashes(cfg: DictConfig) -> tuple[str, ...]:
    """The hashes a record of this point may carry: config_hash first (what a new record carries),
    then those of records written before each of EARLIER_RULES' changes, so a relaunch finds them."""
    import itertools

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    rules = [combo for n in range(len(EARLIER_RULES) + 1) for combo in itertools.combinations(EARLIER_RULES, n)]
    return tuple(dict.fromkeys(config_digest(plain, earlier=combo) for combo in rules))


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only be
    read by setting it, which races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, record: dict[str, Any]) -> Path:
    """Write JSON so that a reader sees either nothing or the whole file, even after kill -9. The
    file gets the mode any new file gets (0666 minus the umask), not mkstemp's 0600, so a team
    sharing a results folder can read each other's records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
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


def write_record(results_dir: Path, record: dict[str, Any]) -> Path:
    """Write a record into results_dir, or, when that fails (the folder became a file, the disk
    filled up), into $TMPDIR/peft-bench-unwritten/ with one line on stderr saying where: the
    run's work is never lost silently. Raises only when the fallback fails too."""
    name = f"{record['run']['id']}.json"
    try:
        return write_atomic(results_dir / name, record)
    except OSError as exc:
        try:
            path = write_atomic(Path(tempfile.gettempdir()) / FALLBACK / name, record)
        except OSError:
            raise exc from None
        print(f"record: results_dir={str(results_dir)!r} refused the record ({exc.strerror or exc}); written to {path} instead",
              file=sys.stderr, flush=True)
        return path


def check_results_dir(value: Any) -> Path:
    """Prove, before any work, that records can be written to results_dir: it is a folder or can
    become one, and a 1 MiB file (fsynced, then removed) fits in it or in its nearest existing
    parent. Creates nothing. Why: a run that finds out at its end has trained for nothing."""
    if value is None or not str(value).strip():
        raise ConfigError("results_dir", value, "a folder for the run records (empty would write into the current folder)")
    path = Path(str(value)).expanduser()
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "it is" if existing == path else f"{existing} is"
        kind = "a link to nothing" if existing.is_symlink() else "a file"
        raise ConfigError("results_dir", str(value), f"{where} {kind}, not a folder; give a folder, or a path that can become one")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".peft-bench-probe-")
    except OSError as exc:
        raise ConfigError("results_dir", str(value), f"cannot create a file in {existing} ({exc.strerror or exc}); give a writable folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else \
            "the file size limit, ulimit -f, is below that" if exc.errno == errno.EFBIG else exc.strerror or str(exc)
        raise ConfigError("results_dir", str(value),
                          f"cannot write a {PROBE_BYTES >> 20} MiB file in {existing} ({why}); give a folder with room for the records") from None
    finally:
        Path(probe).unlink(missing_ok=True)
    return path


def check_max_attempts(value: Any) -> int:
    """max_attempts, checked as the schema says (bench.config.schema), and returned for the caller to use."""
    from bench.config.schema import check_value

    check_value("", "max_attempts", value)
    return value


@contextmanager
def claim(results_dir: str | Path, digest: str) -> Iterator[None]:
    """Hold the claim on a sweep point (a POSIX lock on results_dir/.claims/<hash>.lock) while it
    runs. A second sweep that reaches the same point waits here, then finds the first one's record.
    The kernel drops the lock when its process dies, even by kill -9, so a claim is never stale;
    lockf (not flock) also locks across NFS. Lock files are kept: removing one races with a waiter."""
    folder = Path(results_dir) / CLAIMS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            print(f"wait: another sweep is running this point (it holds {path}); waiting for it to finish", flush=True)
            fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def is_other_json(data: Any) -> bool:
    """JSON that does not try to be a run record (no schema_version, no run): another tool's output
    kept beside the records, such as bench.harness.cost's cost-<device>.json."""
    return not isinstance(data, dict) or ("schema_version" not in data and "run" not in data)


def record_problem(data: Any) -> str | None:
    """Why parsed JSON that tries to be a run record is not one that tables can be built from, or None."""
    if data.get("schema_version") not in READ_VERSIONS:
        return f"schema_version is {data.get('schema_version')!r}, this version reads {' and '.join(map(str, READ_VERSIONS))}"
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
    hidden folders (.claims/), the trackers' folders (W&B and MLflow keep a copy of each record) and repeated
    run ids are skipped. A file
    that is not a readable record (not UTF-8, not JSON, cut short, without the run's names) is
    left out; `skipped` receives one "path: why" line for each. Other tools' JSON (`is_other_json`)
    is left out without a line."""
    out, seen = [], set()
    for path in sorted(Path(results_dir).rglob("*.json")):
        parts = path.relative_to(results_dir).parts
        if any(part.startswith(".") for part in parts) or "wandb" in parts[:-1] or "mlflow-artifacts" in parts[:-1]:
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


def point_runs(results_dir: str | Path, digest: str | tuple[str, ...]) -> list[tuple[Path, dict[str, Any]]]:
    """(path, `run` section) of every record with this config hash (or any of these, config_hashes)
    in results_dir, oldest first. Records are named <time>-...-<hash[:8]>.json, so only a handful of
    files are opened; a half-written file cannot match (writes are atomic, temp files start with a dot)."""
    digests = (digest,) if isinstance(digest, str) else tuple(digest)
    paths = sorted({path for d in digests for path in Path(results_dir).glob(f"*-{d[:8]}.json")})
    out = []
    for path in paths:
        try:
            run = json.loads(path.read_text())["run"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(run, dict) and run.get("config_hash") in digests:
            out.append((path, run))
    return out


# How a tuned final's lr was searched (its `selection`, which is not part of the config hash): a
# final found for the same point and lr under another search (a wider grid, longer trials, another
# validation split) is stale provenance, so the point runs again. Scores and cost are left out: a
# trial rerun after a crash changes them without changing the search.
SEARCH_KEYS = ("split", "validation_examples", "metric", "mode", "trial_steps", "lrs", "pruner")
SEARCH_DEFAULTS = {"pruner": "median"}  # keys added later, at what the records before them did


def same_search(run: dict[str, Any], selection: dict[str, Any] | None) -> bool:
    """True when `selection` is None (not a tuned final) or the run's selection searched the same way."""
    if not selection:
        return True
    found = (run.get("config") or {}).get("selection") or {}
    return all(found.get(key, SEARCH_DEFAULTS.get(key)) == selection.get(key, SEARCH_DEFAULTS.get(key)) for key in SEARCH_KEYS)


def find_success(results_dir: str | Path, digest: str | tuple[str, ...], final: bool = False, selection: dict[str, Any] | None = None) -> Path | None:
    """The record of a successful run with this config hash in results_dir, if there is one (with
    final=True: any record that `is_final`; with a tuned final's `selection`: only one that searched
    its lr the same way)."""
    for path, run in point_runs(results_dir, digest):
        if (is_final(run) if final else run.get("status") == "success") and same_search(run, selection):
            return path
    return None


def failed_attempts(results_dir: str | Path, digest: str | tuple[str, ...]) -> list[Path]:
    """The records of this point's runs that crashed or ran out of memory, oldest first: a relaunch
    retries such a point only until it has max_attempts of them (a cancelled run is not counted:
    it was stopped, it did not fail; nor is a refusal by its config: nothing was attempted)."""
    return [path for path, run in point_runs(results_dir, digest) if run.get("status") in ("failed", "oom") and not is_refusal(run)]


# How bench.run.pipeline writes the error of a run whose config validation refused (a ConfigError
# before anything loads); its record also says run.refused=true. Records written before that field
# say it only by this prefix.
REFUSED_PREFIX = "config: "


def is_refusal(run: dict[str, Any]) -> bool:
    """A run that its config refused before anything ran: a property of the config, not of the
    attempt, so rerunning it would only repeat the refusal."""
    if run.get("status") != "failed":
        return False
    return run.get("refused") is True or str(run.get("error") or "").startswith(REFUSED_PREFIX)


def find_refusal(results_dir: str | Path, digest: str | tuple[str, ...]) -> tuple[Path, str] | None:
    """The newest record of this point that its config refused, and the refusal (the ConfigError's
    text, without the prefix), or None."""
    found = [(path, run) for path, run in point_runs(results_dir, digest) if is_refusal(run)]
    if not found:
        return None
    path, run = found[-1]
    return path, str(run.get("error") or "").removeprefix(REFUSED_PREFIX)


# --- room for the artifacts a run keeps ------------------------------------------------------------

ARTIFACT_MARGIN = 1.1  # x the tensors: what a method saves beside them (file headers, configs), with room to spare
ARTIFACT_EXTRA = 64 << 10  # and 64 KiB more per file; the disk needs a probe's worth (1 MiB) more, for the record


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding `path` (its nearest existing parent)."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def file_size_limit() -> int | None:
    """The largest file this process may write (the soft `ulimit -f`), in bytes; None: no limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def check_artifact_room(results_dir: str | Path, tensor_bytes: int) -> int:
    """keep_artifacts=true: prove, before training, that results_dir can hold what the run will save
    (`tensor_bytes`: the tensors the method saves, x ARTIFACT_MARGIN, plus room for the record),
    on the disk and under the file size limit (a method saves its tensors in one file). Returns
    the bytes it allowed for; a ConfigError naming keep_artifacts and results_dir otherwise."""
    largest = int(tensor_bytes * ARTIFACT_MARGIN) + ARTIFACT_EXTRA
    need = largest + PROBE_BYTES
    where = Path(results_dir) / "artifacts"
    limit = file_size_limit()
    if limit is not None and largest > limit:
        raise ConfigError("keep_artifacts", True, f"false, or a file size limit (ulimit -f) above {_mib(largest)}: the run would save "
                                                  f"about {_mib(tensor_bytes)} of tensors in one file into results_dir={str(results_dir)!r} "
                                                  f"(artifacts/), and files are limited to {_mib(limit)}")
    free = free_bytes(where)
    if need > free:
        raise ConfigError("keep_artifacts", True, f"false, or a results_dir with room for the artifacts: the run would save about "
                                                  f"{_mib(tensor_bytes)} into results_dir={str(results_dir)!r} (artifacts/), and its disk "
                                                  f"has {_mib(free)} free")
    return need


# The keys a trial and its finals may differ on: they are one point of the comparison.
TRIAL_ONLY = (("train", "lr"), ("train", "max_steps"), ("train", "stop_after"), ("train", "eval_every"), ("validation", "score_on"),
              ("validation", "score"), ("forgetting", None), ("inference", None))


# ---------------------------------------------------------------- what a run is in a tuned comparison, from its config
def role(cfg: DictConfig | dict[str, Any]) -> str:
    """trial (scored on the validation split), final (a tuned lr, scored on the reported split) or run."""
    validation = cfg.get("validation") or {}
    if validation.get("score_on") == "validation":
        return "trial"
    return "final" if cfg.get("selection") else "run"


def study_key(plain: dict[str, Any], earlier: tuple[str, ...] = ()) -> str:
    """The point a trial or final belongs to: its config without the seed and without what tuning
    varies (the lr, the trial's steps and checkpoints, the scored split, what trials skip);
    `earlier` as config_digest's (the report joins studies across EARLIER_RULES)."""
    kept = {k: (dict(v) if isinstance(v, dict) else v) for k, v in plain.items()}
    for section, key in TRIAL_ONLY:
        if key is None:
            kept.pop(section, None)
        elif isinstance(kept.get(section), dict):
            kept[section].pop(key, None)
    return config_digest(kept, leave_out=("seed",), earlier=earlier)[:16]
