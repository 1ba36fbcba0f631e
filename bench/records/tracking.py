"""Trackers mirror a run into a dashboard; the JSON record stays the truth. A tracker never
raises: if W&B or MLflow fails (no disk, no network, a bad key, a locked database), the run goes
on, the record is written as usual and says what went wrong in `tracking.error`.

Both trackers log the same names: per-step curves `train/<key>` and `eval/<metric>` (step_row),
the record's figures `params/...`, `memory/...`, `quality/...` (flat_figures), the resolved
config, and the record itself as a file.

W&B: one W&B run per run of the suite, grouped by sweep, job_type = method, tags = model and
task; the resolved config; per-step curves; the record's figures in the run summary; the record
itself in the run's files. With no API key runs are written offline under
<tracking.dir>/wandb/offline-run-* and `wandb sync` uploads them later.

MLflow (an optional extra: pip install -e '.[mlflow]'): one MLflow run per run of the suite, in
one experiment, by default in a SQLite file beside the records; the flattened config as params,
the curves and the figures as metrics (the text figures as tags), the record as an artifact."""

from __future__ import annotations

import json
import netrc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

BACKENDS = ("none", "wandb", "mlflow")
MODES = ("auto", "offline", "online")
MLFLOW_INSTALL = "pip install -e '.[mlflow]'"  # the optional extra (mlflow-skinny: the client and the SQLite store, no server UI)
SUMMARY_SECTIONS = ("params", "memory", "speed", "quality", "inference", "storage", "forgetting")


class Tracker:
    """No tracker: every call is a no-op. The W&B and MLflow trackers below have the same methods."""

    error: str | None = None

    def log_step(self, point: dict[str, Any]) -> None:
        """One training step's curve point (loss, lr, step time, and eval metrics when evaluated)."""

    def log_final(self, step: int, quality: dict[str, Any]) -> None:
        """The final evaluation, at the last training step."""

    def describe(self) -> dict[str, Any] | None:
        """What the record says about tracking (None: no tracker)."""
        return None

    def close(self, record: dict[str, Any]) -> None:
        """Mirror the written record (summary + files) and finish the tracker's run."""


def has_api_key() -> bool:
    """A W&B key from the environment or from `wandb login` (~/.netrc); never a network call."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(tcfg: DictConfig) -> str:
    """auto: online with a key, offline without; WANDB_MODE, when set, wins (e.g. disabled)."""
    env_mode = os.environ.get("WANDB_MODE", "").strip()
    if env_mode:
        return env_mode
    if tcfg.mode == "auto":
        return "online" if has_api_key() else "offline"
    return str(tcfg.mode)


def step_row(point: dict[str, Any], log_quality: bool = True) -> dict[str, Any]:
    """One curve point as the trackers log it: train/<key> for the step's figures (loss, lr,
    step_time_s), eval/<metric> for an evaluation's numbers (left out for random weights)."""
    row = {f"train/{k}": v for k, v in point.items() if k not in ("step", "eval")}
    for key, value in (point.get("eval") or {}).items():
        if isinstance(value, (int, float)) and log_quality:
            row[f"eval/{key}"] = value
    return row


def flat_figures(record: dict[str, Any]) -> dict[str, Any]:
    """The record's scalar figures as 'section/key/subkey' -> value (lists and the config left out)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}/{key}", sub)
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[prefix] = value

    run = record["run"]
    for section in SUMMARY_SECTIONS:
        if section in record and not (section == "quality" and run.get("random_weights")):
            walk(section, record[section])  # random weights: speed and memory only, never quality
    for key in ("status", "error", "config_hash", "id", "path", "random_weights"):
        out[f"run/{key}"] = run.get(key)
    return out


class WandbTracker(Tracker):
    def __init__(self, cfg: DictConfig, record: dict[str, Any]):
        tcfg = cfg.tracking
        self.mode = resolve_mode(tcfg)
        self.dir = Path(str(tcfg.dir)).expanduser()
        self.run: Any = None
        self.error = None
        self.last_step = 0
        self.log_quality = not record["run"]["random_weights"]  # random weights: no eval/* curves either
        if os.environ.get("WANDB_MODE") == "":
            del os.environ["WANDB_MODE"]  # wandb rejects an empty mode; empty means unset
        try:
            import wandb

            self.dir.mkdir(parents=True, exist_ok=True)
            run = record["run"]
            self.run = wandb.init(
                project=str(tcfg.project), entity=tcfg.get("entity"), mode=self.mode, dir=str(self.dir),
                name=run["id"], group=run["sweep"] or None, job_type=run["method"],
                tags=[run["model"], run["task"], *[str(t) for t in tcfg.get("tags") or []]],
                config={**run["config"], "config_hash": run["config_hash"]},
                settings=wandb.Settings(silent=True, init_timeout=float(tcfg.init_timeout), console="off"),
                reinit="finish_previous",
            )
        except BaseException as exc:  # noqa: BLE001 - a tracker must never stop a run (KeyboardInterrupt aside)
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._fail("wandb.init", exc)

    def _fail(self, where: str, exc: BaseException) -> None:
        self.error = f"{where}: {type(exc).__name__}: {exc}"
        print(f"tracking: W&B disabled for this run ({self.error}); the JSON record is unaffected", file=sys.stderr, flush=True)
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass

    def log_step(self, point: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.log(step_row(point, self.log_quality), step=int(point["step"]))
            self.last_step = int(point["step"])
        except Exception as exc:  # noqa: BLE001
            self._fail("wandb.log", exc)

    def log_final(self, step: int, quality: dict[str, Any]) -> None:
        if self.run is None or not self.log_quality:
            return
        try:
            self.run.log({f"eval/{k}": v for k, v in quality.items() if isinstance(v, (int, float))}, step=max(step, self.last_step))
        except Exception as exc:  # noqa: BLE001
            self._fail("wandb.log", exc)

    def describe(self) -> dict[str, Any]:
        run = self.run
        return {"backend": "wandb", "mode": self.mode, "run_id": getattr(run, "id", None),
                "dir": str(Path(run.dir).parent) if run is not None else None,
                "url": getattr(run, "url", None) if run is not None and self.mode == "online" else None,
                "error": self.error}

    def close(self, record: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update(flat_figures(record))
            (Path(self.run.dir) / "record.json").write_text(json.dumps(record, indent=2, default=str))
            self.run.finish(exit_code=0 if record["run"]["status"] == "success" else 1)
        except Exception as exc:  # noqa: BLE001
            self._fail("wandb.finish", exc)
        self.run = None


MLFLOW_MAX_VALUE = 6000  # MLflow's longest param value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH); tags take 8000
MLFLOW_STATUS = {"success": "FINISHED", "pruned": "FINISHED", "cancelled": "KILLED", "timeout": "KILLED"}  # any other: FAILED


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved config as MLflow params: 'train.lr' -> '0.001' (a list as JSON, null as 'None');
    a value longer than MLflow takes is cut, never refused."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            text = json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)
            out[name] = text[:MLFLOW_MAX_VALUE]
    return out


def mlflow_uri(tcfg: DictConfig) -> str:
    """tracking.tracking_uri with a relative SQLite path made absolute (SQLAlchemy would read it
    against the working directory of whichever process opens it)."""
    uri = str(tcfg.tracking_uri)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).expanduser().resolve())
    return uri


class MlflowTracker(Tracker):
    """One MLflow run per run, in experiment tracking.experiment of the store tracking.tracking_uri
    (by default a SQLite file beside the records: no server, no network). Params: the flattened
    resolved config; metrics: the curves per step and the record's figures at the last step; tags:
    the sweep, method, model, task and the record's text figures; artifact: record.json."""

    def __init__(self, cfg: DictConfig, record: dict[str, Any]):
        tcfg = cfg.tracking
        self.client: Any = None
        self.run_id: str | None = None  # kept after a failure: the store holds the run up to it, marked FAILED
        self.active = False  # False once MLflow failed or the run was closed: every later call is a no-op
        self.artifact_dir: str | None = None
        self.error = None
        self.last_step = 0
        self.uri = str(tcfg.get("tracking_uri"))
        self.experiment = str(tcfg.get("experiment"))
        self.log_quality = not record["run"]["random_weights"]
        try:
            import logging

            self.uri = mlflow_uri(tcfg)

            from mlflow import MlflowClient
            from mlflow.entities import Param

            logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "Creating initial MLflow database tables..." on every new store
            logging.getLogger("alembic").setLevel(logging.WARNING)
            with _store_lock(self.uri):  # two points of a parallel sweep creating the same SQLite store: one at a time
                self.client = MlflowClient(tracking_uri=self.uri)
                found = self.client.get_experiment_by_name(self.experiment)
                if found is not None:
                    experiment_id = found.experiment_id
                else:
                    where = tcfg.get("artifact_dir")
                    location = Path(str(where)).expanduser().resolve().as_uri() if where else None
                    experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
            run = record["run"]
            tags = {"method": run["method"], "model": run["model"], "task": run["task"], "config_hash": run["config_hash"],
                    **({"sweep": run["sweep"]} if run["sweep"] else {}), **{str(k): str(v) for k, v in (tcfg.get("tags") or {}).items()}}
            created = self.client.create_run(experiment_id, run_name=run["id"], tags=tags)
            self.run_id, self.active = created.info.run_id, True
            self.artifact_dir = created.info.artifact_uri
            params = [Param(k, v) for k, v in flat_params({**run["config"], "config_hash": run["config_hash"]}).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per call
                self.client.log_batch(self.run_id, params=params[i:i + 100])
        except BaseException as exc:  # noqa: BLE001 - a tracker must never stop a run (KeyboardInterrupt aside)
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._fail("mlflow.start_run", exc)

    def _fail(self, where: str, exc: BaseException) -> None:
        self.error = f"{where}: {type(exc).__name__}: {exc}"
        print(f"tracking: MLflow disabled for this run ({self.error}); the JSON record is unaffected", file=sys.stderr, flush=True)
        active, self.active = self.active, False
        if active:
            try:
                self.client.set_terminated(self.run_id, status="FAILED")
            except Exception:  # noqa: BLE001
                pass

    def _log_metrics(self, row: dict[str, Any], step: int, where: str) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        try:
            for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per call
                self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        except Exception as exc:  # noqa: BLE001
            self._fail(where, exc)

    def log_step(self, point: dict[str, Any]) -> None:
        if not self.active:
            return
        self._log_metrics(step_row(point, self.log_quality), int(point["step"]), "mlflow.log_step")
        self.last_step = max(self.last_step, int(point["step"]))

    def log_final(self, step: int, quality: dict[str, Any]) -> None:
        if not self.active or not self.log_quality:
            return
        self._log_metrics({f"eval/{k}": v for k, v in quality.items()}, max(step, self.last_step), "mlflow.log_final")

    def describe(self) -> dict[str, Any]:
        local_store = self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri  # else a tracking server (http://...)
        artifacts = self.artifact_dir
        return {"backend": "mlflow", "mode": "local" if local_store else "server", "run_id": self.run_id,
                "dir": _file_path(artifacts) if artifacts and artifacts.startswith("file:") else artifacts,
                "url": None, "tracking_uri": self.uri, "experiment": self.experiment, "error": self.error}

    def close(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import RunTag

        figures = flat_figures(record)
        numbers = {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._log_metrics(numbers, self.last_step, "mlflow.log_figures")
        if not self.active:
            return
        try:
            texts = [RunTag(k, str(v)[:8000]) for k, v in figures.items() if k not in numbers and v is not None]  # true/false and text
            for i in range(0, len(texts), 100):
                self.client.log_batch(self.run_id, tags=texts[i:i + 100])
            self.client.log_text(self.run_id, json.dumps(record, indent=2, default=str), "record.json")
            self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(record["run"]["status"], "FAILED"))
        except Exception as exc:  # noqa: BLE001
            self._fail("mlflow.finish", exc)
        self.active = False


def _file_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite store while it is opened (MLflow creates its tables on first
    use, and two processes doing so at once collide); other stores need none."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start(cfg: DictConfig, record: dict[str, Any]) -> Tracker:
    """The tracker that cfg.tracking names; never raises."""
    tcfg = cfg.get("tracking")
    if tcfg is None or tcfg.get("name") == "none":
        return Tracker()
    if tcfg.get("name") == "mlflow":
        return MlflowTracker(cfg, record)
    if resolve_mode(tcfg) == "disabled":
        return Tracker()
    return WandbTracker(cfg, record)
