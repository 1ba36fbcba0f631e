"""Tokenised datasets, prepared once and reused by every run that reads the same data the same way.

Why: each sweep point runs in a fresh process, so without a cache a 7-point sweep tokenises its
data 7 times. The key covers everything the features depend on: the task's config (fields,
lengths, template), the data files (path, size, mtime), the tokenizer (the model's config, its
class, vocabulary size and chat template), the model family, the row limits, and the source of
the task kind's module, so a change to the featurising code never serves stale features."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.assets import cache_root
from bench.errors import ConfigError
from bench.tasks import Kind, Task
from bench.tasks.data import read_rows, split_file


def cache_key(cfg: DictConfig, kind: Kind, tokenizer: Any, family: str, trains: bool) -> str:
    files = []
    if cfg.task.format in ("tsv", "jsonl"):
        for split in ("train", "eval"):
            path = split_file(cfg.task, cfg.data_root, split).resolve()
            stat = path.stat()
            files.append([str(path), stat.st_size, stat.st_mtime_ns])
    parts = {
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "files": files,
        "tokenizer": [OmegaConf.to_container(cfg.model, resolve=True), type(tokenizer).__name__, len(tokenizer),
                      getattr(tokenizer, "chat_template", None)],
        "family": family,
        "eval_max_examples": cfg.eval.max_examples,
        "validation": OmegaConf.to_container(cfg.validation, resolve=True) if cfg.get("validation") else None,
        "trains": trains,
        "code": hashlib.sha256(inspect.getsource(inspect.getmodule(kind.build)).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def carve_validation(rows: list[dict], examples: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(rest, validation): a seeded sample of `examples` rows held out of the training split, and
    the other rows in their original order. Why a sample of the whole split, taken before any
    max_train_examples limit: the training budget stays the same size as an untuned run's, and the
    validation rows never train."""
    if examples >= len(rows):
        raise ConfigError("validation.examples", examples, f"fewer than the {len(rows):,} rows of the training split")
    held = set(random.Random(seed).sample(range(len(rows)), examples))
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def _rows(cfg: DictConfig, trains: bool) -> tuple[list[dict], list[dict]]:
    """(train rows, scored rows): the scored rows are the reported split, or the validation rows
    carved from train when validation.score_on is `validation`."""
    val = cfg.get("validation") or {}
    held_out, score_on = int(val.get("examples", 0)), str(val.get("score_on", "eval"))
    train_rows = read_rows(cfg.task, cfg.data_root, "train") if trains or held_out else []
    val_rows: list[dict] = []
    if held_out:
        train_rows, val_rows = carve_validation(train_rows, held_out, int(val.get("seed", 0)))
    if not trains:
        train_rows = []
    if cfg.task.get("max_train_examples") and trains:
        train_rows = train_rows[: int(cfg.task.max_train_examples)]
    if score_on == "validation":
        return train_rows, val_rows
    scored = read_rows(cfg.task, cfg.data_root, "eval")
    if cfg.eval.max_examples is not None:
        scored = scored[: int(cfg.eval.max_examples)]
    return train_rows, scored


def prepare_task(cfg: DictConfig, kind: Kind, tokenizer: Any, family: str, trains: bool) -> tuple[Task, dict[str, Any]]:
    """The run's Task, its features from the cache when an entry matches; returns the Task and
    what preparing it cost (the record's `data` section)."""
    start = time.perf_counter()
    split = _split_info(cfg)
    use_cache = bool(cfg.get("cache_data", True))
    path = cache_root() / "tokenized" / f"{cache_key(cfg, kind, tokenizer, family, trains)}.pkl" if use_cache else None
    if path is not None and path.is_file():
        try:
            with open(path, "rb") as f:
                train_feats, eval_feats = pickle.load(f)
            task = kind.build(cfg.task, [], [], tokenizer, family)  # the collate and evaluate functions; no rows to tokenise
            task.train, task.eval = train_feats, eval_feats
            return task, _info("hit", start, task, path, split)
        except Exception:  # noqa: BLE001 - a damaged entry (e.g. a half-written file from a killed run) is rebuilt
            pass
    train_rows, eval_rows = _rows(cfg, trains)
    task = kind.build(cfg.task, train_rows, eval_rows, tokenizer, family)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            pickle.dump((task.train, task.eval), tmp, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp.name, path)  # atomic: a concurrent run reads a whole entry or none
    return task, _info("miss" if use_cache else "off", start, task, path, split)


def _split_info(cfg: DictConfig) -> dict[str, Any]:
    """What the run scores and what it holds out, without reading rows (a cache hit reads none)."""
    val = cfg.get("validation") or {}
    held_out = int(val.get("examples", 0))
    scored = "validation" if val.get("score_on") == "validation" else str(cfg.task.get("eval_split", "eval"))
    return {"scored": scored, "validation_examples": held_out, "validation_seed": int(val.get("seed", 0)) if held_out else None}


def _info(cache: str, start: float, task: Task, path: Path | None, split: dict[str, Any]) -> dict[str, Any]:
    return {"cache": cache, "prepare_s": time.perf_counter() - start, "train_examples": len(task.train),
            "eval_examples": len(task.eval), "cache_path": str(path) if path else None, **split}
