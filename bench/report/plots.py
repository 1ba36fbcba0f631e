"""The report's figures (matplotlib, PNG and SVG): the LoRA rank curve, cost-vs-score Pareto
fronts, prompt tuning by length and by model size, memory breakdown and step time, inference
latency. Each function takes the points of one model and task (or of one task, across models)
and returns a Figure, or None when the points do not hold what the figure needs."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench.report.frames import (CONSTANT, MIB, file_stem, having, higher_is_better, last_rungs, natural_key, pareto_front,  # noqa: E402
                                 scored as _scored, trains_everything)

BREAKDOWN_PARTS = (("weights_bytes", "weights"), ("gradients_bytes", "gradients"),
                   ("optimizer_state_bytes", "optimizer state"), ("activations_and_other_bytes", "activations + other"))


def _metric(points) -> str:
    return str(points["main_metric"].dropna().iloc[0]) if points["main_metric"].notna().any() else "score"


def _yerr(frame) -> list[float]:
    return [0.0 if v is None or v != v else float(v) for v in frame["score_ci95"]]


def _title(points, what: str) -> str:
    model = points["model"].iloc[0] if points["model"].nunique() == 1 else "all models"
    return f"{what}: {model} on {points['task'].iloc[0]}"


def _full_lines(ax, scored) -> None:
    """Full fine-tuning (each point that trains every parameter) as a reference line with its interval."""
    for i, (_, full) in enumerate(scored[trains_everything(scored)].iterrows()):
        rest = full["label"].removeprefix(full["method"])  # the knobs that tell full fine-tuning's points apart
        ax.axhline(full["score_mean"], color="black", linestyle=("--", ":", "-.")[i % 3], label=f"full fine-tuning{rest} ({full['score_mean']:.3f})")
        if full["score_ci95"] is not None and full["score_ci95"] == full["score_ci95"]:
            ax.axhspan(full["score_mean"] - full["score_ci95"], full["score_mean"] + full["score_ci95"], color="black", alpha=0.08)


def baseline(points, metric: str) -> tuple[float, str] | None:
    """The score a run that learned nothing but the class prior gets, for a classification metric:
    accuracy's majority-class share of the eval split (records' quality.majority_baseline), MCC's
    0; None for other metrics, or when the records do not hold the share."""
    if metric == "mcc" and (points["kind"] == "classification").any():
        return 0.0, "constant predictions (MCC 0)"
    known = points["majority_baseline"].dropna() if "majority_baseline" in points else []
    if metric == "accuracy" and len(known):
        return float(known.iloc[0]), f"majority class ({float(known.iloc[0]):.3f})"
    return None


def _draw_baseline(ax, points, metric: str) -> None:
    """The baseline as a grey dotted line, named, with the y axis stretched to hold it."""
    line = baseline(points, metric)
    if line is None:
        return
    value, text = line
    ax.axhline(value, color="grey", linestyle=":", linewidth=1.2, label=text)
    low, high = ax.get_ylim()
    pad = 0.03 * ((high - low) or 1.0)
    ax.set_ylim(min(low, value - pad), max(high, value + pad))


def log_floor(values) -> float:
    """Where a zero sits on a log axis: a decade below the smallest positive value (1 if none)."""
    import math

    positive = [float(v) for v in values if v == v and v > 0]
    return 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1.0


def _mark_floor(ax, floor: float, what: str) -> None:
    """A dotted line at the floor that zero-cost points are drawn on, and what it means."""
    ax.axvline(floor, color="grey", linestyle=":", linewidth=1)
    ax.annotate(f"{what} = 0 (drawn at this floor)", (floor, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                textcoords="offset points", fontsize=7, color="grey", rotation=90, va="top")


def _constant(frame):
    """The rows flagged for constant predictions (every example given one label)."""
    return frame[frame["flags"].fillna("").astype(str).str.contains(CONSTANT, regex=False)] if "flags" in frame else frame.iloc[:0]


def _pretty(method: str) -> str:
    return method.replace("_", " ")


def rank_vs_score(points) -> Figure | None:
    """Score against rank (the method.r knob) on a log-2 axis, a line per method and target-module
    set, 95% intervals over seeds as error bars, full fine-tuning as a reference line (the LoRA
    paper's rank figure)."""
    scored = _scored(points)
    ranked = having(scored, "r")
    if ranked["method.r"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for series, line in ranked.groupby("series", sort=True):  # a line per target set (and per other differing knob)
        line = line.sort_values("method.r")
        method = line["method"].iloc[0]
        targets = line["method.target_modules"].iloc[0] if "method.target_modules" in line else None
        rest = series.removeprefix(method)
        if isinstance(targets, str):
            rest = rest.replace(targets, "")
        rest = " ".join(rest.split())  # the other knobs that differ, if any
        name = _pretty(method) + (f" on {targets}" if isinstance(targets, str) else "") + (f" ({rest})" if rest else "")
        ax.errorbar(line["method.r"].astype(float), line["score_mean"], yerr=_yerr(line), marker="o", capsize=4, label=name)
    _full_lines(ax, scored)
    ranks = sorted(ranked["method.r"].astype(int).unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_xlabel("rank r (log scale)")
    ax.set_ylabel(f"{_metric(points)} (mean ± 95% CI over seeds)")
    ax.set_title(_title(points, f"{_metric(points)} vs rank"))
    _draw_baseline(ax, scored, _metric(points))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


OFFSETS = ((4, 4), (4, -11), (-4, 4), (-4, -11))  # label offsets (points) taken in turn along the cost axis, so neighbours differ


def pareto(points, cost: str, xlabel: str, scale: float = 1.0) -> Figure | None:
    """Cost against score for every point, the Pareto front drawn as a step line, each point
    labelled (offsets alternate along the cost axis so neighbours do not overlap; labels may run
    past the axes rather than be cut)."""
    scored = _scored(points)
    scored = scored[scored[cost].notna() & (scored[cost] >= 0)]
    if len(scored) < 2:
        return None
    front = set(pareto_front(scored, cost))
    floor = log_floor(scored[cost] / scale)  # a zero cost (method=none's parameters) sits here instead of vanishing
    x = lambda frame: (frame[cost] / scale).where(frame[cost] > 0, floor)  # noqa: E731
    fig, ax = plt.subplots(figsize=(8, 5))
    on = scored[scored["point"].isin(front)].sort_values(cost)
    off = scored[~scored["point"].isin(front)]
    ax.errorbar(x(off), off["score_mean"], yerr=_yerr(off), fmt="o", color="tab:gray", alpha=0.7, capsize=3, label="dominated")
    ax.errorbar(x(on), on["score_mean"], yerr=_yerr(on), fmt="o", color="tab:red", capsize=3, label="Pareto front")
    ax.step(x(on), on["score_mean"], where="post", color="tab:red", alpha=0.6)
    stuck = _constant(scored)
    if len(stuck):
        ax.scatter(x(stuck), stuck["score_mean"], marker="s", s=120, facecolors=(0, 0, 0, 0), edgecolors="black", zorder=4,
                   label="constant predictions (one label for every example)")
    for i, (_, row) in enumerate(scored.sort_values(cost).iterrows()):
        dx, dy = OFFSETS[i % len(OFFSETS)]
        ax.annotate(row["label"], (row[cost] / scale if row[cost] > 0 else floor, row["score_mean"]), textcoords="offset points",
                    xytext=(dx, dy), fontsize=8, ha="left" if dx > 0 else "right", annotation_clip=False)
    ax.set_xscale("log")
    if (scored[cost] == 0).any():
        _mark_floor(ax, floor, xlabel.split(" (")[0])
    ax.margins(x=0.12, y=0.08)  # room for the labels of the cheapest and the dearest points
    ax.set_xlabel(xlabel)
    higher = higher_is_better(scored)  # the front runs up (higher is better) or down (lower is better) from the cheapest point
    ax.set_ylabel(f"{_metric(points)} (mean ± 95% CI; {'higher' if higher else 'lower'} is better)")
    ax.set_title(_title(points, f"{xlabel.split(' (')[0]} vs {_metric(points)}"))
    _draw_baseline(ax, scored, _metric(points))
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right" if higher else "upper right")
    fig.tight_layout()
    return fig


def prompt_length(points) -> Figure | None:
    """Score against prompt length (method.num_virtual_tokens), a line per model (and method, when
    more than one has a length): the prompt tuning paper's length figure."""
    pt = having(_scored(points), "num_virtual_tokens")
    if pt["method.num_virtual_tokens"].nunique() < 2:
        return None
    several = pt["method"].nunique() > 1
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, series), line in pt.groupby(["model", "series"]):
        line = line.sort_values("method.num_virtual_tokens")
        name = model + (f" {series}" if several else series.removeprefix(line["method"].iloc[0]))
        ax.errorbar(line["method.num_virtual_tokens"].astype(float), line["score_mean"], yerr=_yerr(line), marker="o", capsize=4, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("prompt length (virtual tokens, log scale)")
    ax.set_ylabel(f"{_metric(points)} (mean ± 95% CI)")
    title = _pretty(pt["method"].iloc[0]).capitalize() if not several else "Prompt methods"
    ax.set_title(f"{title}: {_metric(points)} vs prompt length on {points['task'].iloc[0]}")
    _draw_baseline(ax, pt, _metric(points))
    ax.grid(alpha=0.3)
    ax.legend(title="model")
    fig.tight_layout()
    return fig


FAMILY_STYLE = {"encoder": "-", "decoder": "--", "encoder-decoder": ":"}  # a line's family, by its dash


def prompt_scale(points) -> Figure | None:
    """Score against model size (the prompt tuning paper's scale figure): one line per method
    configuration (each prompt length, each LoRA rank, full fine-tuning) per model family, so a line
    never joins an encoder to a decoder; the seeds' 95% intervals as error bars."""
    scored = _scored(points)
    scored = scored[scored["model_size"].notna()]
    pt = having(scored, "num_virtual_tokens")
    if scored["model"].nunique() < 2 or pt.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    family = scored["family"].fillna("?") if "family" in scored else scored["model"].map(lambda m: "?")
    colors: dict[str, str] = {}
    lines = scored.assign(family=family).groupby(["scale_label", "family"])  # labelled across sizes: one configuration, one line
    for (label, fam), line in sorted(lines, key=lambda kv: (natural_key(kv[0][0]), kv[0][1])):
        line = line.sort_values("model_size")
        full = bool(trains_everything(line).all())
        greys = sum(1 for c in colors.values() if c in ("black", "dimgray", "darkgray"))
        color = colors.setdefault(label, ("black", "dimgray", "darkgray")[greys % 3] if full else f"C{len(colors) % 10}")
        length = line["method.num_virtual_tokens"].iloc[0] if "method.num_virtual_tokens" in line else None
        method = line["method"].iloc[0]
        rest = re.sub(r" P=\d+", "", label.removeprefix(method))  # the knobs that tell this line apart (lr=tuned, r=8, ...)
        prompt = f", P={int(length)}" if length is not None and length == length else ""
        name = ("full fine-tuning" if full else _pretty(method) + prompt) + rest
        ax.errorbar(line["model_size"], line["score_mean"], yerr=_yerr(line), marker="s" if full else "o", capsize=4, color=color,
                    linestyle=FAMILY_STYLE.get(fam, "-"), label=name + (f" ({fam}s)" if fam in FAMILY_STYLE else ""))
    for _, row in scored.drop_duplicates("model").iterrows():
        ax.annotate(row["model"], (row["model_size"], ax.get_ylim()[0]), textcoords="offset points", xytext=(2, 4), fontsize=8, rotation=90)
    ax.set_xscale("log")
    ax.set_xlabel("model parameters (log scale)")
    ax.set_ylabel(f"{_metric(points)} (mean ± 95% CI)")
    _draw_baseline(ax, scored, _metric(points))
    ax.set_title(f"Prompt tuning and the other methods across model sizes on {points['task'].iloc[0]}\n"
                 "(solid: encoders, dashed: decoders; a line joins one family's sizes)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def speed_memory(points) -> Figure | None:
    """Peak memory split into its parts (stacked) and the median step time, per point."""
    ok = points[(points["seeds"] > 0) & points["peak_bytes"].notna()].sort_values(["method", "trainable"])
    if ok.empty:
        return None
    fig, (mem, speed) = plt.subplots(1, 2, figsize=(12, max(3.5, 0.35 * len(ok) + 1.5)), sharey=True)
    labels = list(ok["label"])
    left = [0.0] * len(ok)
    for column, name in BREAKDOWN_PARTS:
        values = [0.0 if v is None or v != v else max(0.0, float(v)) / MIB for v in ok[column]]
        mem.barh(labels, values, left=left, label=name)
        left = [a + b for a, b in zip(left, values)]
    mem.set_xlabel("memory at the training peak (MiB)")
    mem.set_title("Memory breakdown")
    mem.legend(fontsize=8, loc="lower right")
    speed.barh(labels, [0.0 if v is None or v != v else float(v) for v in ok["step_time_s"]], color="tab:purple")
    speed.set_xlabel("median step time (s)")
    speed.set_title("Training speed")
    for ax in (mem, speed):
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(_title(points, "Cost per method"))
    fig.tight_layout()
    return fig


def inference(points) -> Figure | None:
    """Latency per example at batch 1: the base model, each point as trained (LoRA unmerged, a
    soft prompt with its extra tokens), and merged where the method merges."""
    ok = points[(points["seeds"] > 0) & points["latency_b1_s"].notna()].sort_values(["method", "trainable"])
    if ok.empty:
        return None
    fig, ax = plt.subplots(figsize=(9, max(3.5, 0.45 * len(ok) + 1.5)))
    labels = list(ok["label"])
    y = range(len(ok))
    h = 0.27
    to_ms = lambda col: [0.0 if v is None or v != v else float(v) * 1e3 for v in ok[col]]  # noqa: E731
    ax.barh([i - h for i in y], to_ms("latency_base_b1_s"), height=h, color="tab:gray", label="base model")
    ax.barh(list(y), to_ms("latency_b1_s"), height=h, color="tab:blue", label="as trained (LoRA unmerged; prompt with its tokens)")
    ax.barh([i + h for i in y], to_ms("latency_merged_b1_s"), height=h, color="tab:green", label="merged into the weights")
    ax.set_yticks(list(y), labels)
    ax.set_xlabel("latency per example at batch 1 (ms)")
    ax.set_title(_title(points, "Inference cost"))
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves(runs) -> Figure | None:
    """Training curves of every point, mean over its seeds: the dev score at each periodic
    evaluation (with the seeds' range shaded) and the training loss (running mean over 25 steps).
    Whether a budget was long enough shows here: the curves should have flattened by the end."""
    import pandas as pd

    ok = runs[(runs["status"] == "success") & runs["eval_curve"].map(len).gt(1)]
    if ok.empty:
        return None
    fig, (score_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.get_cmap("tab20").colors
    for i, (label, group) in enumerate(ok.groupby("label", sort=True)):
        color = colors[i % len(colors)]
        evals = pd.DataFrame([dict(c) for c in group["eval_curve"]]).T.sort_index()  # step x seed
        score_ax.plot(evals.index, evals.mean(axis=1), marker=".", color=color, label=f"{label} ({len(group)} seeds)")
        score_ax.fill_between(evals.index, evals.min(axis=1), evals.max(axis=1), color=color, alpha=0.15)
        losses = pd.DataFrame([dict(c) for c in group["loss_curve"]]).T.sort_index()
        loss_ax.plot(losses.index, losses.mean(axis=1).rolling(25, min_periods=1).mean(), color=color, label=label)
    metric = str(ok["main_metric"].iloc[0])
    score_ax.set_xlabel("optimizer step")
    score_ax.set_ylabel(f"dev {metric} (mean over seeds; shade: min to max)")
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("training loss (running mean of 25 steps, mean over seeds)")
    _draw_baseline(score_ax, ok, metric)
    for ax in (score_ax, loss_ax):
        ax.grid(alpha=0.3)
    score_ax.legend(fontsize=7, ncol=2)
    fig.suptitle(_title(ok, "Training curves"))
    fig.tight_layout()
    return fig


def lr_sensitivity(trials, points=None) -> Figure | None:
    """Validation score against learning rate (log axis) from the tuning trials, a line per method
    (its point without the lr); the band spans the trial seeds' min to max; x marks a pruned
    trial at its last score, a star the chosen rate. Scored on the validation split carved from
    train, never on the reported split. A flat top means the choice matters little; a peak at
    the grid's edge means the range was too narrow."""
    ok = trials[trials["status"].isin(["success", "pruned"]) & trials["score"].notna() & ~trials["random_weights"].astype(bool)]
    if ok.empty or ok["lr"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(11, 5))
    colors = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    for i, (label, group) in enumerate(ok.groupby("method_label", sort=True)):
        color = colors[i % len(colors)]
        done = group[group["status"] == "success"].groupby("lr")["score"]
        mean = done.mean()
        ax.plot(mean.index, mean.values, marker="o", color=color, label=f"{label} ({group['seed'].nunique()} seed{'s' if group['seed'].nunique() > 1 else ''})")
        if group["seed"].nunique() > 1:
            ax.fill_between(mean.index, done.min().values, done.max().values, color=color, alpha=0.15)
        pruned = group[group["status"] == "pruned"]
        ax.scatter(pruned["lr"], pruned["score"], marker="x", color=color, s=45)
        stuck = group[(group["status"] == "success") & group["constant_predictions"].eq(True)]  # learned only the class prior
        ax.scatter(stuck["lr"], stuck["score"], marker="s", facecolors=(0, 0, 0, 0), edgecolors=color, s=90, zorder=4)
        chosen = points[points["study"].isin(group["study"]) & points["tuned"].astype(bool)] if points is not None else []
        for _, final in (chosen.iterrows() if len(chosen) else []):
            if final["lr"] in mean.index:
                ax.scatter([final["lr"]], [mean[final["lr"]]], marker="*", s=220, color=color, edgecolor="black", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (log scale)")
    ax.set_ylabel(f"validation {_metric(ok)} (split carved from train; band: seeds' range)")
    ax.set_title(_title(ok, "Learning-rate sensitivity") + "\n* chosen lr, x pruned trial (at its last score), "
                 "open square: one class predicted for every row (ranked last)")
    base = ok["majority_baseline"].dropna() if "majority_baseline" in ok else []
    if len(base) and _metric(ok) == "accuracy":  # what always answering the majority class scores
        ax.axhline(float(base.iloc[0]), color="grey", linestyle=":", linewidth=1)
        ax.annotate("majority class", (ax.get_xlim()[0], float(base.iloc[0])), fontsize=7, color="grey", va="bottom")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: the low rates' x marks fill the plot
    fig.tight_layout()
    return fig


def _save(fig: Figure | None, stem: Path) -> list[Path]:
    if fig is None:
        return []
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def draw_all(points, folder: Path, runs=None) -> dict[str, list[Path]]:
    """Every figure the points (and, for the training curves and the lr sensitivity, the runs)
    support; name -> [png, svg]. points is None when only tuning trials exist."""
    drawn: dict[str, list[Path]] = {}
    if runs is not None:
        for (model, task), group in runs.groupby(["model", "task"]):
            trials = last_rungs(group[group["role"] == "trial"]) if "role" in group else group.iloc[:0]
            mine = points[(points["model"] == model) & (points["task"] == task)] if points is not None else None
            for name, fig in (("curves", curves(group[group["role"] != "trial"] if "role" in group else group)),
                              ("lr_sensitivity", lr_sensitivity(trials, mine) if len(trials) else None)):
                paths = _save(fig, folder / file_stem(model, task, name))
                if paths:
                    drawn[file_stem(model, task, name)] = paths
    if points is None:
        return drawn
    for (model, task), group in points.groupby(["model", "task"]):
        for name, fig in (("rank_vs_score", rank_vs_score(group)),
                          ("params_vs_score", pareto(group, "trainable", "trainable parameters (log scale)")),
                          ("memory_vs_score", pareto(group, "peak_bytes", "peak memory (MiB, log scale)", scale=MIB)),
                          ("speed_memory", speed_memory(group)),
                          ("inference", inference(group))):
            paths = _save(fig, folder / file_stem(model, task, name))
            if paths:
                drawn[file_stem(model, task, name)] = paths
    for task, group in points.groupby("task"):
        for name, fig in (("prompt_length", prompt_length(group)), ("prompt_scale", prompt_scale(group))):
            paths = _save(fig, folder / file_stem("all-models", task, name))
            if paths:
                drawn[file_stem("all-models", task, name)] = paths
    return drawn
