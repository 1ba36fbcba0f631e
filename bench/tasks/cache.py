"""Tokenised datasets, prepared once and reused by every run that reads the same data the same way.

Why: each sweep point runs in a fresh process, so without a cache a 7-point sweep tokenises its
data 7 times. The key covers everything the features depend on: the task's config (fields,
lengths, template), the data files (path, size, mtime), the tokenizer (the model's config, its
class, vocabulary size and chat template), the model family, the row limits, the source of the
task kind's module, of bench/tasks/data.py (which reads the rows) and of this one, and the versions
of transformers and tokenizers (whose tokenizers produce the ids), so a change to the featurising
or row-selecting code, or a library upgrade, never serves stale features.

The entries are JSON (the features are lists of ints and strings), never pickle: the cache may sit
on a shared disk (PEFT_BENCH_CACHE), and unpickling a file someone else planted there runs their
code. A file that is not an entry written here for this key is rebuilt."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.models.assets import cache_root
from bench.records.env import versions
from bench.errors import ConfigError
from bench.tasks.registry import Kind, Task
from bench.tasks import data as data_module  # the module, not the package's names
from bench.tasks.data import read_rows, split_file

TOKENIZER_LIBRARIES = ("transformers", "tokenizers")  # their versions are part of the key: an upgrade may tokenise differently


def code_digests(kind: Kind) -> list[str]:
    """sha256 of the source of every module the features depend on: the kind's, data.py's (rows), this one's."""
    modules = (inspect.getmodule(kind.build), data_module, sys.modules[__name__])
    return [hashlib.sha256(inspect.getsource(module).encode()).hexdigest() for module in modules]


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
        "code": code_digests(kind),
        "libraries": versions(TOKENIZER_LIBRARIES),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def carve_validation(rows: list[dict], examples: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(rest, validation): a seeded sample of `examples` rows held out of the training split, and
    the other rows in their original order. Why a sample of the whole split, taken before any
    max_train_examples limit: the training budget stays the same size as an untuned run's, and the
    validation rows never train. (The eval part of one file, task.eval_fraction, is carved the same way.)"""
    if examples >= len(rows):
        raise ConfigError("validation.examples", examples, f"fewer than the {len(rows):,} rows of the training split")
    held = set(random.Random(seed).sample(range(len(rows)), examples))
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


PART_KEYS = ("eval_fraction", "train_rows", "eval_rows")  # optional task keys: train and eval parts of one file


def _one_source(task_cfg: DictConfig, data_root: str) -> bool:
    """Whether train_split and eval_split name the same rows (one file, or one hub split)."""
    if task_cfg.format == "embedded":
        return False
    if task_cfg.format == "hub":
        return str(task_cfg.train_split) == str(task_cfg.get("eval_split"))
    return task_cfg.get("eval_split") is not None and \
        split_file(task_cfg, data_root, "train").resolve() == split_file(task_cfg, data_root, "eval").resolve()


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _row_range(task_cfg: DictConfig, key: str) -> tuple[int, int | None] | None:
    """task.<key> as (start, end): rows [start, end) of the file, end null = to its last row."""
    value = task_cfg.get(key)
    if value is None:
        return None
    pair = list(value) if isinstance(value, ListConfig) else []
    if len(pair) != 2 or not _is_int(pair[0]) or not (pair[1] is None or _is_int(pair[1])) \
            or pair[0] < 0 or (pair[1] is not None and pair[1] <= pair[0]):
        raise ConfigError(f"task.{key}", value, "a range [start, end) of row numbers with 0 <= start < end (end null = to the last row)")
    return pair[0], pair[1]


def check_parts(task_cfg: DictConfig, data_root: str) -> None:
    """Refuse train and eval parts that could share rows, before a model loads: one file for both
    splits without a way to part it, both ways at once, overlapping ranges, or a range past the
    end of a local file."""
    _check_part_keys(task_cfg, data_root)
    if task_cfg.format in ("tsv", "jsonl") and any(task_cfg.get(key) is not None for key in ("train_rows", "eval_rows")):
        _row_count_fits(task_cfg, len(read_rows(task_cfg, data_root, "train")))  # a local file is quick to count


def _check_part_keys(task_cfg: DictConfig, data_root: str) -> None:
    """check_parts without reading a row."""
    fraction = task_cfg.get("eval_fraction")
    train_range, eval_range = _row_range(task_cfg, "train_rows"), _row_range(task_cfg, "eval_rows")
    if fraction is None and train_range is None and eval_range is None:
        if _one_source(task_cfg, data_root):
            raise ConfigError("task.eval_split", task_cfg.eval_split, "a file other than task.train_split (the run would score rows it "
                              "trained on), or set task.eval_fraction or task.train_rows / task.eval_rows to take disjoint parts of it")
        return
    if not _one_source(task_cfg, data_root):
        raise ConfigError("task.eval_split", task_cfg.get("eval_split"), f"the same as task.train_split ({task_cfg.get('train_split')}) "
                          "when task.eval_fraction or task.train_rows / task.eval_rows take both parts from one file")
    if fraction is not None:
        if train_range is not None or eval_range is not None:
            raise ConfigError("task.eval_fraction", fraction, "null when task.train_rows / task.eval_rows part the file (one way at a time)")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ConfigError("task.eval_fraction", fraction, "a number between 0 and 1, exclusive (the share of the file's rows scored)")
        seed = task_cfg.get("split_seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError("task.split_seed", seed, "an integer >= 0 (which rows form the eval part)")
        return
    if train_range is not None and eval_range is not None:
        ends = [end if end is not None else float("inf") for _, end in (train_range, eval_range)]
        if max(train_range[0], eval_range[0]) < min(ends):
            raise ConfigError("task.eval_rows", list(task_cfg.eval_rows), f"a range that does not overlap task.train_rows={list(task_cfg.train_rows)}")


def _row_count_fits(task_cfg: DictConfig, rows: int) -> None:
    """Refuse a row range that ends past the file's last row."""
    for key in ("train_rows", "eval_rows"):
        part = _row_range(task_cfg, key)
        if part is not None and max(part[0] + 1, part[1] or 0) > rows:
            raise ConfigError(f"task.{key}", list(task_cfg[key]), f"a range within the {rows:,} rows of {task_cfg.train_split}")


def split_parts(task_cfg: DictConfig, data_root: str, need_train: bool = True, need_eval: bool = True) -> tuple[list[dict], list[dict], int | None]:
    """(train rows, eval rows, rows of the one file they were parted from, or None for two files).
    One file is parted by task.eval_fraction (a seeded sample, split_seed, is the eval part, the
    rest trains) or by task.train_rows / task.eval_rows (either alone: the other part is the rest)."""
    _check_part_keys(task_cfg, data_root)
    if all(task_cfg.get(key) is None for key in PART_KEYS):
        return (read_rows(task_cfg, data_root, "train") if need_train else [],
                read_rows(task_cfg, data_root, "eval") if need_eval else [], None)
    rows = read_rows(task_cfg, data_root, "train")
    if task_cfg.get("eval_fraction") is not None:
        examples = max(1, round(float(task_cfg.eval_fraction) * len(rows)))
        if examples >= len(rows):
            raise ConfigError("task.eval_fraction", task_cfg.eval_fraction, f"a share that leaves rows to train on ({task_cfg.train_split} has {len(rows):,})")
        train, scored = carve_validation(rows, examples, int(task_cfg.get("split_seed", 0)))
        return train, scored, len(rows)
    _row_count_fits(task_cfg, len(rows))
    taken = {}
    for key in ("train_rows", "eval_rows"):
        part = _row_range(task_cfg, key)
        if part is not None:
            taken[key] = set(range(part[0], len(rows) if part[1] is None else part[1]))
    for key, other in (("train_rows", "eval_rows"), ("eval_rows", "train_rows")):
        taken.setdefault(key, set(range(len(rows))) - taken[other])  # given alone, a range leaves the rest to the other part
    return [rows[i] for i in sorted(taken["train_rows"])], [rows[i] for i in sorted(taken["eval_rows"])], len(rows)


def _rows(cfg: DictConfig, trains: bool) -> tuple[list[dict], list[dict]]:
    """(train rows, scored rows): the scored rows are the reported split, or the validation rows
    carved from train when validation.score_on is `validation`."""
    return _rows_and_source(cfg, trains)[:2]


def _rows_and_source(cfg: DictConfig, trains: bool) -> tuple[list[dict], list[dict], int | None]:
    """_rows, and how many rows the one file parted into train and eval holds (None: two files)."""
    val = cfg.get("validation") or {}
    held_out, score_on = int(val.get("examples", 0)), str(val.get("score_on", "eval"))
    train_rows, eval_rows, source_rows = split_parts(cfg.task, cfg.data_root, need_train=bool(trains or held_out),
                                                     need_eval=score_on != "validation")
    val_rows: list[dict] = []
    if held_out:
        train_rows, val_rows = carve_validation(train_rows, held_out, int(val.get("seed", 0)))
    if not trains:
        train_rows = []
    if cfg.task.get("max_train_examples") and trains:
        train_rows = train_rows[: int(cfg.task.max_train_examples)]
    if score_on == "validation":
        return train_rows, val_rows, source_rows
    if cfg.eval.max_examples is not None:
        eval_rows = eval_rows[: int(cfg.eval.max_examples)]
    return train_rows, eval_rows, source_rows


def prepare_task(cfg: DictConfig, kind: Kind, tokenizer: Any, family: str, trains: bool) -> tuple[Task, dict[str, Any]]:
    """The run's Task, its features from the cache when an entry matches; returns the Task and
    what preparing it cost (the record's `data` section)."""
    start = time.perf_counter()
    split = _split_info(cfg)
    if not kind.reads_rows:  # the kind makes its examples (synthetic): nothing to read or cache
        task = kind.build(cfg.task, [], [], tokenizer, family)
        return task, _info("off", start, task, None, split, None)
    use_cache = bool(cfg.get("cache_data", True))
    key = cache_key(cfg, kind, tokenizer, family, trains) if use_cache else None
    path = cache_root() / "tokenized" / f"{key}.json" if key else None
    entry = _read_entry(path, key) if path is not None else None
    if entry is not None:
        task = kind.build(cfg.task, [], [], tokenizer, family)  # the collate and evaluate functions; no rows to tokenise
        task.train, task.eval = entry["train"], entry["eval"]
        info = _info("hit", start, task, path, split, entry.get("source_rows"))
    else:
        train_rows, eval_rows, source_rows = _rows_and_source(cfg, trains)
        task = kind.build(cfg.task, train_rows, eval_rows, tokenizer, family)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            entry = {"format": ENTRY_FORMAT, "key": key, "source_rows": source_rows, "train": task.train, "eval": task.eval}
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
                try:
                    json.dump(entry, tmp, separators=(",", ":"))
                except BaseException:
                    Path(tmp.name).unlink(missing_ok=True)  # a full disk leaves no half entry behind
                    raise
            os.replace(tmp.name, path)  # atomic: a concurrent run reads a whole entry or none
        info = _info("miss" if use_cache else "off", start, task, path, split, source_rows)
    if any(info["truncated"].values()):
        print(f"data: inputs cut to the task's length limit: {info['truncated']['train']:,} of {len(task.train):,} train, "
              f"{info['truncated']['eval']:,} of {len(task.eval):,} scored", file=sys.stderr)
    return task, info


ENTRY_FORMAT = 1  # the layout of a cache entry: {"format", "key", "source_rows", "train", "eval"}


def _read_entry(path: Path, key: str) -> dict[str, Any] | None:
    """The cache entry at path when it is one this module wrote for this key, else None (rebuilt):
    a damaged or half-written file, another layout, or a foreign file planted under the key's name.
    Only JSON is parsed, so a foreign file can at worst be ignored, never run."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable, not UTF-8 (e.g. a pickle), not JSON
        return None
    well_formed = (isinstance(entry, dict) and entry.get("format") == ENTRY_FORMAT and entry.get("key") == key
                   and all(isinstance(entry.get(part), list) and all(isinstance(f, dict) for f in entry[part]) for part in ("train", "eval")))
    return entry if well_formed else None


def _split_info(cfg: DictConfig) -> dict[str, Any]:
    """What the run scores and what it holds out, without reading rows (a cache hit reads none)."""
    val = cfg.get("validation") or {}
    held_out = int(val.get("examples", 0))
    scored = "validation" if val.get("score_on") == "validation" else str(cfg.task.get("eval_split", "eval"))
    return {"scored": scored, "validation_examples": held_out, "validation_seed": int(val.get("seed", 0)) if held_out else None}


def _info(cache: str, start: float, task: Task, path: Path | None, split: dict[str, Any], source_rows: int | None) -> dict[str, Any]:
    """The record's `data` section. truncated: inputs of each split that the length limit cut
    (classification: task.max_length; summarization: the source at task.max_source_tokens)."""
    return {"cache": cache, "prepare_s": time.perf_counter() - start, "train_examples": len(task.train),
            "eval_examples": len(task.eval), "cache_path": str(path) if path else None, **split,
            "truncated": {"train": sum(bool(f.get("truncated")) for f in task.train), "eval": sum(bool(f.get("truncated")) for f in task.eval)},
            "source_rows": source_rows}
