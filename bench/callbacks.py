"""Hydra callbacks: after a sweep, print the table of the records that sweep wrote."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.record import load_records
from bench.report import markdown_table


class PrintSweepTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = str(config.hydra.sweep.dir)
        records = [r for r in load_records(config.results_dir) if r["run"].get("sweep") == sweep]
        print(f"\n{len(records)} runs in this sweep (records under {config.results_dir}):\n")
        print(markdown_table(records), flush=True)
