"""Raw rows from where a task's YAML says they are: TSV/JSONL under data_root, a hub dataset, or
the embedded generator. Rows are plain dicts; the task kind turns them into model inputs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError

FORMATS = ("tsv", "jsonl", "hub", "embedded")
csv.field_size_limit(sys.maxsize)


def split_file(task_cfg: DictConfig, data_root: str, split: str) -> Path:
    """The file of a split for local formats: data_root / task.path / task.<split>_split."""
    return Path(data_root).expanduser() / task_cfg.path / task_cfg[f"{split}_split"]


def _read_tsv(path: Path, columns: list[str] | None) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC files start with a BOM
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(columns) if columns else next(reader)
        return [dict(zip(header, row)) for row in reader if row]


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_rows(task_cfg: DictConfig, data_root: str, split: str) -> list[dict]:
    """All rows of `split` ('train' or 'eval')."""
    fmt = task_cfg.format
    if fmt == "embedded":
        from bench.tasks.embedded import generate

        return generate(task_cfg, split)
    if fmt == "hub":
        try:
            import datasets
        except ImportError as exc:
            raise ConfigError("task.format", "hub", "install the `datasets` package to read hub datasets") from exc
        ds = datasets.load_dataset(task_cfg.path, task_cfg.get("subset"), split=task_cfg[f"{split}_split"])
        return [dict(row) for row in ds]
    path = split_file(task_cfg, data_root, split)
    columns = OmegaConf.to_container(task_cfg.columns) if task_cfg.get("columns") else None
    return _read_tsv(path, columns) if fmt == "tsv" else _read_jsonl(path)


def first_row_fields(task_cfg: DictConfig, data_root: str, split: str) -> list[str]:
    """Field names of a local split, read from its first line only (cheap, for validation)."""
    path = split_file(task_cfg, data_root, split)
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = f.readline()
    if task_cfg.format == "jsonl":
        return list(json.loads(first).keys())
    if task_cfg.get("columns"):
        return list(task_cfg.columns)
    return first.rstrip("\r\n").split("\t")
