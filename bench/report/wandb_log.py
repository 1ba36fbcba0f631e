"""The report mirrored to W&B: the comparison table and the plots as one run (the files on disk
are the report; this only mirrors them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def log_report(runs, points, drawn: dict[str, list[Path]], output_dir: Path) -> dict[str, Any]:
    """The comparison table and the plots, as one W&B run of job_type 'report' in the sweep's group."""
    from omegaconf import OmegaConf

    from bench.records.tracking import resolve_mode

    try:
        import wandb

        sweeps = runs["sweep"].dropna().unique()
        run = wandb.init(project="peft-bench", mode=resolve_mode(OmegaConf.create({"mode": "auto"})), dir=str(output_dir),
                         group=str(sweeps[0]) if len(sweeps) == 1 else None, job_type="report", name="report",
                         settings=wandb.Settings(silent=True, console="off"))
        shown = points.drop(columns=["point"])
        table = shown.astype(object).where(shown.notna(), None)
        run.log({"comparison": wandb.Table(dataframe=table),
                 **{f"plots/{name}": wandb.Image(str(paths[0])) for name, paths in drawn.items()}})
        run.finish()
        return {"run_id": run.id, "dir": str(Path(run.dir).parent), "error": None}
    except Exception as exc:  # noqa: BLE001 - the files on disk are the report; W&B only mirrors them
        print(f"report: W&B logging failed ({type(exc).__name__}: {exc}); the files are written", file=sys.stderr)
        return {"run_id": None, "dir": None, "error": f"{type(exc).__name__}: {exc}"}
