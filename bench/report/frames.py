"""Records -> runs -> points: the report's data model, as pandas frames. Depends on nothing of the
report (only bench.records.store, pandas and scipy), so tables, plots, the dashboard and W&B all build on it.

Nothing here knows a method by name: a run's method knobs are the keys of its method config, a
point's label is its method plus the knobs that vary among that method's runs on one model and
task (its scale label, for the views across sizes, the knobs that vary on the task across all
models, so one configuration reads the same at every size), and a model's size is the smallest total of its runs (a method can only add parameters)."""

from __future__ import annotations

import math
import re
from typing import Any

from bench.records.store import EARLIER_RULES, config_digest, run_seconds, study_key, without_training

MIB = 2**20
QUALITY_KEYS = ("accuracy", "f1", "mcc", "rouge1", "rouge2", "rougeL", "rougeLsum")
CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc")
CONSTANT = "constant predictions: one label for every example"
BREAKDOWN = ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_and_other_bytes")
KNOB = "method."  # the prefix of a method-config column: method.r, method.num_virtual_tokens, ...
NOT_KNOBS = ("name", "lr")  # the method's name is its own column; its lr is train.lr's default, shown as lr_setting
SHORT = {"r": "r", "target_modules": "", "num_virtual_tokens": "P", "num_layers": "top",  # how a knob reads in a label
         "lr_setting": "lr", "max_steps": "steps", "base": ""}  # ("" = the value alone); a key not here reads as itself
PER_MODEL = ("model", "task", "method")  # a label tells apart one model's points on one task
ACROSS_MODELS = ("task", "method")  # a scale label tells apart the configurations run anywhere on one task
UNSET = {"target_modules": "default (q,v)"}  # how a knob left at null (the library's default) reads; others stay empty


def file_stem(*parts: str) -> str:
    """A file name from names (model, task, figure) that may hold `/`, spaces or brackets (a hub
    id, PEFT's "meta-llama/Llama-3.2-3B (PEFT, external)"): each run of other characters is one `-`."""
    return "__".join(re.sub(r"[^A-Za-z0-9_-]+", "-", str(part)).strip("-") for part in parts)  # no dot: with_suffix would cut there


def _get(d: dict | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def point_key(config: dict[str, Any]) -> str:
    """A point is a config without its seed (and without where-it-goes keys), hashed under every
    earlier rule (bench.records.store.EARLIER_RULES), so a seed added today joins its point's
    seeds recorded before a rule changed."""
    return config_digest(config, leave_out=("seed",), earlier=EARLIER_RULES)[:12]


def _knob_value(key: str, value: Any) -> Any:
    """A method-config value as one cell: lists joined with commas, null as UNSET says."""
    if value is None:
        return UNSET.get(key)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def runs_frame(records: list[dict[str, Any]]):
    """One row per record, the figures the report uses as flat columns; each method-config key
    is a column `method.<key>` (empty where a method has no such key)."""
    import pandas as pd

    rows = []
    for rec in records:
        run, quality = rec["run"], rec.get("quality") or {}
        cfg = run.get("config") or {}
        method_cfg = cfg.get("method") or {}
        trained = without_training(cfg)  # a method that trains nothing has no lr or budget: they cannot split its label
        main = quality.get("main_metric")
        inference = rec.get("inference") or {}
        b1 = lambda variant: _get(inference, variant, "batch_1", "latency_per_example_s")  # noqa: E731
        row = {
            "id": run["id"], "sweep": run.get("sweep"), "model": run["model"], "task": run["task"], "method": run["method"],
            "seed": run.get("seed"), "status": run["status"], "error": run.get("error"), "random_weights": bool(run.get("random_weights")),
            "point": point_key(cfg), "started_at": run.get("started_at"), "finished_at": run.get("finished_at"),
            **{KNOB + k: _knob_value(k, v) for k, v in method_cfg.items() if k not in NOT_KNOBS},
            "lr": _get(trained, "train", "lr"), "max_steps": _get(trained, "train", "max_steps"),
            "stop_after": _get(trained, "train", "stop_after"),  # a successive-halving trial's rung (steps trained on max_steps' schedule)
            "base": _get(cfg, "model", "quantize") or _get(cfg, "model", "dtype") or "float32",  # how the base is stored: nf4 | fp4 | int8 | its dtype
            "role": run.get("role", "run"), "tuned": bool(rec.get("selection")),
            "study": study_key(cfg, earlier=EARLIER_RULES) if run.get("study") else None,  # recomputed: one study across hash rules
            "lr_setting": "tuned" if rec.get("selection") else _get(trained, "train", "lr"),  # a knob when set by hand, an outcome when tuned
            "selection": rec.get("selection"), "run_s": run_seconds(run),
            "trainable": _get(rec, "params", "trainable"), "total": _get(rec, "params", "total"), "percent": _get(rec, "params", "percent"),
            "peak_bytes": _get(rec, "memory", "peak_bytes"),
            **{k: _get(rec, "memory", "breakdown", k) for k in BREAKDOWN},
            "step_time_s": _get(rec, "speed", "step_time_median_s"), "tokens_per_s": _get(rec, "speed", "tokens_per_s"),
            "main_metric": main, "score": None if run.get("random_weights") or main is None else quality.get(main),
            "kind": _get(cfg, "task", "kind") or ("classification" if main in CLASSIFICATION_METRICS else None),
            "family": _get(cfg, "model", "family") if _get(cfg, "model", "family") not in (None, "auto") else None,
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
    # knob columns go together, after the run's identity, in the order the method configs list them
    knobs = [c for c in frame.columns if c.startswith(KNOB)]
    rest = [c for c in frame.columns if not c.startswith(KNOB)]
    at = rest.index("started_at") + 2
    frame = frame[rest[:at] + knobs + rest[at:]]
    for column, leave_out, by in (("label", (), PER_MODEL),
                                  ("series", (KNOB + "r", KNOB + "num_virtual_tokens"), PER_MODEL),  # a curve joins points that differ only on its axis
                                  ("method_label", ("lr_setting", "max_steps"), PER_MODEL),  # a tuning trial's line: its point without the lr
                                  ("scale_label", (), ACROSS_MODELS)):  # a line across sizes: one configuration at every size
        frame[column] = ""
        for is_trial in (True, False):  # trials vary the lr and are labelled among themselves
            mask = (frame["role"] == "trial") == is_trial
            if mask.any():
                frame.loc[mask, column] = _labels(frame[mask], leave_out, by)
    return frame


def knob_columns(frame) -> list[str]:
    """The method-config columns of a runs or points frame."""
    return [c for c in frame.columns if c.startswith(KNOB)]


def having(frame, knob: str):
    """The rows whose method config sets `knob` (method.<knob> not empty); an empty frame that
    still has the column when no method has the knob."""
    column = KNOB + knob
    if column not in frame:
        return frame.iloc[:0].assign(**{column: []})
    return frame[frame[column].notna()]


def _eval_curve(rec: dict[str, Any]) -> list[tuple[int, float]]:
    """(step, main metric) at each periodic evaluation, then the final score at the last step."""
    quality, run = rec.get("quality") or {}, rec["run"]
    main = quality.get("main_metric")
    if run.get("random_weights") or main is None or run["status"] != "success":
        return []
    curve = rec.get("curve") or []
    points = [(p["step"], p["eval"][main]) for p in curve if main in (p.get("eval") or {})]
    return points + ([(curve[-1]["step"], quality[main])] if curve and main in quality else [])


def _labels(frame, leave_out: tuple[str, ...] = (), by: tuple[str, ...] = PER_MODEL) -> list[str]:
    """Method name plus the knobs (method-config keys, then the lr and the budget) that vary among
    that method's runs within one group of `by` (one model and task, or one task across models).
    A knob a run's config lacks (a record written before the knob existed) does not count as a
    different value."""
    knobs = [k for k in knob_columns(frame) + ["lr_setting", "max_steps", "base"] if k not in leave_out]
    varying: dict[tuple, list[str]] = {}
    for key, group in frame.groupby(list(by), dropna=False):
        varying[key] = [k for k in knobs if group[k].dropna().astype(str).nunique() > 1]
    labels = []
    for _, row in frame.iterrows():
        parts = [row["method"]]
        for knob in varying[tuple(row[c] for c in by)]:
            value = row[knob]
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # pandas stores an integer column with gaps as floats
            name = SHORT.get(knob.removeprefix(KNOB), knob.removeprefix(KNOB))
            parts.append(f"{name}={value}" if name else str(value))
        labels.append(" ".join(parts))
    return labels


def natural_key(label: str) -> list:
    """Sorts labels with their numbers as numbers: P=5 before P=20 before P=100."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


def t_quantile_975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def last_rungs(trials):
    """Successive halving's trials as one row per rate and seed: the row of the last rung the rate
    reached, marked pruned when that is below its study's last rung (the rate was outranked there,
    at its score there). Trials without rungs pass through as they are."""
    import pandas as pd

    if not len(trials) or "stop_after" not in trials or trials["stop_after"].isna().all():
        return trials
    rungs = trials[trials["stop_after"].notna()].copy()
    top = rungs[rungs["status"] == "success"].groupby("study")["stop_after"].max()
    last = rungs.sort_values("stop_after").groupby(["study", "lr", "seed"], dropna=False).tail(1).copy()
    below = (last["status"] == "success") & (last["stop_after"] < last["study"].map(top))
    last.loc[below, "status"] = "pruned"
    return pd.concat([trials[trials["stop_after"].isna()], last]).sort_index()


def stale_finals(runs) -> list[str]:
    """The ids of tuned finals whose search was replaced: within one study (a point's trials and
    finals), finals whose selection chose differently (another lr, or other trials: a killed trial
    rerun, a record edited) from the newest search's finals. Such a final is provenance of a search
    that no longer stands: the report leaves it out and says so, never a second tuned row."""
    import json

    def search(sel: Any) -> str:  # what a search chose and from which trials
        sel = sel or {}
        return json.dumps({k: sel.get(k) for k in ("chosen_lr", "lrs", "trial_ids", "trials", "mode")}, sort_keys=True, default=str)

    finals = runs[(runs["role"] == "final") & runs["study"].notna()]
    stale: list[str] = []
    for _, group in finals.groupby("study"):
        keys = group["selection"].map(search)
        if keys.nunique() < 2:
            continue
        newest = keys[group["started_at"].astype(str).idxmax()]  # the search of the latest final
        stale += group.loc[keys != newest, "id"].tolist()
    return stale


def points_frame(runs):
    """One row per point: seeds counted, the score's mean and 95% t-interval half-width over
    successful seeds, cost figures averaged over them; a point with no success keeps its reason."""
    import pandas as pd

    knobs = knob_columns(runs)
    out = []
    for key, group in runs.groupby("point", sort=False):
        ok = group[group["status"] == "success"]
        first = group.iloc[0]
        row: dict[str, Any] = {c: first[c] for c in ("point", "model", "task", "method", "label", "series", "scale_label", *knobs,
                                                      "random_weights", "main_metric", "kind", "family")}
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
    """Each model's parameter count: the smallest total among its runs. A method can only add
    parameters (an adapter, a prompt) or leave the count as it is, so the smallest is the base
    model with its task head."""
    return {model: float(group["total"].min()) for model, group in runs[runs["total"].notna()].groupby("model")}


def trains_everything(points):
    """Which points train every parameter of the model (full fine-tuning, whatever its method is
    called): the reference line of the rank and scale figures, and the lr the tuning table compares to."""
    return points["trainable"].notna() & (points["trainable"] > 0) & (points["trainable"] >= points["total"])


def scored(points):
    """The points with a score to plot: at least one successful seed, pretrained weights."""
    return points[(points["seeds"] > 0) & points["score_mean"].notna() & ~points["random_weights"].astype(bool)]


def higher_is_better(points) -> bool:
    """The direction of the points' main metric (bench.measure.metrics); a metric this version
    does not register (or none) reads as higher is better."""
    from bench.measure.metrics import higher_is_better as registered

    named = points["main_metric"].dropna() if "main_metric" in points else []
    return registered(str(named.iloc[0]), default=True) if len(named) else True


def pareto_front(points, cost: str, score: str = "score_mean", higher: bool | None = None) -> list[str]:
    """Point keys on the front: no other point costs less or the same and scores at least as well
    (one of them strictly). Walks the points from cheapest, keeping each that beats every cheaper one.
    higher: whether a higher score is better; None = the points' main metric's direction."""
    higher = higher_is_better(points) if higher is None else higher
    usable = points[(points["seeds"] > 0) & points[cost].notna() & points[score].notna()]
    usable = usable.sort_values([cost, score], ascending=[True, not higher])
    front, best = [], -math.inf
    for _, row in usable.iterrows():
        if (row[score] if higher else -row[score]) > best:
            front.append(row["point"])
            best = row[score] if higher else -row[score]
    return front
