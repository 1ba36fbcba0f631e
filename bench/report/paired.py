"""The report's paired comparisons: for each model and task, every method against the reference
(full fine-tuning where it ran) and against the best, the groups that cannot be told apart, and the
critical-difference diagram. The statistics (the two-level bootstrap over seeds and examples, Holm's
correction, the groups) live in bench/measure/significance.py, where a sweep's tuning and seeds
stages use them too; this module only reads records and writes Markdown and the figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.measure.significance import ALPHA, N_BOOT, Comparison, compare, groups, observed, per_example_arrays


def cd_diagram(result: dict[str, Any], path: str, title: str) -> None:
    """The critical-difference diagram: methods on their mean-rank axis, a bar joining each group
    that no corrected test separates (scikit-posthocs' drawing, fed the groups of our paired tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import scikit_posthocs as sp

    # scikit-posthocs draws a bar over every maximal clique of unseparated pairs, which can skip a
    # method in rank order (a bar from rank 1 to 10 that leaves out rank 8.5 reads as joining it):
    # it is fed the groups instead, contiguous in rank as in Demsar's diagrams, so each bar is one group.
    names = sorted(result["mean_rank"])
    sig = pd.DataFrame(0.0, index=names, columns=names)
    for group in result["groups"]:
        sig.loc[group, group] = 1.0
    for name in names:
        sig.loc[name, name] = 1.0
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.35 * len(names)))
    sp.critical_difference_diagram(pd.Series(result["mean_rank"]), sig, ax=ax, alpha=ALPHA)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- the report's section
def point_tests(records: list[dict[str, Any]], runs: Any, points: Any, higher_is_better: bool = True) -> dict[str, Any] | None:
    """For one model and task: each point against the reference (full fine-tuning where it ran) and
    against the best, on the seeds every compared point ran (a point that trains nothing runs once
    and counts for every seed); groups where three or more ran.
    None when fewer than two points kept their per-example scores."""
    from bench.records.store import method_trains
    from bench.report.frames import trains_everything

    by_id = {r["run"]["id"]: r for r in records}
    metric = str(points["main_metric"].iloc[0])
    everything = set(points.loc[trains_everything(points), "label"].astype(str))  # full fine-tuning, whatever its method is called
    kept: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    gold, labels, left_out = None, 2, []
    for _, p in points.iterrows():
        ids = runs[(runs["point"] == p["point"]) & (runs["status"] == "success") & (runs["role"] != "trial")]["id"]
        arrays, g, k = per_example_arrays([by_id[i] for i in ids if i in by_id], metric)
        if arrays:
            kept[str(p["label"])], labels = arrays, max(labels, k)
            gold = g if g is not None else gold
        else:
            left_out.append(str(p["label"]))
    # A point that trains nothing (zero-shot) scores the same under every seed: it runs once, and its
    # one seed's scores pair with each seed of the others, so the comparison keeps all their seeds.
    fixed = {str(p["label"]) for _, p in points.iterrows() if not method_trains(p["method"])}
    trained = [set(a) for name, a in kept.items() if name not in fixed]
    everyone = sorted(set.intersection(*trained)) if trained else []
    for name in fixed & set(kept):
        if len(kept[name]) == 1 and everyone:
            only = next(iter(kept[name].values()))
            kept[name] = {s: only for s in everyone}
    seeds = sorted(set.intersection(*(set(a) for a in kept.values()))) if kept else []
    if len(kept) < 2 or not seeds:
        return None
    stacked = {name: {key: np.stack([a[s][key] for s in seeds]) for key in a[seeds[0]]} for name, a in kept.items()}
    sign = 1 if higher_is_better else -1
    means = {name: observed(arr, metric, gold, labels) for name, arr in stacked.items()}
    best = max(means, key=lambda n: sign * means[n])
    full = [n for n in stacked if n in everything]
    reference = max(full, key=lambda n: sign * means[n]) if full else best
    rows = []
    for name in sorted(stacked, key=lambda n: -sign * means[n]):
        vs_ref = None if name == reference else compare(stacked[name], stacked[reference], metric, gold, labels, (name, reference))
        vs_best = None if name == best else compare(stacked[name], stacked[best], metric, gold, labels, (name, best))
        rows.append({"label": name, "mean": means[name], "vs_reference": vs_ref, "vs_best": vs_best})
    ranked = groups(stacked, metric, gold, labels, higher_is_better) if len(stacked) >= 3 else None
    return {"metric": metric, "seeds": seeds, "examples": int(next(iter(next(iter(stacked.values())).values())).shape[1]),
            "reference": reference, "best": best, "rows": rows, "groups": ranked, "left_out": left_out}


def _cell(c: Comparison | None) -> str:
    if c is None:
        return "(itself)"
    verdict = "**differs**" if c.distinguishable else "cannot tell"
    diff = 0.0 if round(c.diff, 3) == 0 else c.diff  # no "-0.000"
    return f"{diff:+.3f} [{c.low:+.3f}, {c.high:+.3f}] {verdict}"


def markdown(result: dict[str, Any], title: str) -> str:
    """The paired section: one row per point, its difference from the reference and from the best."""
    lines = [f"## Paired comparisons: {title}", "",
             f"{result['metric']}, difference with its 95% paired bootstrap interval over {len(result['seeds'])} seed(s) "
             f"({', '.join(map(str, result['seeds']))}) and {result['examples']} evaluation examples, resampled together "
             f"({N_BOOT} draws); **differs**: the interval excludes 0 (bench/measure/significance.py).", "",
             f"| point | {result['metric']} | vs {result['reference']} (reference) | vs {result['best']} (best) |", "|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['label']} | {row['mean']:.3f} | {_cell(row['vs_reference'])} | {_cell(row['vs_best'])} |")
    ranked = result["groups"]
    if ranked:
        lines += ["", "Mean rank over the draws (1 = best): " + ", ".join(f"{n} {r:.2f}" for n, r in sorted(ranked["mean_rank"].items(), key=lambda x: x[1])) + "."]
        lines.append("Groups no pairwise test separates (Holm-corrected, p >= 0.05): "
                     + ("; ".join("{" + ", ".join(g) + "}" for g in ranked["groups"]) if ranked["groups"] else "none: every pair differs") + ".")
    if result["left_out"]:
        lines += ["", f"Left out (records without per-example scores, made before they were kept): {', '.join(result['left_out'])}."]
    return "\n".join(lines) + "\n"


def seeds_section(decided: dict[str, Any], model: str, task: str) -> str:
    """The points of this model and task that a sweep gave seeds until decided (adaptive_seeds): how many ran and why each stopped."""
    mine = {k: v for k, v in sorted(decided.items()) if k.startswith(f"{model}/{task}/")}
    if not mine:
        return ""
    lines = ["", "Seeds until decided (adaptive_seeds; the sweep's own comparison, on the seeds it had when it stopped):", "",
             "| point | against | seeds | stopped | difference [95% interval] |", "|---|---|---|---|---|"]
    for name, v in mine.items():
        diff = f"{v['difference']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" if "difference" in v else ""
        lines.append(f"| {name} | {v.get('against', '')} | {v.get('seeds', '')} | {v.get('stopped', '')} | {diff} |")
    return "\n".join(lines) + "\n"


def write_all(records: list[dict[str, Any]], runs: Any, points: Any, out: Path, decided: dict[str, Any] | None = None) -> list[Path]:
    """Per model and task with two or more points that kept per-example scores: the paired section
    (tables/<model>__<task>__paired.md, linked from the comparison table) and, with three or
    more, the critical-difference diagram (plots/<model>__<task>__cd.png). Random weights: none."""
    from bench.measure.metrics import higher_is_better
    from bench.report.tables import file_stem

    written: list[Path] = []
    for (model, task), group in points.groupby(["model", "task"]):
        if group["random_weights"].astype(bool).all():
            continue  # cost only: no quality to compare
        result = point_tests(records, runs, group, higher_is_better(str(group["main_metric"].iloc[0]), default=True))
        stem = file_stem(model, task)
        if result is None:
            table = out / "tables" / f"{stem}.md"
            if table.is_file() and (group["seeds"] > 0).sum() >= 2:
                table.write_text(table.read_text() + "\nNo paired comparisons: fewer than two points kept every example's score "
                                 "(quality.per_example, in records since it was added); their reruns will have them.\n")
            continue
        path = out / "tables" / f"{stem}__paired.md"
        path.write_text(markdown(result, f"{model} on {task}") + seeds_section(decided or {}, str(model), str(task)))
        table = out / "tables" / f"{stem}.md"
        if table.is_file():
            table.write_text(table.read_text() + f"\nWhich differences are real (paired over seeds and examples): {path.name}.\n")
        written.append(path)
        if result["groups"]:
            (out / "plots").mkdir(parents=True, exist_ok=True)
            cd = out / "plots" / f"{stem}__cd.png"
            cd_diagram(result["groups"], str(cd), f"{model} on {task}: {result['metric']}, mean rank; a bar joins what no test separates")
            written.append(cd)
    return written
