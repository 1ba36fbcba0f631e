"""Trackers mirror a run into a dashboard; the JSON record stays the truth. A tracker never
raises: if W&B fails (no disk, no network, a bad key), the run goes on, the record is written
as usual and says what went wrong in `tracking.error`.

W&B: one W&B run per run of the suite, grouped by sweep, job_type = method, tags = model and
task; the resolved config; per-step curves under train/* and eval/*; the record's figures in the
run summary; the record itself in the run's files. With no API key runs are written offline
under <tracking.dir>/wandb/offline-run-* and `wandb sync` uploads them later."""

from __future__ import annotations

import json
import netrc
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

BACKENDS = ("none", "wandb")
MODES = ("auto", "offline", "online")
SUMMARY_SECTIONS = ("params", "memory", "speed", "quality", "inference", "storage", "forgetting")


class Tracker:
    """No tracker: every call is a no-op. The W&B tracker below has the same four methods."""

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
        row = {f"train/{k}": v for k, v in point.items() if k not in ("step", "eval")}
        for key, value in (point.get("eval") or {}).items():
            if isinstance(value, (int, float)) and self.log_quality:
                row[f"eval/{key}"] = value
        try:
            self.run.log(row, step=int(point["step"]))
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


def start(cfg: DictConfig, record: dict[str, Any]) -> Tracker:
    """The tracker that cfg.tracking names; never raises."""
    tcfg = cfg.get("tracking")
    if tcfg is None or tcfg.get("name") == "none" or resolve_mode(tcfg) == "disabled":
        return Tracker()
    return WandbTracker(cfg, record)
