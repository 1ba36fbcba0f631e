"""Tables from run records. `python -m bench.report results_dir=DIR` prints a Markdown table of
every record under DIR (the records are the only input)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.record import load_records


def _fmt_bytes(n: float | None) -> str:
    return "" if n is None else f"{n / 2**20:,.0f}"


def _fmt(x: Any, spec: str) -> str:
    return "" if x is None else format(x, spec)


def row_of(rec: dict[str, Any]) -> dict[str, str]:
    run, params, quality = rec["run"], rec.get("params") or {}, rec.get("quality") or {}
    speed, memory, storage = rec.get("speed") or {}, rec.get("memory") or {}, rec.get("storage") or {}
    main = quality.get("main_metric")
    keys = [main] + [k for k in ("accuracy", "f1", "mcc", "rouge1", "rouge2", "rougeL", "rougeLsum") if k != main]
    scores = ", ".join(f"{k} {quality[k]:.3f}" for k in keys if k in quality)
    if run.get("random_weights") and scores:
        scores = "(random weights: not a quality result)"  # such runs measure speed and memory only
    return {
        "model": run["model"] + (" (random)" if run.get("random_weights") else ""),
        "task": run["task"],
        "method": run["method"],
        "seed": str(run.get("seed")),
        "status": run["status"] if run["status"] == "success" else f"{run['status']}: {(run.get('error') or '')[:160]}",
        "trainable params": f"{params['trainable']:,} ({params['percent']:.2f}%)" if params else "",
        "peak MiB": _fmt_bytes(memory.get("peak_bytes")),
        "step s": _fmt(speed.get("step_time_median_s"), ".3f"),
        "tokens/s": _fmt(speed.get("tokens_per_s"), ",.0f"),
        "storage MiB": _fmt(storage.get("bytes") / 2**20 if storage.get("bytes") is not None else None, ",.2f"),
        "quality (main metric first)": scores,
    }


def markdown_table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "(no records)"
    rows = [row_of(r) for r in sorted(records, key=lambda r: (r["run"]["model"], r["run"]["task"], r["run"]["method"], str(r["run"].get("seed")), r["run"]["started_at"]))]
    headers = list(rows[0].keys())
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r.get(h, "") for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    results_dir = Path(args.get("results_dir", "results/runs"))
    if not results_dir.is_dir():
        print(f"results_dir={results_dir} is not a folder of run records", file=sys.stderr)
        return 2
    records = load_records(results_dir)
    if args.get("sweep"):
        records = [r for r in records if r["run"].get("sweep") == args["sweep"]]
    print(markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
