"""The dashboard: one self-contained HTML file (plotly's and DataTables' JavaScript inlined, no
CDN, works offline). A user steers it:

- the comparison table (DataTables, from the itables package's offline bundle): columns shown or
  hidden, a text query, sorting, and the filtered rows downloaded as CSV; its cells are the
  Markdown and CSV tables' texts (bench.report.tables);
- a scatter of any two recorded figures of one model and task (params, memory parts, speed,
  every quality metric, inference, storage, forgetting), each axis named with its unit and its
  direction (bench.measure.metrics for the metrics; lower is better for a cost), with the Pareto
  front recomputed in the browser for that choice, the majority-class baseline, constant-prediction
  runs flagged and a zero (method=none's parameters) drawn at a marked floor of a log axis;
- two or more points side by side: training curves (loss, eval metric), memory parts and step
  time, and the paired differences with their intervals (bench.measure.significance, computed here
  from the records' per-example predictions);
- the rank curve and the learning-rate sensitivity of the tuning trials, per model and task."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any

from bench.report.frames import MIB, having, higher_is_better, scored as scored_points, trains_everything
from bench.report.tables import cells, metric_value, metrics_of, point_columns

HIDDEN = {"weights_mib", "gradients_mib", "optimizer_mib", "activations_mib", "tuning_s", "tuning_ratio"}  # columns shown on demand
CURVE_POINTS = 200  # at most this many (step, loss) pairs per point: a long run's curve is averaged into windows
PAIRS_MAX = 8  # points per model and task whose every pair is tested (n² pairs, ~0.4 s each; beyond: each against the reference)
FORGETTING_AXES = {  # measure -> axis label and whether higher is better
    "lm_loss": ("forgetting: LM loss Δ (> 0 forgot)", False),
    "representation_cosine": ("forgetting: repr. cosine Δ (< 0 drifted)", True),
}
METRIC_UNITS = {"accuracy": "share, 0-1", "f1": "macro, 0-1", "mcc": "-1 to 1", "loss": "nats per token",
                **{k: "F-measure, 0-1" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}}  # what a metric's axis counts in
# the cost and speed figures a user may put on an axis: points column, label, unit, scale, higher is better, log axis by default
COST_AXES = (
    ("trainable", "trainable parameters", "count", 1.0, False, True),
    ("percent", "trainable share", "%", 1.0, False, True),
    ("peak_bytes", "peak memory", "MiB", MIB, False, True),
    ("weights_bytes", "memory: weights", "MiB", MIB, False, True),
    ("gradients_bytes", "memory: gradients", "MiB", MIB, False, True),
    ("optimizer_state_bytes", "memory: optimizer state", "MiB", MIB, False, True),
    ("activations_and_other_bytes", "memory: activations + other", "MiB", MIB, False, True),
    ("step_time_s", "step time (median)", "s", 1.0, False, False),
    ("tokens_per_s", "training throughput", "tokens/s", 1.0, True, False),
    ("latency_b1_s", "inference latency, batch 1", "ms", 1e-3, False, False),
    ("latency_merged_b1_s", "inference latency merged, batch 1", "ms", 1e-3, False, False),
    ("storage_bytes", "storage per task", "MiB", MIB, False, True),
    ("run_s", "final run time", "s", 1.0, False, False),
    ("tuning_s", "tuning time (lr search)", "s", 1.0, False, False),
)
BREAKDOWN_AXES = ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_and_other_bytes")


def _value(x: Any) -> Any:
    """A JSON-able value: numpy scalars as Python's, NaN as null."""
    if hasattr(x, "item"):
        x = x.item()
    return None if isinstance(x, float) and math.isnan(x) else x


def _json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, default=_value).replace("</", "<\\/")


# ---------------------------------------------------------------- the axes and the points
def axes(points) -> list[dict[str, Any]]:
    """Every figure the points hold a value of, as an axis choice: key, label, unit, direction,
    whether a log axis suits it, and how a point's value is read (column and scale)."""
    from bench.measure.metrics import higher_is_better as metric_direction

    out = [{"key": f"q:{m}", "label": m, "unit": METRIC_UNITS.get(m, "score"), "higher": metric_direction(m, default=True), "log": False}
           for m in metrics_of(points)]
    for column, label, unit, scale, higher, log in COST_AXES:
        if column in points and points[column].notna().any():
            out.append({"key": column, "label": label, "unit": unit, "higher": higher, "log": log, "scale": scale})
    measures = points["forgetting_measure"].dropna().unique() if "forgetting_measure" in points else []
    for measure in sorted(str(m) for m in measures):
        label, higher = FORGETTING_AXES.get(measure, (f"forgetting Δ ({measure})", True))
        out.append({"key": f"forgetting:{measure}", "label": label, "unit": "Δ", "higher": higher, "log": False})
    return out


def _axis_value(point, axis: dict[str, Any]) -> float | None:
    key = axis["key"]
    if key.startswith("q:"):
        return metric_value(point, key[2:])
    if key.startswith("forgetting:"):
        return _value(point["forgetting_delta"]) if point["forgetting_measure"] == key.split(":", 1)[1] else None
    value = _value(point[key])
    return None if value is None else float(value) / axis["scale"]


def _mean_curve(curves: list[list[tuple[int, float]]], window: bool) -> list[list[float]]:
    """The mean over seeds at each step; with window, averaged into at most CURVE_POINTS windows."""
    import pandas as pd

    curves = [c for c in curves if c]
    if not curves:
        return []
    mean = pd.DataFrame([dict(c) for c in curves]).T.sort_index().mean(axis=1).dropna()
    if window and len(mean) > CURVE_POINTS:
        bins = [i // math.ceil(len(mean) / CURVE_POINTS) for i in range(len(mean))]
        mean = pd.Series(mean.groupby(bins).mean().to_numpy(), index=mean.index.to_series().groupby(bins).max().to_numpy())
    return [[_value(s), _value(v)] for s, v in mean.items()]


def point_data(points, runs, axis_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point as the scatter and the comparison read it: its axis values, interval, flags,
    memory parts, step time and its seeds' mean training curves."""
    out = []
    for _, p in points.iterrows():
        mine = runs[(runs["point"] == p["point"]) & (runs["status"] == "success")]
        if "role" in mine:
            mine = mine[mine["role"] != "trial"]
        out.append({
            "label": p["label"], "method": p["method"], "status": p["status"], "seeds": int(p["seeds"]),
            "main": p["main_metric"], "ci": _value(p["score_ci95"]), "constant": bool(p.get("flags")),
            "values": {a["key"]: _axis_value(p, a) for a in axis_list},
            "memory": {k: _value(p[k] / MIB) if _value(p[k]) is not None else None for k in BREAKDOWN_AXES},
            "step_s": _value(p["step_time_s"]),
            "loss": _mean_curve(list(mine["loss_curve"]), window=True), "eval": _mean_curve(list(mine["eval_curve"]), window=False),
        })
    return out


def baselines(points) -> dict[str, list]:
    """metric -> [value, what it is]: accuracy's majority-class share, MCC's 0 (classification)."""
    from bench.report.plots import baseline

    found = {m: baseline(points, m) for m in ("accuracy", "mcc")}
    return {m: list(b) for m, b in found.items() if b is not None}


# ---------------------------------------------------------------- paired differences
def _point_records(records: list[dict[str, Any]], runs, points) -> dict[str, list[dict[str, Any]]]:
    """label -> the successful final runs' records of each scored point."""
    by_id = {r["run"]["id"]: r for r in records}
    final = runs[(runs["status"] == "success") & ((runs["role"] != "trial") if "role" in runs else True)]
    return {p["label"]: [by_id[i] for i in final.loc[final["point"] == p["point"], "id"] if i in by_id]
            for _, p in points[points["seeds"] > 0].iterrows()}


def _reference(points, labels: list[str]) -> str:
    """The point the others are compared with when there are too many for every pair: full
    fine-tuning's best where it ran, else the best."""
    from bench.measure.metrics import goodness

    mine = points[points["label"].isin(labels)]
    full = mine[trains_everything(mine)]
    pool = full if len(full) else mine
    metric = str(mine["main_metric"].iloc[0])
    return str(max(pool.itertuples(), key=lambda p: goodness(metric, p.score_mean) if p.score_mean == p.score_mean else -math.inf).label)


def paired_differences(records: list[dict[str, Any]], runs, points) -> dict[str, Any] | None:
    """For one model and task, the paired differences (bench.measure.significance.compare_records) between
    the points that kept per-example predictions or scores: every pair when at most PAIRS_MAX did,
    else each against the reference. label a -> label b -> [a minus b, low, high, differs, seeds,
    examples]. None when fewer than two points kept them (or random weights: cost only)."""
    from bench.measure import significance

    if points["random_weights"].astype(bool).all() or not points["main_metric"].notna().any():
        return None
    metric = str(points["main_metric"].dropna().iloc[0])
    found = _point_records(records, runs, points)
    kept = [label for label, recs in found.items() if any((r.get("quality") or {}).get("per_example") for r in recs)]
    if len(kept) < 2:
        return None
    if len(kept) <= PAIRS_MAX:
        todo = list(combinations(kept, 2))
    else:
        reference = _reference(points, kept)
        todo = [(label, reference) for label in kept if label != reference]
    pairs: dict[str, dict[str, list]] = {}
    for a, b in todo:
        c = significance.compare_records(found[a], found[b], metric, (a, b))
        if c is not None:
            pairs.setdefault(a, {})[b] = [c.diff, c.low, c.high, c.distinguishable, c.seeds, c.examples]
    return {"metric": metric, "pairs": pairs, "left_out": sorted(set(found) - set(kept)), "draws": significance.N_BOOT,
            "all_pairs": len(kept) <= PAIRS_MAX}


# ---------------------------------------------------------------- the fixed charts
def sensitivity(trials) -> list[dict[str, Any]]:
    """Per model and task, the tuning trials' validation score against learning rate (log axis),
    a line per method; pruned trials as x at their last score."""
    import plotly.graph_objects as go

    out = []
    ok = trials[trials["status"].isin(["success", "pruned"]) & trials["score"].notna() & ~trials["random_weights"].astype(bool)]
    for (model, task), group in ok.groupby(["model", "task"]):
        fig = go.Figure()
        for label, line in group.groupby("method_label"):
            done = line[line["status"] == "success"].groupby("lr")["score"].mean()
            fig.add_trace(go.Scatter(x=done.index.tolist(), y=done.tolist(), mode="lines+markers", name=label))
            pruned = line[line["status"] == "pruned"]
            if len(pruned):
                fig.add_trace(go.Scatter(x=pruned["lr"].tolist(), y=pruned["score"].tolist(), mode="markers", marker={"symbol": "x"},
                                         name=f"{label} (pruned)"))
        metric = str(group["main_metric"].iloc[0])
        _baseline_line(fig, group, metric)
        fig.update_layout(title=f"validation {metric} vs learning rate (tuning trials): {model} on {task}",
                          xaxis={"type": "log", "title": "peak learning rate (log)"}, yaxis={"title": f"validation {metric}"},
                          height=420, margin={"t": 50})
        out.append({"model": model, "task": task, "figure": json.loads(fig.to_json())})
    return out


def _baseline_line(fig, points, metric: str) -> None:
    """The majority-class (or MCC 0) line, named; plotly's autorange then holds it."""
    from bench.report.plots import baseline

    line = baseline(points, metric)
    if line is not None:
        fig.add_hline(y=line[0], line_dash="dot", line_color="gray", annotation_text=line[1], annotation_position="bottom right")


def rank_figures(points) -> list[dict[str, Any]]:
    """Per model and task, the score against rank (method.r) when points differ in rank, a line per
    series, full fine-tuning and the majority-class baseline as reference lines."""
    import plotly.graph_objects as go

    out = []
    for (model, task), group in points.groupby(["model", "task"]):
        scored = scored_points(group)
        ranked = having(scored, "r")
        if scored.empty or not len(ranked) or ranked["method.r"].nunique() < 2:
            continue
        metric = str(scored["main_metric"].iloc[0])
        fig = go.Figure()
        for series, line in ranked.groupby("series"):
            line = line.sort_values("method.r")
            fig.add_trace(go.Scatter(x=line["method.r"], y=line["score_mean"], mode="lines+markers", name=series,
                                     error_y={"type": "data", "array": line["score_ci95"].fillna(0).tolist()}))
        full = scored[trains_everything(scored)]
        if len(full):
            best = full["score_mean"].max() if higher_is_better(scored) else full["score_mean"].min()  # full fine-tuning's best point
            fig.add_hline(y=float(best), line_dash="dash", annotation_text="full fine-tuning")
        _baseline_line(fig, scored, metric)
        fig.update_layout(title=f"{metric} vs rank r: {model} on {task}", xaxis={"type": "log", "title": "rank r (log 2)",
                          "tickvals": sorted(ranked["method.r"].unique().tolist())}, yaxis={"title": f"{metric} (mean ± 95% CI)"},
                          height=420, margin={"t": 50})
        out.append({"model": model, "task": task, "figure": json.loads(fig.to_json())})
    return out


# ---------------------------------------------------------------- the page
def table(points) -> dict[str, Any]:
    """The comparison table: its columns (key, title, shown, numeric) and each row's cells (text,
    sort value) from the Markdown and CSV tables' renderer, plus whether the row failed."""
    columns = point_columns(points, "dashboard")
    ordered = [p for _, p in points.sort_values(["model", "task", "method", "trainable"], na_position="last").iterrows()]
    rows = [{"cells": row, "failed": not str(p["status"]).startswith("success")} for row, p in zip(cells(columns, ordered), ordered)]
    return {"columns": [{"key": c.key, "title": c.header, "shown": c.key not in HIDDEN, "numeric": c.sort is not None} for c in columns],
            "rows": rows}


def groups(runs, points, records: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Per model and task: the axis choices, the points, the baselines and the paired differences."""
    out = []
    for (model, task), group in points.groupby(["model", "task"]):
        axis_list = [a for a in axes(group) if any(_axis_value(p, a) is not None for _, p in group.iterrows())]  # a figure some point holds
        main = str(group["main_metric"].dropna().iloc[0]) if group["main_metric"].notna().any() else None
        out.append({"model": model, "task": task, "random": bool(group["random_weights"].astype(bool).all()), "main": main,
                    "axes": axis_list, "points": point_data(group, runs, axis_list), "baselines": baselines(group),
                    "paired": paired_differences(records, runs, group) if records else None})
    return out


def _datatables() -> tuple[str, str]:
    """DataTables with its extensions (Buttons: column visibility, CSV), as the itables package
    ships them for offline pages: one ES module and its CSS."""
    from itables import options

    bundle = Path(options.dt_bundle)
    return bundle.read_text(encoding="utf-8"), bundle.with_suffix(".css").read_text(encoding="utf-8")


def write(runs, points, drawn: dict[str, list[Path]], path: Path, records: list[dict[str, Any]] | None = None) -> Path:
    """The page. records: the run records, for the paired differences (without them the page says
    none were computed)."""
    from plotly.offline import get_plotlyjs

    dt_js, dt_css = _datatables()
    trials = runs[runs["role"] == "trial"] if "role" in runs else runs.iloc[:0]
    data = {"table": table(points), "groups": groups(runs, points, records),
            "figures": rank_figures(points) + sensitivity(trials), "paired_computed": records is not None}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = _fill(PAGE, {"PLOTLY": get_plotlyjs(), "DT_CSS": dt_css.replace("</", "<\\/"), "DT_JS": _json(dt_js), "DATA": _json(data),
                        "RECORDS": str(len(runs)), "POINTS": str(len(points)), "STAMP": stamp})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path




def _fill(template: str, values: dict[str, str]) -> str:
    """The template with each /*NAME*/ replaced in one pass (no inserted text is scanned again)."""
    import re

    return re.sub(r"/\*([A-Z_]+)\*/", lambda m: values.get(m.group(1), m.group(0)), template)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>peft-bench dashboard</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table.dataTable { font-size: 13px; }
table.dataTable tr.failed td { color: #a33; }
table.dataTable td { white-space: nowrap; }
#points_wrapper .dt-layout-table { overflow-x: auto; }
.controls label { margin-right: 1.2em; }
.chart { display: inline-block; width: 640px; vertical-align: top; margin: .5em; border: 1px solid #eee; }
#scatter { width: 960px; height: 580px; border: 1px solid #eee; }
.note { color: #555; font-size: 13px; max-width: 70em; }
#compare-picks label { display: inline-block; margin: 0 1.2em .3em 0; }
table.plain { border-collapse: collapse; font-size: 13px; margin: .5em; }
table.plain td, table.plain th { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
</style>
<style>/*DT_CSS*/</style>
<script>/*PLOTLY*/</script>
</head>
<body>
<h1>peft-bench: methods compared</h1>
<p class="note">/*RECORDS*/ run records, /*POINTS*/ points (a point is a config over its seeds; a main metric's cell is
the mean over successful seeds ± its 95% t-interval, another metric's cell its mean). Failed and OOM points stay
in the table with their reason and are left out of the charts. Random-weight models show cost only.
Generated /*STAMP*/.</p>

<h2>Table</h2>
<p class="note">"Columns" shows or hides columns; the search box filters rows on any cell's text; a header sorts;
"Download CSV" saves the rows the search leaves, with the columns shown.</p>
<table id="points" class="display compact cell-border" style="width:100%"></table>

<h2>Scatter: any two figures</h2>
<div class="controls">
<label>model and task <select id="group"></select></label>
<label>x <select id="x"></select></label><label><input type="checkbox" id="xlog"> log x</label>
<label>y <select id="y"></select></label><label><input type="checkbox" id="ylog"> log y</label>
</div>
<div id="scatter"></div>
<p id="front" class="note"></p>
<p class="note">Red: the Pareto front for the two chosen figures, each read in its own direction (named on its
axis): no other point is at least as good on both and better on one. Error bars: the 95% interval of a main
metric over seeds. An open square: a run that predicted one label for every example. The dotted line is what a
run that learned only the class prior scores. On a log axis a zero (e.g. method=none trains no parameters) is
drawn on the dotted floor line, a decade below the smallest value.</p>

<h2>Compare points side by side</h2>
<div id="compare-picks"></div>
<div id="compare-out">
<div class="chart" id="cmp-loss"></div><div class="chart" id="cmp-eval"></div>
<div class="chart" id="cmp-memory"></div><div class="chart" id="cmp-step"></div>
<div id="cmp-paired"></div>
</div>

<h2>More charts</h2>
<div id="charts"></div>
<script>
const DATA = /*DATA*/;
const DT_SOURCE = /*DT_JS*/;
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const num = v => v === null || v === undefined ? "" : Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en-US") : String(+v.toPrecision(4));
const signed = v => { const r = +v.toFixed(3) || 0; return (r >= 0 ? "+" : "") + r.toFixed(3); };  // never "-0.000"
const PLOT = {responsive: true, displaylogo: false};
window.DASH = {front: []};

// ---------------------------------------------------------------- the table (DataTables)
async function buildTable() {
  const url = URL.createObjectURL(new Blob([DT_SOURCE], {type: "text/javascript"}));
  const DataTable = (await import(url)).default;
  URL.revokeObjectURL(url);
  const columns = DATA.table.columns.map((c, i) => ({
    title: c.title, visible: c.shown, type: c.numeric ? "num" : "string", className: c.numeric ? "dt-right" : "dt-left",
    data: (row, type) => (type === "sort" || type === "type") && c.numeric ? row.cells[i][1] : row.cells[i][0],
  }));
  window.POINTS_TABLE = new DataTable("#points", {
    data: DATA.table.rows, columns, order: [], pageLength: 50, lengthMenu: [10, 25, 50, 100, -1], autoWidth: false,
    createdRow: (tr, row) => { if (row.failed) tr.classList.add("failed"); },
    layout: {
      topStart: {buttons: [{extend: "colvis", text: "Columns"},
                           {extend: "csvHtml5", text: "Download CSV", filename: "peft-bench-points",
                            exportOptions: {columns: ":visible", modifier: {search: "applied", order: "applied"}}}]},
      topEnd: {search: {placeholder: "method, status, number ..."}},
    },
  });
}

// ---------------------------------------------------------------- the scatter
const group = () => DATA.groups[+$("group").value];
const axisOf = (g, key) => g.axes.find(a => a.key === key);
const axisTitle = a => `${a.label} (${a.unit}; ${a.higher ? "higher" : "lower"} is better)`;
const floorOf = values => { const pos = values.filter(v => v > 0); return pos.length ? 10 ** (Math.floor(Math.log10(Math.min(...pos))) - 1) : 1; };

function fillAxes() {
  const g = group();
  for (const id of ["x", "y"]) {
    const select = $(id), keep = select.value;
    select.innerHTML = g.axes.map(a => `<option value="${esc(a.key)}">${esc(axisTitle(a))}</option>`).join("");
    const want = id === "x" ? "trainable" : "q:" + g.main;
    const has = key => g.axes.some(a => a.key === key);
    select.value = has(keep) ? keep : has(want) ? want : g.axes[id === "x" ? 0 : Math.min(1, g.axes.length - 1)].key;
    setLog(id);
  }
}

function setLog(id) {  // a log axis by default for counts and bytes; never for a figure with a negative value
  const g = group(), a = axisOf(g, $(id).value), values = g.points.map(p => p.values[a.key]).filter(v => v !== null);
  const negative = values.some(v => v < 0);
  $(id + "log").disabled = negative;
  $(id + "log").checked = a.log && !negative && values.some(v => v > 0);
}

function paretoFront(pts, ax, ay) {  // each figure read in its own direction
  const gx = p => ax.higher ? p.x : -p.x, gy = p => ay.higher ? p.y : -p.y;
  return pts.filter(p => !pts.some(q => q !== p && gx(q) >= gx(p) && gy(q) >= gy(p) && (gx(q) > gx(p) || gy(q) > gy(p))));
}

function drawScatter() {
  const g = group(), ax = axisOf(g, $("x").value), ay = axisOf(g, $("y").value);
  const xlog = $("xlog").checked, ylog = $("ylog").checked;
  const pts = g.points.filter(p => p.seeds > 0 && p.values[ax.key] !== null && p.values[ay.key] !== null)
    .map(p => ({label: p.label, x: p.values[ax.key], y: p.values[ay.key], p}));
  const front = paretoFront(pts, ax, ay).sort((a, b) => a.x - b.x || a.y - b.y);
  const onFront = new Set(front.map(p => p.label));
  const fx = floorOf(pts.map(p => p.x)), fy = floorOf(pts.map(p => p.y));
  const px = p => xlog && p.x <= 0 ? fx : p.x, py = p => ylog && p.y <= 0 ? fy : p.y;
  const ci = (p, a) => a.key === "q:" + p.p.main && p.p.ci ? p.p.ci : 0;
  const hover = `%{customdata[0]}<br>${esc(ax.label)}: %{customdata[1]:,.4g} ${esc(ax.unit)}<br>${esc(ay.label)}: %{customdata[2]:,.4g} ${esc(ay.unit)}<extra></extra>`;
  const trace = (list, name, marker, extra = {}) => ({type: "scatter", mode: "markers", name, x: list.map(px), y: list.map(py), marker,
    customdata: list.map(p => [p.label, p.x, p.y]), hovertemplate: hover,
    error_x: {type: "data", array: list.map(p => ci(p, ax)), visible: true, color: marker.color},
    error_y: {type: "data", array: list.map(p => ci(p, ay)), visible: true, color: marker.color}, ...extra});
  const traces = [];
  const off = pts.filter(p => !onFront.has(p.label));
  if (off.length) traces.push(trace(off, "dominated", {color: "gray", size: 8}));
  traces.push(trace(front, "Pareto front", {color: "red", size: 9},
                    {mode: "markers+text", text: front.map(p => p.label), textfont: {size: 11},  // labels alternate above and below: neighbours do not overlap
                     textposition: front.map((p, i) => (i % 2 ? "bottom" : "top") + (i === front.length - 1 ? " left" : i === 0 ? " right" : " center"))}));
  traces.push({type: "scatter", mode: "lines", x: front.map(px), y: front.map(py), line: {shape: ax.higher ? "vh" : "hv", color: "red"},
               showlegend: false, hoverinfo: "skip"});
  const stuck = pts.filter(p => p.p.constant);
  if (stuck.length) traces.push(trace(stuck, "constant predictions (one label for every example)", {symbol: "square-open", size: 16, color: "black"}));
  const xs = pts.map(px), ys = pts.map(py), span = v => [Math.min(...v), Math.max(...v)];
  for (const [a, horizontal] of [[ay, true], [ax, false]]) {  // the class-prior baseline, inside the axis range
    const base = a.key.startsWith("q:") ? g.baselines[a.key.slice(2)] : null;
    if (!base || !pts.length) continue;
    const [lo, hi] = span(horizontal ? xs : ys);
    traces.push({type: "scatter", mode: "lines", name: base[1], line: {dash: "dot", color: "gray"}, hoverinfo: "name",
                 x: horizontal ? [lo, hi] : [base[0], base[0]], y: horizontal ? [base[0], base[0]] : [lo, hi]});
  }
  for (const [on, zero, horizontal, a] of [[xlog, pts.some(p => p.x <= 0), false, ax], [ylog, pts.some(p => p.y <= 0), true, ay]]) {
    if (!on || !zero) continue;  // zeros on a log axis: drawn on a marked floor, a decade below the smallest value
    const [lo, hi] = span(horizontal ? xs : ys), at = horizontal ? fy : fx;
    traces.push({type: "scatter", mode: "lines", name: `${a.label} = 0 (drawn at the log axis' floor)`, line: {dash: "dot", color: "black", width: 1},
                 hoverinfo: "name", x: horizontal ? [lo, hi] : [at, at], y: horizontal ? [at, at] : [lo, hi]});
  }
  Plotly.react("scatter", traces, {
    title: {text: `${esc(ay.label)} vs ${esc(ax.label)}: ${esc(g.model)} on ${esc(g.task)}`},
    xaxis: {title: {text: esc(axisTitle(ax)) + (xlog ? ", log scale" : "")}, type: xlog ? "log" : "linear"},
    yaxis: {title: {text: esc(axisTitle(ay)) + (ylog ? ", log scale" : "")}, type: ylog ? "log" : "linear"},
    margin: {t: 50, l: 80, r: 20, b: 60}, legend: {orientation: "h", y: -0.18}, hovermode: "closest"}, PLOT);
  window.DASH.front = front.map(p => p.label);
  $("front").textContent = `Pareto front (${front.length} of ${pts.length} points): ` + front.map(p => p.label).join(", ");
}

// ---------------------------------------------------------------- compare
function fillPicks() {
  const g = group();
  $("compare-picks").innerHTML = "Points to compare: " + g.points.map((p, i) =>
    `<label><input type="checkbox" value="${i}" data-label="${esc(p.label)}"${p.seeds > 0 ? "" : " disabled"}> ${esc(p.label)}</label>`).join("");
  const pair = g.paired ? Object.entries(g.paired.pairs).map(([a, bs]) => [a, Object.keys(bs)[0]])[0] : null;  // a pair with a paired difference
  const boxes = [...$("compare-picks").querySelectorAll("input:not([disabled])")];
  (pair ? boxes.filter(box => pair.includes(box.dataset.label)) : boxes.slice(0, 2)).forEach(box => { box.checked = true; });
  for (const box of $("compare-picks").querySelectorAll("input")) box.addEventListener("change", drawCompare);
  drawCompare();
}

function pairRow(g, a, b) {
  const pairs = g.paired.pairs;
  let c = (pairs[a] || {})[b];
  if (!c && (pairs[b] || {})[a]) { const r = pairs[b][a]; c = [-r[0], -r[2], -r[1], r[3], r[4], r[5]]; }
  if (!c) return `<tr><td>${esc(a)} − ${esc(b)}</td><td colspan="4">not computed: ${g.paired.all_pairs ? "one of them kept no per-example predictions"
    : "too many points for every pair; each is compared with the reference"}</td></tr>`;
  return `<tr><td>${esc(a)} − ${esc(b)}</td><td>${signed(c[0])}</td><td>[${signed(c[1])}, ${signed(c[2])}]</td>` +
         `<td>${c[3] ? "<b>differs</b>" : "cannot tell"}</td><td>${c[4]} seeds × ${c[5]} examples</td></tr>`;
}

function drawPaired(g, chosen) {
  const out = $("cmp-paired");
  if (!DATA.paired_computed) { out.innerHTML = `<p class="note">Paired differences: not computed (the page was built without the records).</p>`; return; }
  if (!g.paired) { out.innerHTML = `<p class="note">Paired differences: none for ${esc(g.model)} on ${esc(g.task)}: fewer than two points kept every example's prediction (quality.per_example).</p>`; return; }
  const rows = [];
  chosen.forEach((a, i) => chosen.slice(i + 1).forEach(b => rows.push(pairRow(g, a.label, b.label))));
  const p = g.paired;
  out.innerHTML = `<p class="note">Paired differences in ${esc(p.metric)} (first minus second) with the 95% paired bootstrap interval,
    seeds and evaluation examples resampled together (${p.draws} draws, bench/measure/significance.py); <b>differs</b>: the interval excludes 0.
    ${p.left_out.length ? "Without per-example predictions (left out): " + esc(p.left_out.join(", ")) + "." : ""}</p>
    <table class="plain" id="paired-table"><thead><tr><th>pair</th><th>${esc(p.metric)} difference</th><th>95% interval</th><th>verdict</th><th>on</th></tr></thead>
    <tbody>${rows.join("")}</tbody></table>`;
}

function drawCompare() {
  const g = group();
  const chosen = [...$("compare-picks").querySelectorAll("input:checked")].map(box => g.points[+box.value]);
  const line = (p, key) => ({type: "scatter", mode: "lines+markers", name: p.label, x: p[key].map(s => s[0]), y: p[key].map(s => s[1]),
                              marker: {size: key === "eval" ? 7 : 2}});
  const layout = (title, x, y, extra = {}) => ({title: {text: title, font: {size: 13}}, xaxis: {title: {text: x}}, yaxis: {title: {text: y}},
                                              height: 380, margin: {t: 45, l: 70, r: 20, b: 90}, legend: {orientation: "h", y: -0.3}, ...extra});
  Plotly.react("cmp-loss", chosen.filter(p => p.loss.length).map(p => line(p, "loss")),
               layout("training loss (mean over seeds)", "optimizer step", "training loss (lower is better)"), PLOT);
  const evals = chosen.filter(p => p.eval.length).map(p => line(p, "eval"));
  const base = g.baselines[g.main];
  if (base && evals.length) {
    const steps = evals.flatMap(t => t.x);
    evals.push({type: "scatter", mode: "lines", name: base[1], x: [Math.min(...steps), Math.max(...steps)], y: [base[0], base[0]], line: {dash: "dot", color: "gray"}});
  }
  Plotly.react("cmp-eval", evals, layout(`eval ${esc(g.main || "score")} over training (mean over seeds; last: final score)`, "optimizer step",
                                         `${esc(g.main || "score")} (higher is better)`), PLOT);
  const parts = [["weights_bytes", "weights"], ["gradients_bytes", "gradients"], ["optimizer_state_bytes", "optimizer state"],
                 ["activations_and_other_bytes", "activations + other"]];
  Plotly.react("cmp-memory", parts.map(([key, name]) => ({type: "bar", name, x: chosen.map(p => p.label), y: chosen.map(p => p.memory[key])})),
               layout("memory at the training peak, by part", "", "MiB (lower is better)", {barmode: "stack"}), PLOT);
  Plotly.react("cmp-step", [{type: "bar", name: "median step time", x: chosen.map(p => p.label), y: chosen.map(p => p.step_s), marker: {color: "purple"}}],
               layout("training step time (median after warm-up)", "", "s per step (lower is better)"), PLOT);
  drawPaired(g, chosen);
}

// ---------------------------------------------------------------- the fixed charts
function drawCharts() {
  DATA.figures.forEach((f, i) => {
    const div = document.createElement("div");
    div.className = "chart"; div.dataset.model = f.model; div.dataset.task = f.task;
    const inner = document.createElement("div"); inner.id = "chart-" + i;
    div.appendChild(inner); $("charts").appendChild(div);
    Plotly.newPlot(inner, f.figure.data, f.figure.layout, PLOT);
  });
}

function showGroup() {
  const g = group();
  for (const div of document.querySelectorAll("#charts .chart")) div.style.display = div.dataset.model === g.model && div.dataset.task === g.task ? "" : "none";
  if (!g.axes.length) {  // every point failed: nothing to plot, the table says why
    Plotly.purge("scatter");
    $("front").textContent = `Nothing to plot for ${g.model} on ${g.task}: no point has a recorded figure (see the status column).`;
  } else { fillAxes(); drawScatter(); }
  fillPicks();
}

$("group").innerHTML = DATA.groups.map((g, i) => `<option value="${i}">${esc(g.model)} on ${esc(g.task)}${g.random ? " (random weights: cost only)" : ""}</option>`).join("");
$("group").addEventListener("change", showGroup);
for (const id of ["x", "y"]) {
  $(id).addEventListener("change", () => { setLog(id); drawScatter(); });
  $(id + "log").addEventListener("change", drawScatter);
}
drawCharts();
if (DATA.groups.length) showGroup();
buildTable().then(() => { document.body.dataset.ready = "yes"; });
</script>
</body></html>
"""
