"""The dashboard: one self-contained HTML file (plotly's JavaScript inlined, no CDN, works
offline) with the comparison table (sortable by any column, filterable by model, task, method
and free text) and interactive charts per model and task."""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.report.frames import MIB, having, higher_is_better, pareto_front, scored as scored_points, trains_everything
from bench.report.tables import html_headers, html_rows, point_columns

LABEL_RISE = (-28, -56)  # px above a front point its label sits, taken in turn so neighbours' labels do not overlap


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def table_rows(points) -> tuple[str, list[dict[str, Any]]]:
    """The table's header cells and its rows: each row's <tr> from the same columns and renderer
    as the Markdown and CSV tables, with what the filters and the sorting read."""
    columns = point_columns(points, "dashboard")
    ordered = [p for _, p in points.iterrows()]
    rows = html_rows(columns, ordered, failed=lambda p: not str(p["status"]).startswith("success"))
    for row, p in zip(rows, ordered):
        row["model"] = p["model"] + (" (random)" if p["random_weights"] else "")
        row["task"], row["method"] = p["task"], p["method"]
    return html_headers(columns), rows


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
        fig.update_layout(title=f"validation {metric} vs learning rate (tuning trials): {model} on {task}",
                          xaxis={"type": "log", "title": "peak learning rate (log)"}, yaxis={"title": f"validation {metric}"},
                          height=420, margin={"t": 50})
        out.append({"model": model, "task": task, "figure": json.loads(fig.to_json())})
    return out


def _pareto_figure(usable, cost: str, title: str, scale: float, metric: str, model: str, task: str):
    """Cost against score: every point a marker with its label on hover; only the front's points
    carry a label on the chart, set left of each and on its better side (above; below for a
    lower-is-better metric), where no point can be: nothing is cheaper and better than a front point, at heights that alternate so neighbours do not
    overlap, with the axes padded so the first and the last label stay inside the figure."""
    import plotly.graph_objects as go

    higher = higher_is_better(usable)  # lower is better: "better" is below, so the labels go below and left, the padding too
    front = usable[usable["point"].isin(pareto_front(usable, cost, higher=higher))].sort_values(cost)
    off = usable[~usable["point"].isin(front["point"])]
    hover = "%{customdata}<br>" + title + " %{x:,.4g}<br>" + metric + " %{y:.4f}<extra></extra>"
    fig = go.Figure()
    if len(off):
        fig.add_trace(go.Scatter(x=off[cost] / scale, y=off["score_mean"], mode="markers", customdata=off["label"], name="dominated",
                                 marker={"color": "gray"}, error_y={"type": "data", "array": off["score_ci95"].fillna(0).tolist()},
                                 hovertemplate=hover))
    fig.add_trace(go.Scatter(x=front[cost] / scale, y=front["score_mean"], mode="markers", customdata=front["label"], name="Pareto front",
                             marker={"color": "red"}, error_y={"type": "data", "array": front["score_ci95"].fillna(0).tolist()},
                             hovertemplate=hover))
    fig.add_trace(go.Scatter(x=front[cost] / scale, y=front["score_mean"], mode="lines", line={"shape": "hv", "color": "red"},
                             showlegend=False, hoverinfo="skip"))
    for i, (_, p) in enumerate(front.iterrows()):
        fig.add_annotation(x=math.log10(p[cost] / scale), y=p["score_mean"], text=html.escape(str(p["label"])), showarrow=True,
                           arrowhead=0, arrowwidth=1, arrowcolor="#999", ax=-10, ay=LABEL_RISE[i % len(LABEL_RISE)] * (1 if higher else -1),
                           xanchor="right", font={"size": 11}, bgcolor="rgba(255,255,255,0.85)")  # x in log10 units: the axis is logarithmic
    x = [math.log10(v) for v in usable[cost] / scale]
    ci = usable["score_ci95"].fillna(0)
    low, high = float((usable["score_mean"] - ci).min()), float((usable["score_mean"] + ci).max())
    width, height = (max(x) - min(x)) or 1.0, (high - low) or 0.01
    fig.update_layout(title=f"{title} vs {metric}: {model} on {task}",
                      xaxis={"type": "log", "title": f"{title} (log)", "range": [min(x) - 0.22 * width, max(x) + 0.05 * width]},
                      yaxis={"title": metric, "range": [low - (0.05 if higher else 0.25) * height, high + (0.25 if higher else 0.05) * height]}, height=440,
                      margin={"t": 50, "l": 70, "r": 20, "b": 60}, legend={"orientation": "h", "y": -0.22}, hovermode="closest")
    return fig


def figures(points) -> list[dict[str, Any]]:
    """Plotly figures (as plain dicts) per model and task: trainable params vs score with the
    Pareto front, peak memory vs score, and the rank curve when points differ in rank (method.r)."""
    import plotly.graph_objects as go

    out = []
    for (model, task), group in points.groupby(["model", "task"]):
        scored = scored_points(group)
        if scored.empty:
            continue
        metric = str(scored["main_metric"].iloc[0])
        for cost, title, scale in (("trainable", "trainable parameters", 1.0), ("peak_bytes", "peak memory (MiB)", float(MIB))):
            usable = scored[scored[cost].notna() & (scored[cost] > 0)]
            if usable.empty:
                continue
            fig = _pareto_figure(usable, cost, title, scale, metric, model, task)
            out.append({"model": model, "task": task, "figure": json.loads(fig.to_json())})
        ranked = having(scored, "r")
        if len(ranked) and ranked["method.r"].nunique() >= 2:
            fig = go.Figure()
            for series, line in ranked.groupby("series"):
                line = line.sort_values("method.r")
                fig.add_trace(go.Scatter(x=line["method.r"], y=line["score_mean"], mode="lines+markers", name=series,
                                         error_y={"type": "data", "array": line["score_ci95"].fillna(0).tolist()}))
            full = scored[trains_everything(scored)]
            if len(full):
                best = full["score_mean"].max() if higher_is_better(scored) else full["score_mean"].min()  # full fine-tuning's best point
                fig.add_hline(y=float(best), line_dash="dash", annotation_text="full fine-tuning")
            fig.update_layout(title=f"{metric} vs rank r: {model} on {task}", xaxis={"type": "log", "title": "rank r (log 2)",
                              "tickvals": sorted(ranked["method.r"].unique().tolist())}, yaxis={"title": metric}, height=420, margin={"t": 50})
            out.append({"model": model, "task": task, "figure": json.loads(fig.to_json())})
    return out


def _json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, default=_clean).replace("</", "<\\/")


def write(runs, points, drawn: dict[str, list[Path]], path: Path) -> Path:
    from plotly.offline import get_plotlyjs

    headers, rows = table_rows(points)
    options = {key: sorted({r[key] for r in rows}) for key in ("model", "task", "method")}
    selects = "".join(
        f'<label>{key} <select id="f-{key}"><option value="">all</option>'
        + "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values) + "</select></label> "
        for key, values in options.items())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = PAGE.format(plotly=get_plotlyjs(), selects=selects, headers=headers, records=len(runs), points=len(points),
                       stamp=stamp, rows=_json(rows),
                       figures=_json(figures(points) + (sensitivity(runs[runs["role"] == "trial"]) if "role" in runs else [])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>peft-bench dashboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin-top: .8em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
td.text, th {{ text-align: left; }}
td:not(.text) {{ white-space: nowrap; }}
th {{ background: #f2f2f2; cursor: pointer; user-select: none; position: sticky; top: 0; }}
th.asc::after {{ content: " \\25B2"; }} th.desc::after {{ content: " \\25BC"; }}
tr.failed td {{ color: #a33; }}
#filters label {{ margin-right: 1em; }}
.chart {{ display: inline-block; width: 640px; vertical-align: top; margin: .5em; border: 1px solid #eee; }}
</style>
<script>{plotly}</script></head>
<body>
<h1>peft-bench: methods compared</h1>
<p>{records} run records, {points} points (a point is a config over its seeds; score = mean over
successful seeds with a 95% t-interval). Failed and OOM points stay in the table with their reason
and are left out of the charts. Random-weight models show cost only. Generated {stamp}.</p>
<div id="filters">{selects}<label>text <input id="f-text" placeholder="filter rows"></label>
<span id="count"></span></div>
<table id="points"><thead><tr>{headers}</tr></thead><tbody></tbody></table>
<h2>Charts</h2>
<div id="charts"></div>
<script>
const ROWS = {rows};
const FIGURES = {figures};
let sortKey = null, sortDir = 1;
function visible(row) {{
  for (const key of ["model", "task", "method"]) {{
    const want = document.getElementById("f-" + key).value;
    if (want && row[key] !== want) return false;
  }}
  const text = document.getElementById("f-text").value.toLowerCase();
  return !text || row.search.includes(text);
}}
function renderTable() {{
  let rows = ROWS.filter(visible);
  if (sortKey) rows = rows.slice().sort((a, b) => {{
    const x = a.sort[sortKey], y = b.sort[sortKey];
    const blank = v => v === null || v === undefined || v === "";
    if (blank(x)) return blank(y) ? 0 : 1;
    if (blank(y)) return -1;
    return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * sortDir;
  }});
  document.querySelector("#points tbody").innerHTML = rows.map(r => r.html).join("");
  document.getElementById("count").textContent = rows.length + " of " + ROWS.length + " points";
  for (const div of document.querySelectorAll(".chart")) {{
    const m = document.getElementById("f-model").value, t = document.getElementById("f-task").value;
    div.style.display = (!m || div.dataset.model === m.replace(" (random)", "")) && (!t || div.dataset.task === t) ? "" : "none";
  }}
}}
for (const th of document.querySelectorAll("th")) {{
  th.addEventListener("click", () => {{
    sortDir = sortKey === th.dataset.key ? -sortDir : 1;
    sortKey = th.dataset.key;
    for (const other of document.querySelectorAll("th")) other.className = "";
    th.className = sortDir > 0 ? "asc" : "desc";
    renderTable();
  }});
}}
for (const id of ["f-model", "f-task", "f-method", "f-text"]) document.getElementById(id).addEventListener("input", renderTable);
FIGURES.forEach((f, i) => {{
  const div = document.createElement("div");
  div.className = "chart"; div.dataset.model = f.model; div.dataset.task = f.task;
  const inner = document.createElement("div"); inner.id = "chart-" + i;
  div.appendChild(inner); document.getElementById("charts").appendChild(div);
  Plotly.newPlot(inner, f.figure.data, f.figure.layout, {{responsive: true, displaylogo: false}});
}});
renderTable();
</script>
</body></html>
"""
