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

from bench.report import MIB, lr_text, pareto_front, scored as scored_points, status_text

COLUMNS = [  # (key in the row, header, kind)
    ("model", "model", "text"), ("task", "task", "text"), ("label", "method", "text"), ("lr", "lr", "text"),
    ("trainable", "trainable params", "int"), ("percent", "trainable %", "num3"), ("peak_mib", "peak MiB", "int"),
    ("step_time_s", "step s", "num3"), ("tokens_per_s", "tokens/s", "int"), ("score_mean", "score", "num3"),
    ("score_ci95", "± 95% CI", "num3"), ("seeds", "seeds", "int"), ("latency_ms", "latency b1 ms", "num2"),
    ("storage_mib", "storage MiB", "num2"), ("forgetting_delta", "forgetting Δ", "num4"),
    ("tuning_s", "tuning s", "int"), ("tuning_ratio", "tuning / final run", "num2"), ("status", "status", "text"),
]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def table_rows(points) -> list[dict[str, Any]]:
    rows = []
    for _, p in points.iterrows():
        random = bool(p["random_weights"])
        rows.append({
            "model": p["model"] + (" (random)" if random else ""), "task": p["task"], "method": p["method"], "label": p["label"],
            "lr": lr_text(p),
            "trainable": _clean(p["trainable"]), "percent": _clean(p["percent"]),
            "peak_mib": None if _clean(p["peak_bytes"]) is None else p["peak_bytes"] / MIB,
            "step_time_s": _clean(p["step_time_s"]), "tokens_per_s": _clean(p["tokens_per_s"]),
            "score_mean": None if random else _clean(p["score_mean"]), "score_ci95": None if random else _clean(p["score_ci95"]),
            "seeds": _clean(p["seeds"]),
            "latency_ms": None if _clean(p["latency_b1_s"]) is None else p["latency_b1_s"] * 1e3,
            "storage_mib": None if _clean(p["storage_bytes"]) is None else p["storage_bytes"] / MIB,
            "forgetting_delta": _clean(p["forgetting_delta"]),
            "tuning_s": _clean(p["tuning_s"]), "tuning_ratio": _clean(p["tuning_ratio"]),
            "status": status_text(p, 160),
        })
    return rows


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


def figures(points) -> list[dict[str, Any]]:
    """Plotly figures (as plain dicts) per model and task: trainable params vs score with the
    Pareto front, peak memory vs score, and the LoRA rank curve when there are ranks."""
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
            front = usable[usable["point"].isin(pareto_front(usable, cost))].sort_values(cost)
            fig = go.Figure()
            fig.add_trace(go.Scatter(x=usable[cost] / scale, y=usable["score_mean"], mode="markers+text", text=usable["label"],
                                     textposition="top center", name="points",
                                     error_y={"type": "data", "array": usable["score_ci95"].fillna(0).tolist()},
                                     hovertemplate="%{text}<br>" + title + " %{x:,.4g}<br>" + metric + " %{y:.4f}<extra></extra>"))
            fig.add_trace(go.Scatter(x=front[cost] / scale, y=front["score_mean"], mode="lines", line={"shape": "hv", "color": "red"},
                                     name="Pareto front", hoverinfo="skip"))
            fig.update_layout(title=f"{title} vs {metric}: {model} on {task}", xaxis={"type": "log", "title": f"{title} (log)"},
                              yaxis={"title": metric}, height=420, margin={"t": 50})
            out.append({"model": model, "task": task, "figure": json.loads(fig.to_json())})
        lora = scored[(scored["method"] == "lora") & scored["lora_r"].notna()]
        if lora["lora_r"].nunique() >= 2:
            fig = go.Figure()
            for series, line in lora.groupby("series"):
                line = line.sort_values("lora_r")
                fig.add_trace(go.Scatter(x=line["lora_r"], y=line["score_mean"], mode="lines+markers", name=series,
                                         error_y={"type": "data", "array": line["score_ci95"].fillna(0).tolist()}))
            full = scored[scored["method"] == "full"]
            if len(full):
                fig.add_hline(y=float(full["score_mean"].max()), line_dash="dash", annotation_text="full fine-tuning")
            fig.update_layout(title=f"{metric} vs LoRA rank: {model} on {task}", xaxis={"type": "log", "title": "rank r (log 2)",
                              "tickvals": sorted(lora["lora_r"].unique().tolist())}, yaxis={"title": metric}, height=420, margin={"t": 50})
            out.append({"model": model, "task": task, "figure": json.loads(fig.to_json())})
    return out


def _json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, default=_clean).replace("</", "<\\/")


def write(runs, points, drawn: dict[str, list[Path]], path: Path) -> Path:
    from plotly.offline import get_plotlyjs

    rows = table_rows(points)
    options = {key: sorted({r[key] for r in rows}) for key in ("model", "task", "method")}
    selects = "".join(
        f'<label>{key} <select id="f-{key}"><option value="">all</option>'
        + "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values) + "</select></label> "
        for key, values in options.items())
    headers = "".join(f'<th data-key="{key}" data-kind="{kind}">{html.escape(name)}</th>' for key, name, kind in COLUMNS)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = PAGE.format(plotly=get_plotlyjs(), selects=selects, headers=headers, records=len(runs), points=len(points),
                       stamp=stamp, rows=_json(rows), columns=_json(COLUMNS),
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
const COLUMNS = {columns};
const FIGURES = {figures};
let sortKey = null, sortDir = 1;
function fmt(v, kind) {{
  if (v === null || v === undefined) return "";
  if (kind === "int") return Math.round(v).toLocaleString("en-US");
  if (kind.startsWith("num")) return Number(v).toFixed(Number(kind.slice(3)));
  return String(v);
}}
function visible(row) {{
  for (const key of ["model", "task", "method"]) {{
    const want = document.getElementById("f-" + key).value;
    if (want && row[key] !== want) return false;
  }}
  const text = document.getElementById("f-text").value.toLowerCase();
  return !text || JSON.stringify(row).toLowerCase().includes(text);
}}
function renderTable() {{
  let rows = ROWS.filter(visible);
  if (sortKey) rows = rows.slice().sort((a, b) => {{
    const x = a[sortKey], y = b[sortKey];
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * sortDir;
  }});
  const body = document.querySelector("#points tbody");
  body.innerHTML = "";
  for (const row of rows) {{
    const tr = document.createElement("tr");
    if (!row.status.startsWith("success")) tr.className = "failed";
    for (const [key, , kind] of COLUMNS) {{
      const td = document.createElement("td");
      td.textContent = fmt(row[key], kind);
      if (kind === "text") td.className = "text";
      tr.appendChild(td);
    }}
    body.appendChild(tr);
  }}
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
