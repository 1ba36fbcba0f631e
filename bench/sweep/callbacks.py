"""Hydra callbacks: after a sweep, print the table of its points' records (skipped points
show the earlier record that made them skippable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.report.tables import markdown_table

POINTER = "record_path"  # written by bench.run.app into each job's folder


def sweep_records(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The records named by the sweep's job folders, in job order."""
    records = []
    pointers = sorted(Path(sweep_dir).glob(f"*/{POINTER}"), key=lambda p: (not p.parent.name.isdigit(), int(p.parent.name) if p.parent.name.isdigit() else 0, p.parent.name))
    for pointer in pointers:
        try:
            records.append(json.loads(Path(pointer.read_text().strip()).read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return records


class PrintSweepTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        records = sweep_records(str(config.hydra.sweep.dir))
        print(f"\n{len(records)} points in this sweep (records under {config.results_dir}):\n")
        print(markdown_table(records), flush=True)
