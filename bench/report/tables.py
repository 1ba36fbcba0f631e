"""The report's tables, from one renderer: a table is a list of Columns (header, the cell's text,
the value it sorts by), and the same columns render as Markdown, CSV and the dashboard's cells.
Two specs use it: one row per record (what a sweep prints) and one row per point (the comparison)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report.frames import CLASSIFICATION_METRICS, CONSTANT, MIB, QUALITY_KEYS, _get, file_stem, higher_is_better, last_rungs, natural_key, trains_everything

FORGETTING = {  # forgetting measure -> its column header (the two measures read a negative number oppositely)
    "lm_loss": "forgetting: LM loss Δ (> 0 forgot)",  # loss on general text, after minus before
    "representation_cosine": "forgetting: repr. cosine Δ (< 0 drifted)",  # cosine(before, after) - 1, always <= 0
}
STATUS_WIDTH = 120  # characters of a failure's reason shown in a point's status


@dataclass(frozen=True)
class Column:
    """One column: its header, its cell's text, and (for the dashboard) the value it sorts by."""

    header: str
    text: Callable[[Any], str]  # row -> the cell as shown
    key: str  # the dashboard's data-key (sorting, tests)
    sort: Callable[[Any], Any] | None = None  # row -> a number to sort by; None: sort by the text
    where: str = "both"  # "tables" (Markdown, CSV), "dashboard", or "both"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _num(x: Any, spec: str, scale: float = 1.0) -> str:
    return "" if _missing(x) else format(x / scale, spec)


def number(header: str, column: str, spec: str, scale: float = 1.0, key: str | None = None, where: str = "both") -> Column:
    """A column that shows row[column] / scale formatted with spec, and sorts by that number."""
    return Column(header, lambda r: _num(r[column], spec, scale), key or column,
                  lambda r: None if _missing(r[column]) else float(r[column]) / scale, where)


def render(columns: list[Column], rows: list[Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and cell texts: what Markdown and CSV write."""
    return [c.header for c in columns], [[c.text(r) for c in columns] for r in rows]


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows])


def write_csv(path: Path, headers: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
    return path


def cells(columns: list[Column], rows: list[Any]) -> list[list[tuple[str, Any]]]:
    """The dashboard's cells: per row, each column's text (the same as Markdown and CSV) and the
    value it sorts by (a number, or the text)."""
    return [[(t := c.text(row), c.sort(row) if c.sort else t) for c in columns] for row in rows]


# ---------------------------------------------------------------- one row per record
def _scores(rec: dict[str, Any]) -> str:
    run, quality = rec["run"], rec.get("quality") or {}
    main = quality.get("main_metric")
    keys = [main] + [k for k in QUALITY_KEYS if k != main]
    scores = ", ".join(f"{k} {quality[k]:.3f}" for k in keys if k in quality)
    if run.get("random_weights") and scores:
        return "(random weights: not a quality result)"  # such runs measure speed and memory only
    if quality.get("majority_baseline") is not None:
        scores += f" (majority-class baseline {quality['majority_baseline']:.3f})"
    return scores


def _record_status(rec: dict[str, Any]) -> str:
    run, quality = rec["run"], rec.get("quality") or {}
    status = run["status"] if run["status"] == "success" else f"{run['status']}: {(run.get('error') or '')[:160]}"
    if quality.get("constant_predictions") and not run.get("random_weights"):
        status += f" ({CONSTANT})"
    return status


def _record_method(rec: dict[str, Any]) -> str:
    run = rec["run"]
    lr = _get(run, "config", "train", "lr")
    tag = {"trial": f" (trial: lr {lr:g}, scored on validation)", "final": f" (tuned lr {lr:g})"}.get(run.get("role", "run"), "") if lr else ""
    return run["method"] + tag


def _params(rec: dict[str, Any]) -> str:
    params = rec.get("params") or {}
    return f"{params['trainable']:,} ({params['percent']:.2f}%)" if params else ""


def _record_number(path: tuple[str, ...], spec: str, scale: float = 1.0) -> Callable[[dict], str]:
    return lambda rec: _num(_get(rec, *path), spec, scale)


RECORD_COLUMNS = [
    Column("model", lambda rec: rec["run"]["model"] + (" (random)" if rec["run"].get("random_weights") else "")
           + (f" ({q} base)" if (q := _get(rec["run"], "config", "model", "quantize")) else ""), "model"),  # a quantized base (model.quantize)
    Column("task", lambda rec: rec["run"]["task"], "task"),
    Column("method", _record_method, "method"),
    Column("seed", lambda rec: str(rec["run"].get("seed")), "seed"),
    Column("status", _record_status, "status"),
    Column("trainable params", _params, "trainable"),
    Column("peak MiB", _record_number(("memory", "peak_bytes"), ",.0f", MIB), "peak_mib"),
    Column("step s", _record_number(("speed", "step_time_median_s"), ".3f"), "step_time_s"),
    Column("tokens/s", _record_number(("speed", "tokens_per_s"), ",.0f"), "tokens_per_s"),
    Column("storage MiB", _record_number(("storage", "bytes"), ",.2f", MIB), "storage_mib"),
    Column("quality (main metric first)", _scores, "quality"),
]


def row_of(rec: dict[str, Any]) -> dict[str, str]:
    """One record as the one-line table shows it: header -> text."""
    return {c.header: c.text(rec) for c in RECORD_COLUMNS}


def markdown_table(records: list[dict[str, Any]]) -> str:
    """One row per record (what a sweep prints at its end, and the report without output_dir)."""
    if not records:
        return "(no records)"
    ordered = sorted(records, key=lambda r: (r["run"]["model"], r["run"]["task"], r["run"]["method"], str(r["run"].get("seed")), r["run"]["started_at"]))
    return markdown(*render(RECORD_COLUMNS, ordered))


# ---------------------------------------------------------------- one row per point
def score_text(row) -> str:
    if row["random_weights"]:
        return "(random weights)"
    if _missing(row["score_mean"]):
        return ""
    ci = row["score_ci95"]
    return f"{row['score_mean']:.3f} ± {ci:.3f}" if not _missing(ci) else f"{row['score_mean']:.3f}"


def lr_text(point) -> str:
    """The learning rate and how it was set: tuned on the validation split, or untuned (as configured)."""
    lr = point["lr"]
    if not lr or lr != lr or point["trainable"] == 0:  # no lr (None, 0, NaN), or nothing trains
        return "–"
    if point["tuned"]:
        sel = point["selection"] or {}
        return f"{point['lr']:.3g} tuned ({sel.get('trials', '?')} trials on {sel.get('validation_examples', '?')} validation rows)"
    return f"{point['lr']:.3g} untuned"


def status_text(point, width: int = STATUS_WIDTH) -> str:
    """A point's status, the last failure's reason, and its flags (constant predictions)."""
    text = point["status"] + (f": {point['reason'][:width]}" if point["reason"] else "")
    return text + (f"; {point['flags']}" if point.get("flags") else "")


def _merge_ratio(p) -> float | None:
    """Latency unmerged over merged (None where the method does not merge: the dashboard sorts it last)."""
    unmerged, merged = p["latency_b1_s"], p["latency_merged_b1_s"]
    return None if _missing(unmerged) or _missing(merged) or not merged or not unmerged else float(unmerged / merged)


def _forgetting_columns(points) -> list[Column]:
    """A forgetting column per measure the points hold, named by its measure: an LM-loss delta
    (decoders; > 0 = forgot) and a representation-cosine delta (classifiers; < 0 = drifted) are
    different figures and never share a column. No measure at all: one empty "forgetting Δ"."""
    measured = points[points["forgetting_delta"].notna()] if "forgetting_delta" in points else points.iloc[:0]
    measures = sorted({m for m in measured["forgetting_measure"] if isinstance(m, str)}, key=lambda m: (m not in FORGETTING, m))
    if measured["forgetting_measure"].isna().any() or not measures:
        measures.append(None)  # records that do not name their measure (or none at all)

    def column(measure: str | None) -> Column:
        mine = (lambda r: r["forgetting_measure"] == measure) if measure else (lambda r: not isinstance(r["forgetting_measure"], str))
        header = FORGETTING.get(measure, f"forgetting Δ ({measure})") if measure else "forgetting Δ"
        return Column(header, lambda r: _num(r["forgetting_delta"], ".4f") if mine(r) else "", f"forgetting_{measure or 'delta'}",
                      lambda r: None if _missing(r["forgetting_delta"]) or not mine(r) else float(r["forgetting_delta"]))
    return [column(m) for m in measures]


def metrics_of(points) -> list[str]:
    """Every quality metric the points hold: the main metrics first (in the points' order), then
    the others the records scored (accuracy, F1, MCC; ROUGE-1/2/L/Lsum), in QUALITY_KEYS' order."""
    mains = list(dict.fromkeys(str(m) for m in points["main_metric"].dropna()))
    held = [k for k in QUALITY_KEYS if f"q_{k}" in points and points[f"q_{k}"].notna().any()]
    return mains + [k for k in held if k not in mains]


def metric_value(point, metric: str) -> float | None:
    """A point's mean score on `metric` (None: not scored, or random weights: cost only)."""
    value = point["score_mean"] if point["main_metric"] == metric else point.get(f"q_{metric}")
    return None if point["random_weights"] or _missing(value) else float(value)


def metric_text(point, metric: str) -> str:
    """The cell: the main metric as mean ± 95% CI (score_text), another metric as its mean."""
    if point["main_metric"] == metric:
        return score_text(point)
    return "" if point["random_weights"] else _num(metric_value(point, metric), ".3f")


def metric_columns(points) -> list[Column]:
    """A column per metric, named by it: a main metric's cells carry the interval over seeds."""
    def column(metric: str) -> Column:
        main_here = set(points.loc[points["main_metric"] == metric, "point"])
        scored_here = {p["point"] for _, p in points.iterrows() if metric_value(p, metric) is not None} | main_here
        spread = "" if not main_here else " ± 95% CI" if scored_here <= main_here else "; ± 95% CI where it is the main metric"
        header = f"{metric} (mean{spread})"
        return Column(header, lambda p: metric_text(p, metric), f"q_{metric}", lambda p: metric_value(p, metric))
    return [column(m) for m in metrics_of(points)]


def point_columns(points, where: str) -> list[Column]:
    """The comparison's columns for `where` ("tables": one model and task per table; "dashboard":
    every point in one table, with its model and task)."""
    columns = [
        Column("model", lambda p: p["model"] + (" (random)" if p["random_weights"] else ""), "model", where="dashboard"),
        Column("task", lambda p: p["task"], "task", where="dashboard"),
        Column("method", lambda p: p["label"], "label"),
        Column("lr", lr_text, "lr", lambda p: None if _missing(p["lr"]) or lr_text(p) == "–" else float(p["lr"])),
        number("trainable params", "trainable", ",.0f"),
        number("trainable %", "percent", ".3f"),
        number("peak MiB", "peak_bytes", ",.0f", MIB, key="peak_mib"),
        number("weights MiB", "weights_bytes", ",.0f", MIB, key="weights_mib"),
        number("grads MiB", "gradients_bytes", ",.1f", MIB, key="gradients_mib"),
        number("optimizer MiB", "optimizer_state_bytes", ",.1f", MIB, key="optimizer_mib"),
        number("activations MiB", "activations_and_other_bytes", ",.0f", MIB, key="activations_mib"),
        number("step s", "step_time_s", ".3f"),
        number("tokens/s", "tokens_per_s", ",.0f"),
        *metric_columns(points),
        Column("seeds", lambda p: str(p["seeds"]), "seeds", lambda p: int(p["seeds"])),
        number("latency b1 ms", "latency_b1_s", ".2f", 1e-3, key="latency_ms"),
        Column("unmerged / merged", lambda p: _num(_merge_ratio(p), ".2f"), "merge_ratio", _merge_ratio),
        number("storage MiB", "storage_bytes", ",.2f", MIB, key="storage_mib"),
        *_forgetting_columns(points),
        number("tuning s", "tuning_s", ",.0f", where="dashboard"),
        number("tuning / final run", "tuning_ratio", ".2f", where="dashboard"),
        Column("status", status_text, "status"),
    ]
    return [c for c in columns if c.where in ("both", where)]


def table_rows(points) -> tuple[list[str], list[list[str]]]:
    """The comparison table for one model and task: a row per point, cheapest first within a method."""
    ordered = points.sort_values(["method", "trainable"], na_position="last")
    return render(point_columns(points, "tables"), [p for _, p in ordered.iterrows()])


def baseline_line(points) -> str | None:
    """The line under a classification table: the majority-class share of the eval split its
    rows were scored on, what a run that learned only the class prior scores (None: not a
    classification table). Records written before runs kept the baseline say so."""
    if not ((points["kind"] == "classification").any() or points["main_metric"].isin(CLASSIFICATION_METRICS).any()) \
            or points["random_weights"].astype(bool).all():  # a random-weight table reports cost only
        return None
    known = points[points["majority_baseline"].notna()]
    if known.empty:
        return "Majority-class baseline of the eval split: not in these records (written before runs recorded it)."
    shares = sorted({(round(float(b), 3), int(n)) for b, n in zip(known["majority_baseline"], known["baseline_examples"])})
    text = ", ".join(f"{b:.3f} ({n:,} examples)" for b, n in shares)
    return (f"Majority-class baseline of the eval split: accuracy {text}, what always predicting the most frequent label scores; "
            "a row near it with MCC near 0 learned the class prior only.")


def tuning_rows(points, trials) -> tuple[list[str], list[list[str]]]:
    """The tuning table for one model and task: per tuned point, every learning rate tried with its
    validation score, the chosen one and its ratio to full fine-tuning's (the tuned point that
    trains every parameter), and what tuning cost against one final run (the goal: at most about 2x)."""
    tuned = points[points["tuned"].astype(bool)]
    full = tuned[trains_everything(tuned)]
    full_lr = float(full["lr"].iloc[0]) if len(full) else None
    chosen_by = {str(s["metric"]) for s in tuned["selection"] if isinstance(s, dict) and s.get("metric")}  # what the trials were scored by
    if not chosen_by and tuned["main_metric"].notna().any():
        chosen_by = {str(tuned["main_metric"].dropna().iloc[0])}  # records whose selection names no metric
    metric = chosen_by.pop() if len(chosen_by) == 1 else "score"  # points scored different ways: no one name
    headers = ["method", f"validation {metric} by lr (p = pruned, or outranked at a lower rung of successive halving, at its last score; f = failed; c = every trial predicted one class, "
               "ranked last; r = random weights, cost only)", "chosen lr", "validation SE", "x full's lr",
               "trials (pruned, failed)", "trial steps", "tuning s", "final run s", "tuning / final run"]
    rows = []
    for _, p in tuned.sort_values(["method", "trainable"], na_position="last").iterrows():
        sel = p["selection"] or {}
        mine = trials[trials["study"] == p["study"]] if len(trials) else trials
        cells = []
        for lr, group in sorted(mine.groupby("lr"), key=lambda kv: kv[0]) if len(mine) else []:
            done = group[group["status"] == "success"]
            ok = done["score"].dropna()
            if len(ok):
                stuck = "c" if done["constant_predictions"].eq(True).all() else ""
                cells.append(f"{lr:.3g}: {ok.mean():.3f}{stuck}")
            elif len(done) and done["random_weights"].astype(bool).all():
                cells.append(f"{lr:.3g}: r")
            elif (group["status"] == "pruned").any():
                cells.append(f"{lr:.3g}: {group['score'].dropna().mean():.3f}p" if group["score"].notna().any() else f"{lr:.3g}: p")
            else:
                cells.append(f"{lr:.3g}: f")
        lrs = sel.get("lrs") or []
        edge = " (grid's edge: widen tune.lr_span)" if lrs and p["lr"] in (min(lrs), max(lrs)) else ""
        halving = " (halving)" if sel.get("pruner") == "halving" else ""
        rows.append([p["label"], ", ".join(cells), _num(p["lr"], ".3g") + edge, _num(sel.get("validation_se"), ".4f"),
                     _num(p["lr"] / full_lr if full_lr else None, ".1f"),
                     f"{sel.get('trials', '')} ({sel.get('pruned', 0)}, {sel.get('failed', 0)})", str(sel.get("trial_steps", "")) + halving,
                     _num(p["tuning_s"], ",.0f"), _num(p["run_s"], ",.0f"), _num(p["tuning_ratio"], ".2f")])
    return headers, rows


def cost_line(points) -> str:
    """The median of the tuned points' tuning cost in final runs (the goal: at most 2), and the
    validation noise: the chosen scores' median standard error on the validation split."""
    import statistics

    ratios = [float(r) for r in points["tuning_ratio"].dropna()] if "tuning_ratio" in points else []
    ses = [float(s["validation_se"]) for s in points["selection"] if isinstance(s, dict) and s.get("validation_se") is not None]
    parts = []
    if ratios:
        parts.append(f"Tuning cost: median {statistics.median(ratios):.2f} final runs per point (range {min(ratios):.2f} to {max(ratios):.2f}; the goal is at most 2).")
    if ses:
        parts.append(f"Validation noise: the chosen scores' standard error is {statistics.median(ses):.4f} (median); "
                     f"rates closer than about twice that are not told apart by this validation split.")
    return (" ".join(parts) + "\n") if parts else ""


def duration_line(runs) -> str:
    """How long the runs took: the sum of their own times, and the wall clock from the first start
    to the last finish (shorter than the sum when points ran in parallel)."""
    import pandas as pd

    start = pd.to_datetime(runs["started_at"], utc=True, format="ISO8601", errors="coerce")
    end = pd.to_datetime(runs["finished_at"], utc=True, format="ISO8601", errors="coerce")
    ok = start.notna() & end.notna()
    if not ok.any():
        return f"{len(runs)} runs."
    summed = (end[ok] - start[ok]).dt.total_seconds().sum() / 60
    wall = (end[ok].max() - start[ok].min()).total_seconds() / 60
    return f"{len(runs)} runs: {summed:,.1f} min of run time, {wall:,.1f} min of wall clock from the first start to the last finish."


def write_runs_csv(runs, folder: Path) -> Path:
    """Every run (trials included, by `role`) as CSV; the curves stay in the records and the plots."""
    folder.mkdir(parents=True, exist_ok=True)
    runs.drop(columns=["loss_curve", "eval_curve"]).to_csv(folder / "runs.csv", index=False)
    return folder / "runs.csv"


def write_tables(runs, points, out: Path) -> list[Path]:
    """Per model and task: the comparison table (.md, .csv), and the tuning table when points were
    tuned; then every point and every run (trials included, by `role`) as CSV."""
    folder = out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (model, task), group in points.groupby(["model", "task"]):
        headers, rows = table_rows(group)
        stem = folder / file_stem(model, task)
        title = f"## {model} on {task}" + (" (random weights: cost only)" if group["random_weights"].all() else "")
        these = runs[(runs["model"] == model) & (runs["task"] == task)]
        baseline = baseline_line(group)
        text = f"{title}\n\n{markdown(headers, rows)}\n\n" + (f"{baseline}\n\n" if baseline else "") \
            + f"{duration_line(these[these['role'] != 'trial'])}\n"
        if group["tuned"].astype(bool).any():
            tuning_headers, tuning = tuning_rows(group, last_rungs(these[these["role"] == "trial"]))
            tuning_path = folder / f"{file_stem(model, task)}__tuning.md"
            tuning_path.write_text(f"## Learning-rate tuning: {model} on {task}\n\n{markdown(tuning_headers, tuning)}\n\n"
                                   f"Trials: {duration_line(these[these['role'] == 'trial'])}\n{cost_line(group)}")
            written.append(tuning_path)
            text += f"\nLearning rates: each tuned row's was chosen on a validation split carved from the training data (see {tuning_path.name}); untuned rows ran at the lr as configured.\n"
        stem.with_suffix(".md").write_text(text)
        write_csv(stem.with_suffix(".csv"), headers, rows)
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    for task, group in points.groupby("task"):
        text = scale_table(group)
        if text:
            path = folder / f"{file_stem('all-models', task)}__scale.md"
            path.write_text(text)
            written.append(path)
    points.to_csv(folder / "points.csv", index=False)
    return written + [folder / "points.csv", write_runs_csv(runs, folder)]


def scale_table(points) -> str | None:
    """Across model sizes on one task: per model (smallest first), full fine-tuning's score and each
    other method configuration's, with its gap to full (full minus it; a tuned method against
    tuned full fine-tuning, an untuned one against untuned, where both exist): the prompt tuning
    paper's claim is that this gap shrinks as the model grows. A configuration is named by its scale
    label (the knobs that vary on the task across all models), so it is one column at every size.
    None with fewer than two pretrained sizes."""
    ok = points[(points["seeds"] > 0) & points["score_mean"].notna() & ~points["random_weights"].astype(bool) & points["model_size"].notna()]
    if ok["model"].nunique() < 2 or not trains_everything(ok).any():
        return None
    full_labels = sorted(set(ok.loc[trains_everything(ok), "scale_label"]), key=natural_key)
    labels = sorted(set(ok.loc[~trains_everything(ok), "scale_label"]), key=natural_key)
    metric = str(ok["main_metric"].dropna().iloc[0])
    higher = higher_is_better(ok)  # the gap is how far the method falls short of full: > 0 = worse, in either direction

    def cell(row) -> str:
        ci = row["score_ci95"]
        return f"{row['score_mean']:.3f}" + (f" ± {ci:.3f}" if ci is not None and ci == ci else "") + f" ({int(row['seeds'])})"

    method_of = dict(zip(ok["scale_label"], ok["method"]))  # a label starts with its method's name; the rest are its knobs
    headers = ["model", "family", "params", *["full fine-tuning" + label.removeprefix(method_of[label]) for label in full_labels],
               *[f"{label} (gap)" for label in labels]]
    rows = []
    for model, group in sorted(ok.groupby("model"), key=lambda kv: kv[1]["model_size"].iloc[0]):
        full = group[trains_everything(group)]
        row = [model, str(group["family"].iloc[0] or ""), f"{group['model_size'].iloc[0] / 1e6:,.1f}M"]
        row += [cell(full[full["scale_label"] == label].iloc[0]) if (full["scale_label"] == label).any() else "" for label in full_labels]
        for label in labels:
            mine = group[group["scale_label"] == label].sort_values("seeds", ascending=False)
            if mine.empty:
                row.append("")
                continue
            same = full[full["tuned"].astype(bool) == bool(mine["tuned"].iloc[0])]
            against = (same if len(same) else full).sort_values("seeds", ascending=False)
            short = float(against["score_mean"].iloc[0]) - float(mine["score_mean"].iloc[0]) if len(against) else None
            gap = f" ({(short if higher else -short):+.3f})" if short is not None else ""
            row.append(cell(mine.iloc[0]) + gap)
        rows.append(row)
    return (f"## Across model sizes on {ok['task'].iloc[0]}: {metric} (mean ± 95% CI (seeds)), and the gap to full fine-tuning\n\n"
            f"{markdown(headers, rows)}\n\nGap = " + ("full fine-tuning's mean minus the method's" if higher else
                                                   f"the method's mean minus full fine-tuning's ({metric}: lower is better)")
            + " (tuned against tuned, untuned against untuned): the prompt tuning paper's claim is that it "
            "shrinks as models grow. Sizes are the models' parameter counts with their task head.\n")
