"""`peft-bench wandb-workspace entity/project`: a saved W&B workspace (a view of the project's runs)
for the runs this suite logged there, built with W&B's own `wandb-workspaces` library.

What it shows, every key one that bench/records/tracking.py logs (read from the records, never
typed by hand: `flat_figures` names the summary, `step_row` the curves, the record's config the
W&B config):
  runs grouped by method (the W&B run's job_type)
  Quality against cost: trainable params vs the main metric, peak memory vs the main metric, and
    the rank (config method.r) vs the main metric with its mean line: W&B's line plots draw a
    run's history against its steps, so a line across runs is a scatter plot's mean line
  Speed and cost: bars of step time, tokens/s and peak memory per method (mean, min-max)
  Knobs: parallel coordinates over lr, r, method and model, ending at the main metric
  Curves: train/loss and eval/<main metric> against the step
A panel is there only when the records hold its figures (a folder of random-weight runs has no
quality, so no quality panels); the main metric is the records' `quality.main_metric`.

Saving needs the network and a W&B key. Without them (no key, or WANDB_MODE=offline) the
definition is written to a file (the workspace's model dump, what W&B stores) and
`peft-bench wandb-workspace save=FILE` saves it later."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError
from bench.records.store import load_records
from bench.records.tracking import MODES, flat_figures, resolve_mode, step_row

PROJECT_FORM = "entity/project: your W&B user or team, a slash, the project (e.g. my-team/peft-bench)"
ENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # W&B user and team names
PROJECT = re.compile(r"[^/\\#?%:\s][^/\\#?%:]{0,126}(?<!\s)")  # W&B refuses / \ # ? % : in a project name, and names over 128 characters
KNOBS = (("train.lr", "lr", True), ("method.r", "r", True), ("method.name", "method", False), ("model.name", "model", False))  # (config key, axis, log scale)
COST_BARS = (("speed/step_time_median_s", "step time (s, median)"), ("speed/tokens_per_s", "tokens/s"), ("memory/peak_bytes", "peak memory (bytes)"))
GROUP_BY = "JobType"  # the W&B run's job_type, which tracking.py sets to the method
INSTALL = "pip install 'wandb-workspaces==0.4.13'"


def check_project(value: Any) -> tuple[str, str]:
    """(entity, project) from "entity/project", or a ConfigError naming `project` and the form."""
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) != 2 or not ENTITY.fullmatch(parts[0]) or not PROJECT.fullmatch(parts[1]):
        raise ConfigError("project", value, PROJECT_FORM)
    return parts[0], parts[1]


def config_value(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record["run"].get("config") or {}
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def logged(records: list[dict[str, Any]]) -> tuple[set[str], set[str], set[str]]:
    """(summary keys, history keys, config keys) that these records' runs hold in W&B, each with a
    number for at least one run, named as tracking.py names them."""
    summary = {k for r in records for k, v in flat_figures(r).items() if is_number(v)}
    history = {k for r in records for p in r.get("curve") or [] for k, v in step_row(p, not r["run"].get("random_weights")).items() if is_number(v)}
    config = {key for key, _, _ in KNOBS if any(config_value(r, key) is not None for r in records)}
    return summary, history, config


def main_metric(records: list[dict[str, Any]], summary: set[str], wanted: Any) -> str | None:
    """The quality metric the panels plot: `wanted`, or the records' most common quality.main_metric
    (None: no record has a quality figure, e.g. random weights only)."""
    held = sorted(k.removeprefix("quality/") for k in summary if k.startswith("quality/") and k != "quality/num_examples")
    if wanted is not None:
        if wanted not in held:
            raise ConfigError("metric", wanted, f"a quality figure these records hold: {', '.join(held) or 'none (no record has quality)'}")
        return str(wanted)
    mains = Counter(r["quality"]["main_metric"] for r in records if f"quality/{(r.get('quality') or {}).get('main_metric')}" in summary)
    if mains:
        return mains.most_common(1)[0][0]
    return held[0] if held else None


def build(records: list[dict[str, Any]], entity: str, project: str, name: str | None, metric: str | None, sweep: str | None):
    """The workspace (wandb_workspaces.workspaces.Workspace) for these records' runs."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    summary, history, config = logged(records)
    quality = f"quality/{metric}" if metric and f"quality/{metric}" in summary else None
    tasks = sorted({r["run"]["task"] for r in records})
    sections = []

    scatters = []
    if quality:
        for x, label, log in (("params/trainable", "trainable params", True), ("memory/peak_bytes", "peak memory (bytes)", False)):
            if x in summary:
                scatters.append(wr.ScatterPlot(title=f"{label} vs {metric}", x=wr.SummaryMetric(x), y=wr.SummaryMetric(quality), log_x=log))
        if "method.r" in config and any(is_number(config_value(r, "method.r")) for r in records):
            scatters.append(wr.ScatterPlot(title=f"rank (method.r) vs {metric}, with its mean", x=wr.Config("method.r"), y=wr.SummaryMetric(quality),
                                           log_x=True, running_ymean=True))
    if scatters:
        sections.append(ws.Section(name="Quality against cost", panels=scatters, is_open=True))

    bars = [wr.BarPlot(title=f"{label} per method", metrics=[key], groupby=GROUP_BY, groupby_aggfunc="mean", groupby_rangefunc="minmax")
            for key, label in COST_BARS if key in summary]
    if bars:
        sections.append(ws.Section(name="Speed and cost", panels=bars, is_open=True))

    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(key), display_name=axis, log=log or None) for key, axis, log in KNOBS if key in config]
    if columns:
        ending = [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(quality), display_name=metric)] if quality else []
        sections.append(ws.Section(name="Knobs", panels=[wr.ParallelCoordinatesPlot(title="the knobs" + (f" and {metric}" if quality else ""),
                                                                                    columns=columns + ending)], is_open=True))

    curves = [wr.LinePlot(title=key, y=[key]) for key in ("train/loss", f"eval/{metric}") if key in history]
    if curves:
        sections.append(ws.Section(name="Curves", panels=curves, is_open=False))

    pinned = [f"summary:{k}" for k in (quality, "params/trainable", "memory/peak_bytes", "speed/step_time_median_s") if k and k in summary]
    return ws.Workspace(
        entity=entity, project=project, name=name or f"peft-bench {', '.join(tasks)}" + (f" ({metric})" if metric else ""),
        sections=sections,
        settings=ws.WorkspaceSettings(x_axis="Step", group_by_prefix="first", max_runs=100),  # 100: a tuned sweep's finals, not W&B's first 10
        runset_settings=ws.RunsetSettings(groupby=[ws.Metric(GROUP_BY)], pinned_columns=pinned,
                                          filters=[ws.Metric("Group") == sweep] if sweep else ""),  # a sweep is the W&B runs' group
    )


def definition(workspace: Any) -> dict[str, Any]:
    """What W&B stores for the workspace (its model dump): the file written offline, read by save=."""
    return workspace._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def load(path: Path, project: Any) -> Any:
    """The workspace a definition file holds (in entity/project when given, else the file's)."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.workspaces import internal

    try:
        view = internal.View.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError("save", str(path), f"a workspace file written by peft-bench wandb-workspace ({type(exc).__name__})") from None
    if project is not None:
        view.entity, view.project = check_project(project)
    return ws.Workspace._from_model(view)


def save(workspace: Any) -> int:
    """Save to W&B (network and key); 0 with the URL, 1 with the reason."""
    try:
        workspace.save()  # W&B prints the view's URL
    except Exception as exc:  # noqa: BLE001 - no network, no key, no such project: say so, the file stays
        print(f"wandb-workspace: not saved ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    print(f"saved: workspace {workspace.name!r} in {workspace.entity}/{workspace.project}")
    return 0


def have_library() -> bool:
    """Whether W&B's workspace library is installed (it is what builds and saves the workspace)."""
    import importlib.util

    if importlib.util.find_spec("wandb_workspaces") is None:
        print(f"wandb-workspace: needs W&B's workspace library: {INSTALL}", file=sys.stderr)
        return False
    return True


def verb(opts: DictConfig, cfg: DictConfig | None = None, overrides: list[str] | None = None) -> int:
    """`peft-bench wandb-workspace` (its keys: conf/wandb-workspace.yaml)."""
    if opts.mode not in MODES:
        raise ConfigError("mode", opts.mode, f"one of {', '.join(MODES)}")
    if opts.save is not None:  # a file written offline earlier: save it now
        if opts.project is not None:
            check_project(opts.project)
        return save(load(Path(str(opts.save)), opts.project)) if have_library() else 1
    if opts.project is None:
        raise ConfigError("project", None, PROJECT_FORM)
    entity, project = check_project(opts.project)  # before wandb is imported: a typo answers at once
    folder = Path(str(opts.results_dir))
    if not folder.is_dir():
        raise ConfigError("results_dir", str(folder), "a folder of run records (the runs logged to W&B)")
    sweep = str(opts.sweep) if opts.sweep is not None else None
    records = [r for r in load_records(folder) if sweep is None or r["run"].get("sweep") == sweep]
    if not records:
        raise ConfigError("results_dir" if sweep is None else "sweep", str(folder) if sweep is None else sweep, "a folder with run records" +
                          (" of that sweep (a record's run.sweep)" if sweep else ""))
    summary, _, _ = logged(records)
    metric = main_metric(records, summary, opts.metric)
    out = Path(str(opts.out)) if opts.out is not None else folder / "wandb-workspace.json"

    if not have_library():
        return 1
    workspace = build(records, entity, project, str(opts.name) if opts.name is not None else None, metric, sweep)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(definition(workspace), indent=2) + "\n")
    panels = [f"{s.name}: " + ", ".join(p.title or "" for p in s.panels) for s in workspace.sections]
    print(f"{len(records)} records, main metric {metric or 'none (no quality figures)'}; runs grouped by method")
    for line in panels:
        print(f"  {line}")
    print(f"definition: {out}")
    mode = resolve_mode(OmegaConf.create({"mode": opts.mode}))
    if mode == "online":
        return save(workspace)
    print(f"not saved ({'WANDB_MODE=' + mode if mode == 'disabled' or opts.mode == 'online' else 'offline: no W&B key, or WANDB_MODE=offline'}); "
          f"to save it later, with the network and `wandb login`:\n  peft-bench wandb-workspace save={out}")
    return 0
