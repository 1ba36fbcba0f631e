"""Raw rows from where a task's YAML says they are: TSV/JSONL under data_root, a hub dataset, or
the embedded generator. Rows are plain dicts; the task kind turns them into model inputs.

A local file that cannot be parsed (invalid UTF-8, a TSV row with the wrong number of fields, a
JSONL line that is not a JSON object, no data rows at all) raises a ConfigError naming the file
and the line, here, so validation (which reads every row) and a run reading the data fail alike.
This module imports no torch: validation reads the rows before anything heavy loads."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError

FORMATS = ("tsv", "jsonl", "hub", "embedded")
csv.field_size_limit(sys.maxsize)


def label_key(raw: object) -> str:
    """A label as text for matching the data against task.labels, the same at validation and in the
    run. Booleans and their spellings compare equal (true, True, "true"): YAML and JSON both read
    true/false as booleans, and a TSV holds them as text."""
    text = str(raw)
    return text.lower() if text.lower() in ("true", "false") else text


def split_file(task_cfg: DictConfig, data_root: str, split: str) -> Path:
    """The file of a split for local formats: data_root / task.path / task.<split>_split."""
    return Path(data_root).expanduser() / task_cfg.path / task_cfg[f"{split}_split"]


def _text(path: Path, split: str) -> str:
    """The file decoded as UTF-8 (a BOM is dropped: MRPC's files start with one); invalid bytes
    are refused with their line, which the text decoder alone would not say."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"task.{split}_split", str(path), f"a UTF-8 text file; line {line} has invalid bytes ({exc.reason})") from None


def _read_tsv(path: Path, columns: list[str] | None, split: str) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(_text(path, split), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = list(columns) if columns else next(reader, None)
    if header is None:
        raise ConfigError(f"task.{split}_split", str(path), "a TSV file with a header line and at least one data row; the file is empty")
    rows = []
    for row in reader:
        if not row:
            continue  # a blank line (e.g. a trailing newline)
        if len(row) != len(header):
            where = "task.columns" if columns else "the header line"
            raise ConfigError(f"task.{split}_split", str(path),
                              f"a TSV file whose rows have {len(header)} tab-separated fields like {where}; line {reader.line_num} has {len(row)}")
        rows.append((reader.line_num, dict(zip(header, row))))
    return rows


def _read_jsonl(path: Path, split: str) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(_text(path, split).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"task.{split}_split", str(path), f"a JSONL file with one JSON object per line; line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"task.{split}_split", str(path), f"a JSONL file with one JSON object per line; line {number} holds a {type(row).__name__}")
        rows.append((number, row))
    return rows


def read_rows(task_cfg: DictConfig, data_root: str, split: str) -> list[dict]:
    """All rows of `split` ('train' or 'eval'); a local file without a data row is refused."""
    if task_cfg.format in ("tsv", "jsonl"):
        return [row for _, row in read_numbered(task_cfg, data_root, split)]
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
    raise ConfigError("task.format", fmt, f"one of {', '.join(FORMATS)}")


def read_numbered(task_cfg: DictConfig, data_root: str, split: str) -> list[tuple[int, dict]]:
    """(line number, row) for every row of a local (tsv or jsonl) split: validation names the line
    of a row whose fields or label do not fit the task."""
    path = split_file(task_cfg, data_root, split)
    columns = OmegaConf.to_container(task_cfg.columns) if task_cfg.get("columns") else None
    rows = _read_tsv(path, columns, split) if task_cfg.format == "tsv" else _read_jsonl(path, split)
    if not rows:
        raise ConfigError(f"task.{split}_split", str(path), "a file with at least one data row; it has none (a header only, or empty)")
    return rows
