"""The report: run records in, tables, plots and a dashboard out (the records are the only input).

    python -m bench.report results_dir=DIR[,DIR...] [output_dir=DIR] [sweep=PATH] [wandb=true]
    peft-bench report ...   (the same)

Without output_dir it prints the table of every record. With it, it writes
  tables/<model>__<task>.md and .csv   one row per point (a config over its seeds)
  tables/points.csv, tables/runs.csv   every point and every run, all models and tasks
  plots/<model>__<task>__<figure>.png and .svg
  dashboard.html                       one self-contained page (works offline)
and with wandb=true logs the table and plots to a W&B report run in the sweep's group.

A point is a config without its seed: its score is the mean over its successful seeds with a 95%
t-interval. Failed and OOM runs are rows with their reason and never enter fronts or curves.
Random-weight models are reported for cost only: their quality is left blank. A classification
run that predicted one label for every example is flagged (it learned the class prior at best),
and every classification table ends with the majority-class baseline of its eval split.
A file under results_dir that is not a readable record is skipped with one line on stderr."""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.record import config_digest, load_records, run_seconds

MIB = 2**20
QUALITY_KEYS = ("accuracy", "f1", "mcc", "rouge1", "rouge2", "rougeL", "rougeLsum")
CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc")
CONSTANT = "constant predictions: one label for every example"
BREAKDOWN = ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_and_other_bytes")
ADDS_NOTHING = ("none", "full", "bitfit", "last_layers", "layernorm", "selective")  # total params = the base model's


# ---------------------------------------------------------------- the one-line-per-record table
def _fmt_bytes(n: float | None) -> str:
    return "" if n is None else f"{n / MIB:,.0f}"


def _fmt(x: Any, spec: str) -> str:
    return "" if x is None else format(x, spec)


def row_of(rec: dict[str, Any]) -> dict[str, str]:
    run, params, quality = rec["run"], rec.get("params") or {}, rec.get("quality") or {}
    speed, memory, storage = rec.get("speed") or {}, rec.get("memory") or {}, rec.get("storage") or {}
    main = quality.get("main_metric")
    keys = [main] + [k for k in QUALITY_KEYS if k != main]
    scores = ", ".join(f"{k} {quality[k]:.3f}" for k in keys if k in quality)
    if run.get("random_weights") and scores:
        scores = "(random weights: not a quality result)"  # such runs measure speed and memory only
    elif quality.get("majority_baseline") is not None:
        scores += f" (majority-class baseline {quality['majority_baseline']:.3f})"
    status = run["status"] if run["status"] == "success" else f"{run['status']}: {(run.get('error') or '')[:160]}"
    if quality.get("constant_predictions") and not run.get("random_weights"):
        status += f" ({CONSTANT})"
    lr = _get(run, "config", "train", "lr")
    tag = {"trial": f" (trial: lr {lr:g}, scored on validation)", "final": f" (tuned lr {lr:g})"}.get(run.get("role", "run"), "") if lr else ""
    return {
        "model": run["model"] + (" (random)" if run.get("random_weights") else ""),
        "task": run["task"],
        "method": run["method"] + tag,
        "seed": str(run.get("seed")),
        "status": status,
        "trainable params": f"{params['trainable']:,} ({params['percent']:.2f}%)" if params else "",
        "peak MiB": _fmt_bytes(memory.get("peak_bytes")),
        "step s": _fmt(speed.get("step_time_median_s"), ".3f"),
        "tokens/s": _fmt(speed.get("tokens_per_s"), ",.0f"),
        "storage MiB": _fmt(storage.get("bytes") / MIB if storage.get("bytes") is not None else None, ",.2f"),
        "quality (main metric first)": scores,
    }


def markdown_table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "(no records)"
    rows = [row_of(r) for r in sorted(records, key=lambda r: (r["run"]["model"], r["run"]["task"], r["run"]["method"], str(r["run"].get("seed")), r["run"]["started_at"]))]
    return _markdown(list(rows[0].keys()), [[r.get(h, "") for h in rows[0]] for r in rows])


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows])


# ---------------------------------------------------------------- records -> runs -> points
def point_key(config: dict[str, Any]) -> str:
    """A point is a config without its seed (and without where-it-goes keys)."""
    return config_digest(config, leave_out=("seed",))[:12]


def _get(d: dict | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _targets(value: Any) -> str | None:
    if value is None:
        return "default (q,v)"
    return value if isinstance(value, str) else ",".join(map(str, value))


def runs_frame(records: list[dict[str, Any]]):
    """One row per record, the figures the report uses as flat columns."""
    import pandas as pd

    rows = []
    for rec in records:
        run, quality = rec["run"], rec.get("quality") or {}
        cfg = run.get("config") or {}
        method_cfg = cfg.get("method") or {}
        main = quality.get("main_metric")
        inference = rec.get("inference") or {}
        b1 = lambda variant: _get(inference, variant, "batch_1", "latency_per_example_s")  # noqa: E731
        row = {
            "id": run["id"], "sweep": run.get("sweep"), "model": run["model"], "task": run["task"], "method": run["method"],
            "seed": run.get("seed"), "status": run["status"], "error": run.get("error"), "random_weights": bool(run.get("random_weights")),
            "point": point_key(cfg), "started_at": run.get("started_at"), "finished_at": run.get("finished_at"),
            "lora_r": method_cfg.get("r") if run["method"] == "lora" else None,
            "target_modules": _targets(method_cfg.get("target_modules")) if run["method"] in ("lora", "ia3") else None,
            "num_virtual_tokens": method_cfg.get("num_virtual_tokens"),
            "num_layers": method_cfg.get("num_layers"),
            "lr": _get(cfg, "train", "lr"), "max_steps": _get(cfg, "train", "max_steps"),
            "role": run.get("role", "run"), "study": run.get("study"), "tuned": bool(rec.get("selection")),
            "lr_setting": "tuned" if rec.get("selection") else _get(cfg, "train", "lr"),  # a knob when set by hand, an outcome when tuned
            "selection": rec.get("selection"), "run_s": run_seconds(run),
            "trainable": _get(rec, "params", "trainable"), "total": _get(rec, "params", "total"), "percent": _get(rec, "params", "percent"),
            "peak_bytes": _get(rec, "memory", "peak_bytes"),
            **{k: _get(rec, "memory", "breakdown", k) for k in BREAKDOWN},
            "step_time_s": _get(rec, "speed", "step_time_median_s"), "tokens_per_s": _get(rec, "speed", "tokens_per_s"),
            "main_metric": main, "score": None if run.get("random_weights") or main is None else quality.get(main),
            "kind": _get(cfg, "task", "kind") or ("classification" if main in CLASSIFICATION_METRICS else None),
            "majority_baseline": quality.get("majority_baseline"), "constant_predictions": quality.get("constant_predictions"),
            "num_examples": quality.get("num_examples"),
            **{f"q_{k}": (None if run.get("random_weights") else quality.get(k)) for k in QUALITY_KEYS},
            "latency_b1_s": b1("model"), "latency_base_b1_s": b1("base"), "latency_merged_b1_s": b1("merged"),
            "extra_input_tokens": inference.get("extra_input_tokens"),
            "storage_bytes": _get(rec, "storage", "bytes"),
            "forgetting_measure": _get(rec, "forgetting", "measure"), "forgetting_delta": _get(rec, "forgetting", "delta"),
            "loss_curve": [(p["step"], p["loss"]) for p in rec.get("curve") or []],
            "eval_curve": _eval_curve(rec),
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column, leave_out in (("label", ()), ("series", ("lora_r", "num_virtual_tokens")),  # a curve joins points that differ only on its axis
                              ("method_label", ("lr_setting", "max_steps"))):  # a tuning trial's line: its point without the lr
        frame[column] = ""
        for is_trial in (True, False):  # trials vary the lr and are labelled among themselves
            mask = (frame["role"] == "trial") == is_trial
            if mask.any():
                frame.loc[mask, column] = _labels(frame[mask], leave_out)
    return frame


def _eval_curve(rec: dict[str, Any]) -> list[tuple[int, float]]:
    """(step, main metric) at each periodic evaluation, then the final score at the last step."""
    quality, run = rec.get("quality") or {}, rec["run"]
    main = quality.get("main_metric")
    if run.get("random_weights") or main is None or run["status"] != "success":
        return []
    curve = rec.get("curve") or []
    points = [(p["step"], p["eval"][main]) for p in curve if main in (p.get("eval") or {})]
    return points + ([(curve[-1]["step"], quality[main])] if curve and main in quality else [])


def _labels(frame, leave_out: tuple[str, ...] = ()) -> list[str]:
    """Method name plus the knobs that vary among that method's runs on one model and task."""
    knobs = tuple(k for k in ("lora_r", "target_modules", "num_virtual_tokens", "num_layers", "lr_setting", "max_steps") if k not in leave_out)
    short = {"lora_r": "r", "target_modules": "", "num_virtual_tokens": "P", "num_layers": "top", "lr_setting": "lr", "max_steps": "steps"}
    varying: dict[tuple, list[str]] = {}
    for key, group in frame.groupby(["model", "task", "method"], dropna=False):
        varying[key] = [k for k in knobs if group[k].astype(str).nunique() > 1]
    labels = []
    for _, row in frame.iterrows():
        parts = [row["method"]]
        for knob in varying[(row["model"], row["task"], row["method"])]:
            value = row[knob]
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # pandas stores an integer column with gaps as floats
            parts.append(f"{short[knob]}={value}" if short[knob] else str(value))
        labels.append(" ".join(parts))
    return labels


def t_quantile_975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def points_frame(runs):
    """One row per point: seeds counted, the score's mean and 95% t-interval half-width over
    successful seeds, cost figures averaged over them; a point with no success keeps its reason."""
    import pandas as pd

    out = []
    for key, group in runs.groupby("point", sort=False):
        ok = group[group["status"] == "success"]
        first = group.iloc[0]
        row: dict[str, Any] = {c: first[c] for c in ("point", "model", "task", "method", "label", "series", "lora_r", "target_modules",
                                                      "num_virtual_tokens", "num_layers", "random_weights", "main_metric", "kind")}
        row["runs"] = len(group)
        row["seeds"] = int(ok["seed"].nunique())
        row["tuned"], row["lr"], row["selection"], row["study"] = bool(first["tuned"]), first["lr"], first["selection"], first["study"]
        row["run_s"] = float(ok["run_s"].dropna().mean()) if ok["run_s"].notna().any() else None
        row["tuning_s"] = (first["selection"] or {}).get("cost_s") if first["tuned"] else None  # the trials' run time
        row["tuning_ratio"] = row["tuning_s"] / row["run_s"] if row["tuning_s"] is not None and row["run_s"] else None
        scores = ok["score"].dropna().astype(float)
        row["score_mean"] = float(scores.mean()) if len(scores) else None
        row["score_std"] = float(scores.std(ddof=1)) if len(scores) > 1 else None
        row["score_ci95"] = t_quantile_975(len(scores) - 1) * row["score_std"] / math.sqrt(len(scores)) if len(scores) > 1 else None
        for col in ("trainable", "total", "percent", "peak_bytes", *BREAKDOWN, "step_time_s", "tokens_per_s", "latency_b1_s",
                    "latency_base_b1_s", "latency_merged_b1_s", "extra_input_tokens", "storage_bytes", "forgetting_delta",
                    *(f"q_{k}" for k in QUALITY_KEYS)):
            values = ok[col].dropna().astype(float)
            row[col] = float(values.mean()) if len(values) else None
        row["forgetting_measure"] = ok["forgetting_measure"].dropna().iloc[0] if ok["forgetting_measure"].notna().any() else None
        baselines = ok[["majority_baseline", "num_examples"]].dropna()
        row["majority_baseline"] = float(baselines["majority_baseline"].iloc[0]) if len(baselines) else None
        row["baseline_examples"] = int(baselines["num_examples"].iloc[0]) if len(baselines) else None
        constant = int(ok["constant_predictions"].eq(True).sum())
        row["flags"] = f"{CONSTANT} ({constant}/{len(ok)} seeds)" if constant and not first["random_weights"] else ""
        if len(ok) == len(group):
            row["status"], row["reason"] = "success", ""
        else:
            bad = group[group["status"] != "success"].sort_values("started_at").iloc[-1]
            row["status"] = f"{len(ok)}/{len(group)} success" if len(ok) else str(bad["status"])
            row["reason"] = str(bad["error"] or "")
        out.append(row)
    points = pd.DataFrame(out)
    sizes = model_sizes(runs)
    points["model_size"] = points["model"].map(sizes)
    return points


def model_sizes(runs) -> dict[str, float]:
    """Each model's parameter count: the total of a run whose method adds no parameters (the
    task head aside), else the smallest total seen."""
    sizes = {}
    for model, group in runs[runs["total"].notna()].groupby("model"):
        plain = group[group["method"].isin(ADDS_NOTHING)]
        sizes[model] = float((plain if len(plain) else group)["total"].min())
    return sizes


def scored(points):
    """The points with a score to plot: at least one successful seed, pretrained weights."""
    return points[(points["seeds"] > 0) & points["score_mean"].notna() & ~points["random_weights"].astype(bool)]


def pareto_front(points, cost: str, score: str = "score_mean") -> list[str]:
    """Point keys on the front: no other point costs less or the same and scores at least as well
    (one of them strictly). Walks the points from cheapest, keeping each that beats every cheaper one."""
    usable = points[(points["seeds"] > 0) & points[cost].notna() & points[score].notna()]
    usable = usable.sort_values([cost, score], ascending=[True, False])
    front, best = [], -math.inf
    for _, row in usable.iterrows():
        if row[score] > best:
            front.append(row["point"])
            best = row[score]
    return front


# ---------------------------------------------------------------- tables
def _score_text(row) -> str:
    if row["random_weights"]:
        return "(random weights)"
    if row["score_mean"] is None or (isinstance(row["score_mean"], float) and math.isnan(row["score_mean"])):
        return ""
    ci = row["score_ci95"]
    return f"{row['score_mean']:.3f} ± {ci:.3f}" if ci is not None and not math.isnan(ci) else f"{row['score_mean']:.3f}"


def _num(x: Any, spec: str, scale: float = 1.0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return format(x / scale, spec)


def lr_text(point) -> str:
    """The learning rate and how it was set: tuned on the validation split, or untuned (as configured)."""
    lr = point["lr"]
    if point["method"] == "none" or not lr or lr != lr:  # nothing trains, or no lr (None, 0, NaN)
        return "–"
    if point["tuned"]:
        sel = point["selection"] or {}
        return f"{point['lr']:.3g} tuned ({sel.get('trials', '?')} trials on {sel.get('validation_examples', '?')} validation rows)"
    return f"{point['lr']:.3g} untuned"


def status_text(point, width: int) -> str:
    """A point's status, the last failure's reason, and its flags (constant predictions)."""
    text = point["status"] + (f": {point['reason'][:width]}" if point["reason"] else "")
    return text + (f"; {point['flags']}" if point.get("flags") else "")


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


def table_rows(points) -> tuple[list[str], list[list[str]]]:
    """The comparison table for one model and task: a row per point, cheapest first within a method."""
    metric = points["main_metric"].dropna().iloc[0] if points["main_metric"].notna().any() else "score"
    headers = ["method", "lr", "trainable params", "trainable %", "peak MiB", "weights MiB", "grads MiB", "optimizer MiB",
               "activations MiB", "step s", "tokens/s", f"{metric} (mean ± 95% CI)", "seeds", "latency b1 ms",
               "unmerged / merged", "storage MiB", "forgetting Δ", "status"]
    rows = []
    for _, p in points.sort_values(["method", "trainable"], na_position="last").iterrows():
        ratio = p["latency_b1_s"] / p["latency_merged_b1_s"] if p["latency_merged_b1_s"] and p["latency_b1_s"] else None
        rows.append([p["label"], lr_text(p), _num(p["trainable"], ",.0f"), _num(p["percent"], ".3f"), _num(p["peak_bytes"], ",.0f", MIB),
                     _num(p["weights_bytes"], ",.0f", MIB), _num(p["gradients_bytes"], ",.1f", MIB),
                     _num(p["optimizer_state_bytes"], ",.1f", MIB), _num(p["activations_and_other_bytes"], ",.0f", MIB),
                     _num(p["step_time_s"], ".3f"), _num(p["tokens_per_s"], ",.0f"), _score_text(p), str(p["seeds"]),
                     _num(p["latency_b1_s"], ".2f", 1e-3), _num(ratio, ".2f"), _num(p["storage_bytes"], ",.2f", MIB),
                     _num(p["forgetting_delta"], ".4f"), status_text(p, 120)])
    return headers, rows


def tuning_rows(points, trials) -> tuple[list[str], list[list[str]]]:
    """The tuning table for one model and task: per tuned point, every learning rate tried with its
    validation score, the chosen one and its ratio to full fine-tuning's, and what tuning cost
    against one final run (the goal: at most about 2x)."""
    tuned = points[points["tuned"].astype(bool)]
    full = tuned[tuned["method"] == "full"]
    full_lr = float(full["lr"].iloc[0]) if len(full) else None
    metric = tuned["main_metric"].dropna().iloc[0] if tuned["main_metric"].notna().any() else "score"
    headers = ["method", f"validation {metric} by lr (p = pruned, at its last score; f = failed)", "chosen lr", "x full's lr",
               "trials (pruned, failed)", "trial steps", "tuning s", "final run s", "tuning / final run"]
    rows = []
    for _, p in tuned.sort_values(["method", "trainable"], na_position="last").iterrows():
        sel = p["selection"] or {}
        mine = trials[trials["study"] == p["study"]] if len(trials) else trials
        cells = []
        for lr, group in sorted(mine.groupby("lr"), key=lambda kv: kv[0]) if len(mine) else []:
            ok = group[group["status"] == "success"]["score"].dropna()
            if len(ok):
                cells.append(f"{lr:.3g}: {ok.mean():.3f}")
            elif (group["status"] == "pruned").any():
                cells.append(f"{lr:.3g}: {group['score'].dropna().mean():.3f}p" if group["score"].notna().any() else f"{lr:.3g}: p")
            else:
                cells.append(f"{lr:.3g}: f")
        lrs = sel.get("lrs") or []
        edge = " (grid's edge: widen tune.lr_span)" if lrs and p["lr"] in (min(lrs), max(lrs)) else ""
        rows.append([p["label"], ", ".join(cells), _num(p["lr"], ".3g") + edge, _num(p["lr"] / full_lr if full_lr else None, ".1f"),
                     f"{sel.get('trials', '')} ({sel.get('pruned', 0)}, {sel.get('failed', 0)})", str(sel.get("trial_steps", "")),
                     _num(p["tuning_s"], ",.0f"), _num(p["run_s"], ",.0f"), _num(p["tuning_ratio"], ".2f")])
    return headers, rows


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


def write_tables(runs, points, out: Path) -> list[Path]:
    """Per model and task: the comparison table (.md, .csv), and the tuning table when points were
    tuned; then every point and every run (trials included, by `role`) as CSV."""
    import csv

    folder = out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (model, task), group in points.groupby(["model", "task"]):
        headers, rows = table_rows(group)
        stem = folder / f"{model}__{task}"
        title = f"## {model} on {task}" + (" (random weights: cost only)" if group["random_weights"].all() else "")
        these = runs[(runs["model"] == model) & (runs["task"] == task)]
        baseline = baseline_line(group)
        text = f"{title}\n\n{_markdown(headers, rows)}\n\n" + (f"{baseline}\n\n" if baseline else "") \
            + f"{duration_line(these[these['role'] != 'trial'])}\n"
        if group["tuned"].astype(bool).any():
            tuning_headers, tuning = tuning_rows(group, these[these["role"] == "trial"])
            tuning_path = folder / f"{model}__{task}__tuning.md"
            tuning_path.write_text(f"## Learning-rate tuning: {model} on {task}\n\n{_markdown(tuning_headers, tuning)}\n\n"
                                   f"Trials: {duration_line(these[these['role'] == 'trial'])}\n")
            written.append(tuning_path)
            text += f"\nLearning rates: each tuned row's was chosen on a validation split carved from the training data (see {tuning_path.name}); untuned rows ran at the lr as configured.\n"
        stem.with_suffix(".md").write_text(text)
        with open(stem.with_suffix(".csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(headers)
            writer.writerows(rows)
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    points.to_csv(folder / "points.csv", index=False)
    runs.drop(columns=["loss_curve", "eval_curve"]).to_csv(folder / "runs.csv", index=False)  # curves: in the records and the plots
    return written + [folder / "points.csv", folder / "runs.csv"]


# ---------------------------------------------------------------- the command
def parse_args(argv: list[str]) -> dict[str, str]:
    args = {}
    for arg in argv:
        if "=" not in arg:
            raise SystemExit(f"report: expected key=value, got {arg!r} (keys: results_dir, output_dir, sweep, wandb)")
        key, value = arg.split("=", 1)
        if key not in ("results_dir", "output_dir", "sweep", "wandb"):
            raise SystemExit(f"report: unknown key {key!r}; valid: results_dir, output_dir, sweep, wandb")
        args[key] = value
    return args


def read(results_dirs: list[Path], sweep: str | None = None) -> list[dict[str, Any]]:
    """The records under every folder, those of one sweep when `sweep` is given. A file that is not
    a readable record is named on stderr with why (one line each), then how many were skipped:
    one bad file never stops the report, and none is dropped without a word."""
    skipped: list[str] = []
    records = [r for d in results_dirs for r in load_records(d, skipped)]
    for line in skipped:
        print(f"report: skipped {line}", file=sys.stderr)
    if skipped:
        print(f"report: skipped {len(skipped)} file(s) that are not readable records", file=sys.stderr)
    return [r for r in records if r["run"].get("sweep") == sweep] if sweep else records


def build(results_dirs: list[Path], output_dir: Path, sweep: str | None = None, to_wandb: bool = False) -> dict[str, Any]:
    """Everything the report writes, from the records under results_dirs; returns what it made."""
    from bench import dashboard, plots

    records = read(results_dirs, sweep)
    runs = runs_frame(records)
    if runs.empty:
        return {"records": 0, "files": []}
    output_dir.mkdir(parents=True, exist_ok=True)
    if (runs["role"] == "trial").all():  # an interrupted tuning stage: no row is scored on the reported split yet
        drawn = plots.draw_all(None, output_dir / "plots", runs)
        (output_dir / "tables").mkdir(exist_ok=True)
        runs.drop(columns=["loss_curve", "eval_curve"]).to_csv(output_dir / "tables" / "runs.csv", index=False)  # where write_tables puts it
        files = [output_dir / "tables" / "runs.csv"] + [p for paths in drawn.values() for p in paths]
        return {"records": len(records), "points": 0, "files": files, "plots": drawn}
    points = points_frame(runs[runs["role"] != "trial"])  # trials are scored on validation: they are never a table's rows
    files = write_tables(runs, points, output_dir)
    drawn = plots.draw_all(points, output_dir / "plots", runs)
    files += [p for paths in drawn.values() for p in paths]
    files.append(dashboard.write(runs, points, drawn, output_dir / "dashboard.html"))
    made = {"records": len(records), "points": len(points), "files": files, "plots": drawn}
    if to_wandb:
        made["wandb"] = log_to_wandb(runs, points, drawn, output_dir)
    return made


def log_to_wandb(runs, points, drawn: dict[str, list[Path]], output_dir: Path) -> dict[str, Any]:
    """The comparison table and the plots, as one W&B run of job_type 'report' in the sweep's group."""
    from omegaconf import OmegaConf

    from bench.tracking import resolve_mode

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


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results_dirs = [Path(p) for p in args.get("results_dir", "results/runs").split(",")]
    for folder in results_dirs:
        if not folder.is_dir():
            print(f"results_dir={folder} is not a folder of run records", file=sys.stderr)
            return 2
    if "output_dir" not in args:
        print(markdown_table(read(results_dirs, args.get("sweep"))))
        return 0
    start = time.perf_counter()
    made = build(results_dirs, Path(args["output_dir"]), args.get("sweep"), args.get("wandb", "false").lower() in ("1", "true", "yes"))
    if not made["records"]:
        print(f"no records under {', '.join(map(str, results_dirs))}", file=sys.stderr)
        return 1
    print(f"{made['records']} records, {made['points']} points -> {args['output_dir']} in {time.perf_counter() - start:.1f} s")
    for path in made["files"]:
        print(f"  {path}")
    if made.get("wandb"):
        print(f"  W&B report run: {made['wandb']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
