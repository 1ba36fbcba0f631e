"""Which method fits my model and my memory, and what will it buy?

    peft-bench advise model=llama3-8b-config task=dialogsum memory_gib=24 train.batch_size=4
    peft-bench advise model=smollm2-135m task=sst2 memory_gib=2 format=json methods=[full,lora,ia3]

For each method and its main knob values (LoRA's rank, a soft prompt's length: `KNOB_VALUES`):
- the predicted peak memory and its parts (bench.measure.estimate, on the meta device: no weights read),
  at the config's precision and gradient checkpointing, and, where that does not fit, with the
  switches that lower memory (gradient checkpointing, then bf16 weights);
- the predicted step time, where records of this method on this device allow a FLOP-based
  extrapolation: training FLOPs per token ~ 4N + 2T (forward and activation gradients through all
  N parameters, weight gradients for the T trainable ones), divided by the rate that the record
  of the largest model measured with this method achieved (the same formula over its tokens/s);
- what the records say about quality for the nearest measured model (by parameter count) on the
  same task: the point's mean with its 95% interval, seeds, whether its lr was tuned, record ids.
It ends with the recommendation: the methods that fit, on the front of memory against recorded
quality, above what the untrained model scores (or, where no quality is recorded, those that
fit, smallest first).

With devices=N (N > 1) the run is data-parallel (DDP) and everything is per device: memory_gib is
one device's memory, the fit is judged on one device's DDP peak (batch / N examples of
activations, the full weights, gradients and optimizer state, DDP's gradient buckets), and each
row adds what ZeRO-1, ZeRO-2 and ZeRO-3 / FSDP would need per device, on paper, and which of them
fit where plain DDP does not (bench.measure.estimate.data_parallel has the formulas).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from bench.config.compose import compose
from bench.errors import ConfigError

KNOB_VALUES = {"r": (8, 32), "num_virtual_tokens": (20, 100)}  # a method whose YAML has the knob is advised at each value
SHARDINGS = ("zero1", "zero2", "fsdp")  # the sharded alternatives, on paper: ZeRO-1, ZeRO-2, ZeRO-3 / FSDP full shard
GIB = 2**30


def candidates(methods: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """(label, method overrides) for every method in conf/method (or those named), at each of its main knob values."""
    from bench.config.checks import method_keys

    known = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "method").glob("*.yaml"))
    for name in methods or ():
        if name not in known:
            raise ConfigError("methods", name, f"method names from conf/method: {', '.join(known)}")
    out = []
    for name in (n for n in known if methods is None or n in methods):
        if name == "none":
            out.append((name, [f"method={name}"]))
            continue
        knobs = [k for k in KNOB_VALUES if k in (method_keys(name) or ())]
        if not knobs:
            out.append((name, [f"method={name}"]))
        for knob in knobs:
            out += [(f"{name} {knob}={v}", [f"method={name}", f"method.{knob}={v}"]) for v in KNOB_VALUES[knob]]
    return out


def estimate(cfg: DictConfig, seq_len: int, devices: int = 1) -> dict[str, Any]:
    """The estimator's parts for this config (meta device; one device's share of the batch when
    devices > 1), and the parameter counts."""
    from bench.measure.estimate import predict_devices, prepare_meta
    from bench.measure.figures import param_counts

    model, head = prepare_meta(cfg)
    out = predict_devices(model, head, int(cfg.train.batch_size), seq_len, devices,
                          gradient_checkpointing=bool(cfg.speed.get("gradient_checkpointing", False)))
    counts = param_counts(model)  # as every record counts them (tied weights once)
    out["params"], out["trainable"] = int(counts["total"]), int(counts["trainable"])
    return out


def peak(est: dict[str, Any]) -> int:
    """One device's predicted peak: the whole run on one device, or one device's under DDP."""
    return est["total_bytes"] if est["data_parallel"] is None else est["data_parallel"]["ddp_bytes"]


def fitting(user: list[str], overrides: list[str], seq_len: int, budget: int, devices: int = 1) -> tuple[dict[str, Any], list[str]]:
    """The estimate as configured, else with the first switch set that brings one device's peak
    under budget (or the last tried), and the switches it took. A method that refuses the model
    raises ConfigError."""
    tries = [[], ["speed.gradient_checkpointing=true"], ["speed.gradient_checkpointing=true", "model.dtype=bfloat16"]]
    est, used = {}, []
    for switches in tries:
        est, used = estimate(compose(["tracking=none", *user, *overrides, *switches]), seq_len, devices), switches
        if peak(est) <= budget:
            break
    return est, [s.split("=")[0] for s in used]


def flop_rate(records: list[dict[str, Any]], method: str, device: str) -> tuple[float, dict[str, Any]] | None:
    """The achieved training FLOP rate (FLOPs/s by 4N + 2T per token) of the largest model measured
    with this method on this device, and that record."""
    mine = [r for r in records if r["run"]["method"] == method and r["run"]["status"] == "success" and (r.get("memory") or {}).get("device") == device
            and (r.get("speed") or {}).get("tokens_per_s") and r.get("params")]
    if not mine:
        return None
    rec = max(mine, key=lambda r: r["params"]["total"])
    n, t = rec["params"]["total"], rec["params"]["trainable"]
    return (4 * n + 2 * t) * rec["speed"]["tokens_per_s"], rec


def quality(points, task: str, method: str, knob: tuple[str, Any] | None, size: float) -> dict[str, Any] | None:
    """The recorded point of this method (and knob value) on this task for the measured model
    nearest in size: tuned before untuned, then more seeds."""
    if points is None or points.empty:
        return None
    rows = points[(points["task"] == task) & (points["method"] == method) & (points["seeds"] > 0) & points["score_mean"].notna()
                  & ~points["random_weights"].astype(bool)]
    if knob is not None and f"method.{knob[0]}" in rows.columns:
        rows = rows[rows[f"method.{knob[0]}"] == knob[1]]
    rows = rows[rows["model_size"].notna()]
    if rows.empty:
        return None
    rows = rows.assign(distance=(rows["model_size"].astype(float).map(math.log) - math.log(max(size, 1))).abs())
    best = rows.sort_values(["distance", "tuned", "seeds"], ascending=[True, False, False]).iloc[0]
    return {"model": best["model"], "model_params": float(best["model_size"]), "metric": best["main_metric"],
            "mean": float(best["score_mean"]), "ci95": None if best["score_ci95"] is None or math.isnan(best["score_ci95"]) else float(best["score_ci95"]),
            "seeds": int(best["seeds"]), "tuned": bool(best["tuned"]), "point": best["point"], "record_ids": best["ids"][:3]}


def advise(cfg: DictConfig, user: list[str], memory_gib: float, records_dir: Path, device: str,
           methods: list[str] | None = None, devices: int = 1) -> dict[str, Any]:
    """Every candidate's memory (per device when devices > 1), fit, step time and recorded quality,
    and the recommendation."""
    from bench.config.plan import model_family
    from bench.measure.estimate import default_seq_len
    from bench.records.store import load_records
    from bench.report.frames import points_frame, runs_frame

    records = [r for r in load_records(records_dir) if r["run"].get("role") != "trial"] if records_dir.is_dir() else []
    runs = runs_frame(records)
    points = None
    if not runs.empty:
        points = points_frame(runs)
        points["ids"] = points["point"].map(runs.groupby("point")["id"].apply(list))
    seq_len = int(cfg.estimate.seq_len) if cfg.estimate.get("seq_len") else default_seq_len(cfg, model_family(cfg.model))
    budget = int(memory_gib * GIB)
    rows = []
    for label, overrides in candidates(methods):
        method = overrides[0].split("=", 1)[1]
        try:
            est, switches = fitting(user, overrides, seq_len, budget, devices)
        except ConfigError as exc:  # the method refuses this model (bitfit on a model without biases)
            rows.append({"candidate": label, "method": method, "overrides": overrides[1:], "fits": False, "refused": str(exc)})
            continue
        knob = (overrides[1].split("=")[0].removeprefix("method."), int(overrides[1].split("=")[1])) if len(overrides) > 1 else None
        rate = flop_rate(records, method, device) if est["trainable"] else None
        step = None
        if rate is not None:
            tokens = int(cfg.train.batch_size) // devices * seq_len  # one device's share: its compute, no communication
            step = {"seconds": (4 * est["params"] + 2 * est["trainable"]) * tokens / rate[0], "from_record": rate[1]["run"]["id"],
                    "from_model_params": rate[1]["params"]["total"]}
        parts = {k: est[k] for k in ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_bytes")}
        dp = est["data_parallel"]
        sharded = None
        if dp is not None:  # DDP's copy of the gradients is a part of one device's peak; the shardings, on paper
            parts["ddp_buckets_bytes"] = dp["ddp_buckets_bytes"]
            sharded = {f"{name}_bytes": dp[f"{name}_bytes"] for name in SHARDINGS}
        fits = peak(est) <= budget
        fits_with = [] if fits or sharded is None else [name for name in SHARDINGS if sharded[f"{name}_bytes"] <= budget]
        rows.append({"candidate": label, "method": method, "overrides": overrides[1:], "fits": fits, "refused": None,
                     "switches": switches, "peak_bytes": peak(est), "parts": parts, "sharded": sharded, "fits_with": fits_with,
                     "trainable": est["trainable"], "params": est["params"], "step_time": step,
                     "quality": quality(points, str(cfg.task.name), method, knob, est["params"])})
    fit = [r for r in rows if r["fits"] and r["trainable"]]  # a method that trains nothing is the baseline, not advice
    from bench.measure.metrics import higher_is_better

    def good(r: dict[str, Any]) -> float:  # the recorded mean, oriented so that larger is better (bench.measure.metrics)
        return r["quality"]["mean"] if higher_is_better(str(r["quality"]["metric"]), default=True) else -r["quality"]["mean"]

    zero = [good(r) for r in rows if not r.get("refused") and not r["trainable"] and r["quality"]]
    floor = max(zero) if zero else -math.inf  # what the untrained model scores: a method below it buys nothing
    with_q = sorted((r for r in fit if r["quality"] and good(r) > floor), key=lambda r: (r["peak_bytes"], -good(r)))
    front, best = [], -math.inf
    for r in with_q:
        if good(r) > best:
            front.append(r["candidate"])
            best = good(r)
    recommended = front or [r["candidate"] for r in sorted(fit, key=lambda r: r["peak_bytes"])]
    how = ("memory: bench.measure.estimate on the meta device; step time: (4N + 2T) FLOPs per token at the rate the largest "
           "measured model of the method reached on this device; quality: the recorded point of the nearest measured size")
    if devices > 1:
        how += (f"; {devices} devices: per device, DDP's gradient buckets counted (gradient_as_bucket_view=False), the step time "
                "one device's share without communication, ZeRO/FSDP on paper (bench.measure.estimate.data_parallel)")
    return {"model": str(cfg.model.name), "task": str(cfg.task.name), "memory_gib": memory_gib, "batch_size": int(cfg.train.batch_size),
            "devices": devices, "per_device_batch_size": int(cfg.train.batch_size) // devices,
            "seq_len": seq_len, "dtype": str(cfg.model.get("dtype", "float32")), "device": device, "records": str(records_dir),
            "candidates": rows, "recommended": recommended,
            "sharded_only": [r["candidate"] for r in rows if r.get("fits_with") and r["trainable"]], "how": how}


def _gib(n: float) -> str:
    return f"{n / GIB:,.2f}"


def render(out: dict[str, Any]) -> str:
    """The advice as a Markdown table; with several devices, per device, with the DDP buckets and
    the sharded peaks (on paper) as columns."""
    n = out.get("devices", 1)
    if n == 1:
        title = (f"{out['model']} on {out['task']}: batch {out['batch_size']} x {out['seq_len']} tokens, {out['dtype']}, "
                 f"{out['memory_gib']:g} GiB on {out['device']}")
        header = ["candidate", "fits", "with", "peak GiB", "weights / grads / optim / act GiB"]
    else:
        title = (f"{out['model']} on {out['task']}: batch {out['batch_size']} on {n} devices ({out['per_device_batch_size']} per device) "
                 f"x {out['seq_len']} tokens, {out['dtype']}, {out['memory_gib']:g} GiB per device on {out['device']}; "
                 f"per device, DDP; ZeRO / FSDP on paper")
        header = ["candidate", "fits (DDP)", "with", "peak GiB per device (DDP)", "weights / grads / optim / act / DDP buckets GiB",
                  "ZeRO-1 / ZeRO-2 / ZeRO-3-FSDP GiB (on paper)", "fits with"]
    header += ["trainable", "step s (predicted)", "recorded quality (nearest size)"]
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in out["candidates"]:
        if r["refused"]:
            lines.append(f"| {r['candidate']} | refused | | | {r['refused'][:140]} |" + " |" * (len(header) - 5))
            continue
        q = r["quality"]
        qtext = "" if q is None else (f"{q['metric']} {q['mean']:.3f}" + (f" ± {q['ci95']:.3f}" if q["ci95"] is not None else "")
                                      + f" ({q['model']}, {q['seeds']} seed{'s' if q['seeds'] != 1 else ''}, {'tuned' if q['tuned'] else 'untuned'})")
        step = f"{r['step_time']['seconds']:.2f}" if r["step_time"] else ""
        cells = [r["candidate"], "yes" if r["fits"] else "no", ", ".join(r["switches"]), _gib(r["peak_bytes"]),
                 " / ".join(_gib(v) for v in r["parts"].values())]  # weights, grads, optim, act (and DDP's buckets)
        if n > 1:
            cells += [" / ".join(_gib(r["sharded"][f"{name}_bytes"]) for name in SHARDINGS), ", ".join(r["fits_with"])]
        cells += [f"{r['trainable']:,}", step, qtext]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Recommended (fit, on the memory-quality front): {', '.join(out['recommended']) or 'nothing fits'}"]
    if out.get("sharded_only"):
        lines.append("Fit only when sharded (on paper): " + ", ".join(
            f"{r['candidate']} ({', '.join(r['fits_with'])})" for r in out["candidates"] if r["candidate"] in out["sharded_only"]))
    lines.append(f"How: {out['how']}. Records: {out['records']}.")
    return "\n".join(lines)


def html_view(out: dict[str, Any]) -> str:
    """The advice as one self-contained page beside the report's dashboard: the table, and a chart
    of each candidate's predicted peak (its parts stacked) against the budget."""
    import html

    from plotly.offline import get_plotlyjs

    shown = [r for r in out["candidates"] if not r.get("refused")]
    names = [r["candidate"] for r in shown]
    traces = [{"type": "bar", "name": part.replace("_bytes", "").replace("_", " "), "x": names,
               "y": [r["parts"][part] / GIB for r in shown]}
              for part in (shown[0]["parts"] if shown else ())]
    per = " per device (DDP)" if out.get("devices", 1) > 1 else ""
    layout = {"barmode": "stack", "title": f"Predicted peak{per} (GiB) against {out['memory_gib']:g} GiB", "yaxis": {"title": "GiB"},
              "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": out["memory_gib"], "y1": out["memory_gib"],
                          "line": {"color": "red", "dash": "dash"}}], "height": 480}
    lines = render(out).splitlines()  # the terminal's table, cell for cell
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in lines[2].strip("|").split("|"))
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
                   for line in lines[4:] if line.startswith("|"))
    title = f"{out['model']} on {out['task']}: {out['memory_gib']:g} GiB"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>peft-bench advice: {html.escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:1.5em} table{border-collapse:collapse;font-size:13px}"
            "th,td{border:1px solid #ccc;padding:3px 7px} th{background:#f2f2f2}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><h1>Which method fits: {html.escape(title)}</h1>"
            f"<p>Batch {out['batch_size']} x {out['seq_len']} tokens, {html.escape(out['dtype'])}, on {html.escape(out['device'])}. "
            f"Recommended: <b>{html.escape(', '.join(out['recommended']) or 'nothing fits')}</b>. {html.escape(out['how'])}.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table><div id='peak'></div>"
            f"<script>Plotly.newPlot('peak', {json.dumps(traces)}, {json.dumps(layout)}, {{displaylogo: false}});</script></body></html>")


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench advise` (its keys: conf/advise.yaml; the run's keys choose the model and task)."""
    assert cfg is not None
    what = "a number of GiB above 0 (the accelerator's memory)"
    try:
        memory = float(opts.memory_gib)
    except (TypeError, ValueError):
        raise ConfigError("memory_gib", opts.memory_gib, what) from None
    if not math.isfinite(memory) or memory <= 0:
        raise ConfigError("memory_gib", opts.memory_gib, what)
    if opts.format not in ("table", "json"):
        raise ConfigError("format", opts.format, "table or json")
    device = opts.records_device or ("cuda" if str(cfg.device) in ("auto", "cuda") else "cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError("records_device", device, "cpu or cuda (whose records give the step time)")
    methods = opts.get("methods")
    if methods is not None and not (isinstance(methods, ListConfig) and all(isinstance(m, str) for m in methods)):
        raise ConfigError("methods", methods, "a list of method names, e.g. [full,lora,ia3], or null for every method")
    methods = list(methods) if methods is not None else None
    candidates(methods)  # names checked before any model is built
    from bench.config.checks import check_model, check_task
    from bench.measure.estimate import check_devices

    devices = check_devices(opts.devices, cfg.train.batch_size)  # an integer >= 1 dividing the global batch
    check_model(cfg.model)
    check_task(cfg.task)
    out = advise(cfg, overrides, memory, Path(opts.results_dir), device, methods, devices)
    print(json.dumps(out, indent=1, default=str) if opts.format == "json" else render(out))
    if opts.output_dir:  # the same advice as files: Markdown, JSON and a page to open beside the dashboard
        folder = Path(opts.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "advice.md").write_text(render(out) + "\n")
        (folder / "advice.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
        (folder / "advice.html").write_text(html_view(out))
        print(f"written: {folder}/advice.md, advice.json, advice.html", file=sys.stderr)
    return 0
