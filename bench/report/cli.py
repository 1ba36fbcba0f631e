"""The report's command: read the records, build the frames, write tables, plots, the dashboard
(and mirror them to W&B). `peft-bench report ...` calls verb(); `peft-bench report ...` is its alias."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.errors import ConfigError
from bench.records.store import load_records
from bench.report.frames import points_frame, runs_frame, stale_finals
from bench.report.tables import markdown_table, write_runs_csv, write_tables


def read(results_dirs: list[Path], sweep: str | None = None, external: Path | None = None) -> list[dict[str, Any]]:
    """The records under every folder, those of one sweep when `sweep` is given, and, with
    `external`, PEFT's published runs beside them (bench.harness.peft_runs.external_records: marked
    `run.source`, their model named "... (PEFT, external)"). A file that is not a readable record
    is named on stderr with why (one line each), then how many were skipped: one bad file never
    stops the report, and none is dropped without a word."""
    skipped: list[str] = []
    records = [r for d in results_dirs for r in load_records(d, skipped)]
    if external is not None:
        from bench.harness.peft_runs import external_records

        records += external_records(external)
    for line in skipped:
        print(f"report: skipped {line}", file=sys.stderr)
    if skipped:
        print(f"report: skipped {len(skipped)} file(s) that are not readable records", file=sys.stderr)
    return [r for r in records if r["run"].get("sweep") == sweep or r["run"].get("source")] if sweep else records


def seeds_outcome(results_dir: Path) -> dict[str, Any]:
    """What a sweep with adaptive_seeds.enabled decided per point (bench.sweep.seeds), or {}."""
    import json

    from bench.sweep.seeds import FILE

    try:
        data = json.loads((Path(results_dir) / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build(results_dirs: list[Path], output_dir: Path, sweep: str | None = None, to_wandb: bool = False,
          external: Path | None = None) -> dict[str, Any]:
    """Everything the report writes, from the records under results_dirs (and PEFT's, with
    `external`); returns what it made."""
    from bench.report import dashboard, paired, plots, wandb_log  # matplotlib and plotly load only when files are written

    records = read(results_dirs, sweep, external)
    runs = runs_frame(records)
    if runs.empty:
        return {"records": 0, "files": []}
    output_dir.mkdir(parents=True, exist_ok=True)
    if (runs["role"] == "trial").all():  # an interrupted tuning stage: no row is scored on the reported split yet
        drawn = plots.draw_all(None, output_dir / "plots", runs)
        files = [write_runs_csv(runs, output_dir / "tables")] + [p for paths in drawn.values() for p in paths]  # where write_tables puts it
        return {"records": len(records), "points": 0, "files": files, "plots": drawn}
    stale = stale_finals(runs)  # finals of a search that was replaced: never a second tuned row
    if stale:
        print(f"report: {len(stale)} tuned final(s) left out: their search was replaced by a newer one (another lr or other trials): "
              f"{', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}", file=sys.stderr)
        runs = runs[~runs["id"].isin(stale)]
    points = points_frame(runs[runs["role"] != "trial"])  # trials are scored on validation: they are never a table's rows
    files = write_tables(runs, points, output_dir)
    decided = {k: v for d in results_dirs for k, v in seeds_outcome(d).items()}  # adaptive_seeds: how many seeds each point ran, and why it stopped
    files += paired.write_all(records, runs, points, output_dir, decided)  # which differences are real (per-example scores)
    drawn = plots.draw_all(points, output_dir / "plots", runs)
    files += [p for paths in drawn.values() for p in paths]
    files.append(dashboard.write(runs, points, drawn, output_dir / "dashboard.html", records=records))
    made = {"records": len(records), "points": len(points), "files": files, "plots": drawn}
    if to_wandb:
        made["wandb"] = wandb_log.log_report(runs, points, drawn, output_dir)
    return made


def verb(opts: DictConfig, cfg: DictConfig | None = None, overrides: list[str] | None = None) -> int:
    """`peft-bench report` (its keys: conf/report.yaml)."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    results_dirs = [Path(p) for p in str(opts.results_dir).split(",")]
    for folder in results_dirs:
        if not folder.is_dir():
            raise ConfigError("results_dir", str(folder), "a folder of run records")
    external = Path(opts.external) if opts.external else None
    if external is not None and not external.is_dir():
        raise ConfigError("external", str(external), "a folder of PEFT's method-comparison results")
    sweep = str(opts.sweep) if opts.sweep is not None else None
    if opts.output_dir is None:
        print(markdown_table(read(results_dirs, sweep, external)))
        return 0
    start = time.perf_counter()
    made = build(results_dirs, Path(opts.output_dir), sweep, bool(opts.wandb), external)
    if not made["records"]:
        print(f"no records under {', '.join(map(str, results_dirs))}", file=sys.stderr)
        return 1
    print(f"{made['records']} records, {made['points']} points -> {opts.output_dir} in {time.perf_counter() - start:.1f} s")
    for path in made["files"]:
        print(f"  {path}")
    if made.get("wandb"):
        print(f"  W&B report run: {made['wandb']}")
    return 0
