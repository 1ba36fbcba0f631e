"""Seeds until the answer is known (adaptive_seeds.enabled): after a sweep's own seeds, each point
is compared with the reference point of its model and task (adaptive_seeds.reference, full
fine-tuning by default) by the paired bootstrap of bench.measure.significance, over the seeds both ran and
the evaluation examples. A point whose 95% interval still holds zero gets one more seed, and the
reference the same seed, round after round, until every point is decided or has run
adaptive_seeds.max_seeds seeds. Why: three seeds decide a 3-point gap and not a 1-point one; a
fixed count either wastes runs on the clear cases or leaves the close ones unanswered.

Every added seed is an ordinary run with its own record (a relaunch skips it). What was decided and
why each point stopped goes to <results_dir>/seeds-until-decided.json (one entry per point, by its
label), which the report prints beside the paired comparisons.

`until_decided` takes the sweep's jobs and their record paths and the two things it needs from
Hydra as callables (compose, launch), as bench.sweep.tune.run_tuning does, so it is tested without Hydra."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from bench.records.store import write_atomic

FILE = "seeds-until-decided.json"

Compose = Callable[[list[str]], DictConfig]
Launch = Callable[[list[list[str]]], list[str | None]]


def _read(path: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text()) if path else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("run"), dict) else None


def _seed_of(job: list[str]) -> int | None:
    found = [o.split("=", 1)[1] for o in job if o.split("=", 1)[0] == "seed"]
    return int(found[-1]) if found else None


def _point(job: list[str]) -> tuple[str, ...]:
    return tuple(o for o in job if o.split("=", 1)[0] != "seed")


def label(records: list[dict[str, Any]]) -> str:
    """model / task / method and the knobs that set the point apart (its study key's first 8 characters)."""
    run = records[0]["run"]
    return f"{run['model']}/{run['task']}/{run['method']} ({str(run.get('study') or run['config_hash'])[:8]})"


def until_decided(jobs: list[list[str]], paths: list[str | None], compose: Compose, launch: Launch,
                  log: Callable[[str], None] = print) -> list[str | None]:
    """Run more seeds of the undecided points (and of their reference) until decided or at the
    maximum; returns every record path, the sweep's own first."""
    from bench.measure import significance

    if not jobs:
        return paths
    first = compose(jobs[0])
    opts = first.adaptive_seeds
    if not opts.enabled:
        return paths
    results_dir = Path(first.results_dir)
    done = list(zip(jobs, paths))
    outcome: dict[str, dict[str, Any]] = {}
    while True:
        points: dict[tuple[str, ...], list[tuple[list[str], dict[str, Any]]]] = {}
        for job, path in done:
            rec = _read(path)
            if rec is not None and rec["run"]["status"] == "success" and rec["run"].get("role") != "trial":
                points.setdefault(_point(job), []).append((job, rec))
        by_group: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        for key, runs in points.items():
            by_group.setdefault((runs[0][1]["run"]["model"], runs[0][1]["run"]["task"]), []).append(key)
        extra: list[list[str]] = []
        for (model, task), keys in by_group.items():
            refs = [k for k in keys if points[k][0][1]["run"]["method"] == str(opts.reference)]
            if not refs:
                log(f"seeds: {model}/{task}: no {opts.reference} point to compare with (adaptive_seeds.reference); no seeds added")
                continue
            ref = refs[0]
            ref_recs = [r for _, r in points[ref]]
            undecided = []
            for key in keys:
                if key == ref:
                    continue
                recs = [r for _, r in points[key]]
                metric = str(recs[0]["quality"].get("main_metric") or "accuracy")
                cmp = significance.compare_records(recs, ref_recs, metric, (label(recs), label(ref_recs)))
                if cmp is None:
                    outcome[label(recs)] = {"seeds": len(recs), "stopped": "no per-example scores to compare", "against": label(ref_recs)}
                    continue
                stop = "decided" if cmp.distinguishable else ("max_seeds" if cmp.seeds >= int(opts.max_seeds) else None)
                outcome[label(recs)] = {"against": label(ref_recs), "metric": metric, "seeds": cmp.seeds, "difference": round(cmp.diff, 5),
                                        "low": round(cmp.low, 5), "high": round(cmp.high, 5), "stopped": stop or "running"}
                if stop is None:
                    undecided.append(key)
            if undecided:
                seed = max(_seed_of(j) or 0 for key in [ref, *undecided] for j, _ in points[key]) + 1
                for key in [ref, *undecided]:
                    extra.append(list(key) + [f"seed={seed}"])
                log(f"seeds: {model}/{task}: {len(undecided)} point(s) not yet told apart from {opts.reference}; adding seed {seed}")
        _write(results_dir, outcome)
        if not extra:
            break
        done += list(zip(extra, launch(extra)))
    for name, what in sorted(outcome.items()):
        if "difference" in what:
            log(f"seeds: {name}: {what['seeds']} seeds, {what['stopped']}: {what['metric']} {what['difference']:+.4f} "
                f"[{what['low']:+.4f}, {what['high']:+.4f}] against {what['against']}")
    return [path for _, path in done]


def _write(results_dir: Path, outcome: dict[str, dict[str, Any]]) -> None:
    """Merge this sweep's outcome into the results folder's file (other sweeps' points are kept)."""
    path = results_dir / FILE
    kept = _read_outcome(path)
    kept.update(outcome)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, kept)


def _read_outcome(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
