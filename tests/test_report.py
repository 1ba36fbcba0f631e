"""The report from records with known figures: table numbers, intervals, Pareto members, error
bars and the dashboard in a real headless browser."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import report
from bench.cli import invoke
from bench.report import plots
from bench.records.store import write_atomic
from conftest import ROOT

T_975_2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)
ADDS_PARAMETERS = ("lora", "prompt_tuning", "prefix_tuning", "ia3", "adapter")  # the fixtures' totals: base + what these add


def record(method: str, seed: int, score: float | None, trainable: int, peak_mib: float, *, model: str = "minilm-l6",
           task: str = "sst2", status: str = "success", error: str | None = None, random: bool = False,
           sweep: str | None = "multirun/x", base_params: int = 1000, **method_cfg) -> dict:
    """A record shaped like the real ones, with the figures the report reads set by hand."""
    config = {"seed": seed, "model": {"name": model}, "task": {"name": task}, "train": {"lr": 1e-3, "max_steps": 100},
              "method": {"name": method, **method_cfg}, "results_dir": "somewhere"}
    rec = {"schema_version": 1, "run": {
        "id": f"{method}-{seed}-{json.dumps(method_cfg, sort_keys=True)}-{model}-{task}-{status}", "config_hash": "h", "model": model,
        "task": task, "method": method, "seed": seed, "sweep": sweep, "started_at": f"2026-01-01T00:00:{seed:02d}",
        "status": status, "error": error, "random_weights": random, "config": config}}
    if status != "success":
        return rec
    mib = 2**20
    rec.update({
        "params": {"trainable": trainable, "total": base_params + (trainable if method in ADDS_PARAMETERS else 0),
                   "percent": 100 * trainable / base_params},
        "memory": {"peak_bytes": peak_mib * mib, "breakdown": {"weights_bytes": 10 * mib, "gradients_bytes": 1 * mib,
                                                               "optimizer_state_bytes": 2 * mib,
                                                               "activations_and_other_bytes": (peak_mib - 13) * mib}},
        "speed": {"step_time_median_s": 0.5, "tokens_per_s": 100.0},
        "quality": {"accuracy": score, "main_metric": "accuracy"},
        "inference": {"model": {"batch_1": {"latency_per_example_s": 0.012}}, "base": {"batch_1": {"latency_per_example_s": 0.010}},
                      **({"merged": {"batch_1": {"latency_per_example_s": 0.010}}} if method == "lora" else {})},
        "storage": {"bytes": trainable * 4},
        "forgetting": {"measure": "representation_cosine", "delta": -0.01},
    })
    return rec


def known_records() -> list[dict]:
    recs = [record("full", s, sc, 1000, 900) for s, sc in enumerate([0.90, 0.91, 0.92])]
    recs += [record("lora", s, sc, 10, 300, r=8) for s, sc in enumerate([0.80, 0.82, 0.84])]
    recs += [record("lora", s, sc, 2, 290, r=1) for s, sc in enumerate([0.70, 0.74, 0.78])]
    recs += [record("lora", 0, 0.85, 40, 320, r=32), record("lora", 1, None, 0, 0, r=32, status="oom", error="OutOfMemoryError: CUDA")]
    recs += [record("bitfit", 0, 0.69, 5, 280)]  # dominated by lora r=1 (fewer params, higher score)
    recs += [record("prompt_tuning", 0, 0.60, 1, 600, num_virtual_tokens=20)]
    recs += [record("prefix_tuning", 0, None, 0, 0, status="failed", error="config: prefix tuning needs a decoder")]
    return recs


def test_points_mean_interval_and_seed_counts_match_hand_computation():
    runs = report.runs_frame(known_records())
    points = report.points_frame(runs).set_index("label")
    lora8 = points.loc["lora r=8"]
    assert lora8["seeds"] == 3 and lora8["score_mean"] == pytest.approx(0.82)
    # sd of (0.80, 0.82, 0.84) = 0.02; half-width = t(0.975, 2) * 0.02 / sqrt(3)
    assert lora8["score_ci95"] == pytest.approx(T_975_2 * 0.02 / math.sqrt(3), rel=1e-9)
    assert lora8["score_ci95"] == pytest.approx(0.049683, abs=1e-6)
    lora1 = points.loc["lora r=1"]
    assert lora1["score_ci95"] == pytest.approx(T_975_2 * 0.04 / math.sqrt(3), rel=1e-9)
    r32 = points.loc["lora r=32"]  # one success, one OOM: the success counts, the OOM is reported
    assert r32["seeds"] == 1 and r32["score_mean"] == 0.85 and math.isnan(r32["score_ci95"])
    assert r32["status"] == "1/2 success" and r32["reason"] == "OutOfMemoryError: CUDA"
    assert points.loc["prefix_tuning"]["status"] == "failed" and points.loc["prefix_tuning"]["seeds"] == 0


def test_pareto_front_members_by_params_and_by_memory():
    points = report.points_frame(report.runs_frame(known_records()))
    by_label = dict(zip(points["point"], points["label"]))
    front = [by_label[p] for p in report.pareto_front(points, "trainable")]
    # params: prompt (1, .60), lora r=1 (2, .74), bitfit (5, .69) dominated, lora r=8 (10, .82),
    # lora r=32 (40, .85), full (1000, .91); the failed prefix point has no figures
    assert front == ["prompt_tuning", "lora r=1", "lora r=8", "lora r=32", "full"]
    front = [by_label[p] for p in report.pareto_front(points, "peak_bytes")]
    # memory: bitfit 280 (.69), lora r=1 290 (.74), lora r=8 300 (.82), lora r=32 320 (.85), prompt 600 (.60) dominated, full 900 (.91)
    assert front == ["bitfit", "lora r=1", "lora r=8", "lora r=32", "full"]


def test_tables_hold_the_numbers_and_failed_points_with_their_reason(tmp_path: Path):
    runs = report.runs_frame(known_records())
    points = report.points_frame(runs)
    report.write_tables(runs, points, tmp_path)
    md = (tmp_path / "tables" / "minilm-l6__sst2.md").read_text()
    assert "| lora r=8 | 0.001 untuned | 10 | 1.000 | 300 | 10 | 1.0 | 2.0 | 287 | 0.500 | 100 | 0.820 ± 0.050 | 3 | 12.00 | 1.20 | 0.00 | -0.0100 | success |" in md
    assert "| full | 0.001 untuned | 1,000 | 100.000 | 900 |" in md and "0.910 ± 0.025 | 3 |" in md  # sd 0.01 -> 4.3027 * 0.01 / 1.732 = 0.0248
    assert "| prefix_tuning |" in md and "failed: config: prefix tuning needs a decoder |" in md
    assert "1/2 success: OutOfMemoryError: CUDA" in md
    with open(tmp_path / "tables" / "minilm-l6__sst2.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert rows["lora r=1"]["accuracy (mean ± 95% CI)"] == "0.740 ± 0.099" and rows["lora r=1"]["seeds"] == "3"
    assert len(list(csv.DictReader(open(tmp_path / "tables" / "runs.csv")))) == len(known_records())


def test_rank_plot_error_bars_are_the_intervals_and_full_is_the_reference_line():
    points = report.points_frame(report.runs_frame(known_records()))
    fig = plots.rank_vs_score(points)
    ax = fig.axes[0]
    container = ax.containers[0]
    xs, ys = (list(v) for v in container.lines[0].get_data())
    assert xs == [1.0, 8.0, 32.0] and ys == pytest.approx([0.74, 0.82, 0.85])
    segments = container.lines[2][0].get_segments()
    halves = [(seg[1][1] - seg[0][1]) / 2 for seg in segments]
    assert halves == pytest.approx([T_975_2 * 0.04 / math.sqrt(3), T_975_2 * 0.02 / math.sqrt(3), 0.0], rel=1e-9)
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    reference = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(reference) == 1 and reference[0].get_ydata()[0] == pytest.approx(0.91)
    assert plots.rank_vs_score(points[points["method.r"] != 1].loc[lambda p: p["method.r"] != 32]) is None  # one rank: no curve


def test_random_weight_runs_are_cost_only(tmp_path: Path):
    recs = [record("lora", s, 0.99, 10, 100, model="tiny-bert", random=True, r=r) for s in (0, 1) for r in (1, 2)]
    runs = report.runs_frame(recs)
    points = report.points_frame(runs)
    assert points["score_mean"].isna().all()
    drawn = plots.draw_all(points, tmp_path, runs)
    assert not any("score" in name or "curves" in name for name in drawn) and any(name.endswith("speed_memory") for name in drawn)
    report.write_tables(runs, points, tmp_path)
    text = (tmp_path / "tables" / "tiny-bert__sst2.md").read_text()
    assert "0.990" not in text and "(random weights)" in text and "cost only" in text
    assert "Majority-class baseline" not in text  # a cost-only table has no quality to compare


def test_training_curves_average_each_points_seeds(tmp_path: Path):
    """The curves figure: one line per point, the mean over seeds of the periodic dev scores and
    the final score at the last step; the loss panel plots the running mean of the loss."""
    recs = []
    for seed, (mid, final) in enumerate([(0.6, 0.80), (0.7, 0.90)]):
        rec = record("lora", seed, final, 10, 100, r=4)
        rec["curve"] = [{"step": s, "loss": 1.0 / s, **({"eval": {"accuracy": mid}} if s == 5 else {})} for s in range(1, 11)]
        recs.append(rec)
    recs.append(record("full", 0, 0.95, 1000, 900))  # no curve: left out of the figure
    runs = report.runs_frame(recs)
    assert runs.set_index("method").loc["lora", "eval_curve"].iloc[0] == [(5, 0.6), (10, 0.80)]
    fig = plots.curves(runs)
    score_ax, loss_ax = fig.axes
    (line,) = score_ax.get_lines()
    assert list(line.get_xdata()) == [5, 10] and list(line.get_ydata()) == pytest.approx([0.65, 0.85])
    assert "(2 seeds)" in line.get_label()
    assert loss_ax.get_lines()[0].get_ydata()[1] == pytest.approx((1.0 + 0.5) / 2)
    drawn = plots.draw_all(report.points_frame(runs), tmp_path, runs)
    assert "minilm-l6__sst2__curves" in drawn and all(p.exists() for p in drawn["minilm-l6__sst2__curves"])
    report.write_tables(runs, report.points_frame(runs), tmp_path)
    assert "eval_curve" not in (tmp_path / "tables" / "runs.csv").read_text().splitlines()[0]


def _write(records: list[dict], folder: Path) -> None:
    for rec in records:
        write_atomic(folder / f"{rec['run']['id']}.json", rec)


def prompt_records() -> list[dict]:
    recs = []
    for model, size, full_score, pt_scores in (("small", 1000, 0.90, [0.60, 0.65]), ("large", 100000, 0.93, [0.85, 0.90])):
        recs.append(record("full", 0, full_score, size, 500, model=model, base_params=size))
        for length, sc in zip((5, 20), pt_scores):
            recs.append(record("prompt_tuning", 0, sc, length * 8, 400, model=model, base_params=size, num_virtual_tokens=length))
    return recs


@pytest.mark.system
def test_the_command_writes_tables_plots_and_a_dashboard(tmp_path: Path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    _write(known_records(), a)
    _write(prompt_records(), b)
    proc = subprocess.run([sys.executable, "-m", "bench", "report", f"results_dir={a},{b}", f"output_dir={out}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{len(known_records()) + len(prompt_records())} records" in proc.stdout
    names = {p.name for p in (out / "plots").iterdir()}
    for stem in ("minilm-l6__sst2__rank_vs_score", "minilm-l6__sst2__params_vs_score", "minilm-l6__sst2__memory_vs_score",
                 "minilm-l6__sst2__speed_memory", "minilm-l6__sst2__inference", "all-models__sst2__prompt_length",
                 "all-models__sst2__prompt_scale"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
        assert (out / "plots" / f"{stem}.png").stat().st_size > 10_000
    page = (out / "dashboard.html").read_text()
    assert "cdn" not in page.lower().split("<script>")[0] and 'src="http' not in page  # nothing fetched from the network
    bad = subprocess.run([sys.executable, "-m", "bench.report", f"results_dir={tmp_path / 'nope'}"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "results_dir=" in bad.stderr


def test_prompt_scale_plot_has_full_and_each_prompt_length_across_sizes():
    points = report.points_frame(report.runs_frame(prompt_records()))
    assert dict(zip(points["model"], points["model_size"])) == {"small": 1000.0, "large": 100000.0}
    fig = plots.prompt_scale(points)
    lines = {c.get_label(): list(c.lines[0].get_data()[1]) for c in fig.axes[0].containers}
    assert lines == {"full fine-tuning": pytest.approx([0.90, 0.93]), "prompt tuning, P=5": pytest.approx([0.60, 0.85]),
                     "prompt tuning, P=20": pytest.approx([0.65, 0.90])}


def test_a_configuration_is_one_line_across_sizes_when_one_size_ran_more_lengths(tmp_path: Path):
    """The small model also ran P=1, so its per-model labels name P while the large model's do
    not; the views across sizes must still join P=20 at both sizes into one line and one column."""
    recs = prompt_records() + [record("prompt_tuning", 0, 0.55, 8, 400, model="small", base_params=1000, num_virtual_tokens=1)]
    recs = [r for r in recs if not (r["run"]["model"] == "large" and r["run"]["config"]["method"].get("num_virtual_tokens") == 5)]
    points = report.points_frame(report.runs_frame(recs))
    assert set(points.loc[points["model"] == "large", "label"]) == {"full", "prompt_tuning"}  # one length there: P not named
    fig = plots.prompt_scale(points)
    lines = {c.get_label(): list(c.lines[0].get_data()[1]) for c in fig.axes[0].containers}
    assert lines == {"full fine-tuning": pytest.approx([0.90, 0.93]), "prompt tuning, P=1": pytest.approx([0.55]),
                     "prompt tuning, P=5": pytest.approx([0.60]), "prompt tuning, P=20": pytest.approx([0.65, 0.90])}
    assert list(lines) == ["full fine-tuning", "prompt tuning, P=1", "prompt tuning, P=5", "prompt tuning, P=20"]  # lengths in numeric order
    from bench.report.tables import scale_table

    header, _, small, large = [line for line in scale_table(points).splitlines() if line.startswith("|")]
    assert header.split(" | ")[3:] == ["full fine-tuning", "prompt_tuning P=1 (gap)", "prompt_tuning P=5 (gap)", "prompt_tuning P=20 (gap) |"]
    assert small.endswith("| 0.650 (1) (+0.250) |") and large.endswith("|  |  | 0.900 (1) (+0.030) |")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.system
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_dashboard_in_a_headless_browser_loads_renders_and_filters(tmp_path: Path):
    """The page of the synthetic records: every point a row whose cells are the Markdown table's
    texts (one renderer), forgetting named by its measure, the query filtering rows, the scatter's
    front the same as the report's, and no console error. The controls: tests/test_dashboard.py."""
    playwright = pytest.importorskip("playwright.sync_api")
    failed = record("lora", 0, None, 0, 0, task="rte", status="failed", error="boom", r=8)  # a model and task with nothing to plot
    _write(known_records() + prompt_records() + [failed], tmp_path / "records")
    made = report.build([tmp_path / "records"], tmp_path / "out")
    page_path = tmp_path / "out" / "dashboard.html"
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(page_path.as_uri())
        page.wait_for_selector("body[data-ready=yes]", timeout=20_000)
        total = made["points"]
        assert page.locator("#points tbody tr").count() == total
        page.screenshot(path=str(tmp_path / "out" / "dashboard.png"), full_page=True)
        page.fill(".dt-search input", "OutOfMemory")
        assert page.locator("#points tbody tr").count() == 1
        headers = page.locator("#points thead th").all_inner_texts()
        assert "forgetting: repr. cosine Δ (< 0 drifted)" in headers and not any(h.startswith("forgetting Δ") for h in headers)
        assert "accuracy (mean ± 95% CI)" in headers and "score" not in " ".join(headers)
        # the same renderer as the Markdown table: its texts, in the columns the dashboard shows
        page.fill(".dt-search input", "lora r=8")
        cells = page.locator("#points tbody tr").first.locator("td").all_inner_texts()
        md = (tmp_path / "out" / "tables" / "minilm-l6__sst2.md").read_text().splitlines()
        md_headers = [c.strip() for c in md[2].strip("|").split("|")]
        md_row = dict(zip(md_headers, [c.strip() for c in next(line for line in md if line.startswith("| lora r=8 |")).strip("|").split("|")]))
        shown = dict(zip(headers, cells))
        assert {h: shown[h] for h in md_headers if h in shown} == {h: md_row[h] for h in md_headers if h in shown}
        assert len([h for h in md_headers if h in shown]) >= len(md_headers) - 4  # the memory parts are hidden until asked for
        page.select_option("#group", label="minilm-l6 on sst2")
        assert page.evaluate("window.DASH.front") == ["prompt_tuning", "lora r=1", "lora r=8", "lora r=32", "full"]  # bitfit is dominated
        page.select_option("#group", label="minilm-l6 on rte")
        assert page.locator("#front").inner_text().startswith("Nothing to plot for minilm-l6 on rte")
        browser.close()
    assert errors == []


@pytest.mark.system
def test_report_on_thousands_of_records_prints_its_time(tmp_path: Path):
    """Not a timing assertion (shared machines are noisy): it builds the report from 3,000 records
    and prints how long that took."""
    records = []
    for i in range(3000):
        r = [1, 2, 4, 8, 16, 32, 64][i % 7]
        records.append(record("lora", i // 7, 0.7 + 0.01 * (i % 7), r * 10, 300 + r, r=r, task=f"task{i % 5}"))
    _write(records, tmp_path / "records")
    start = time.perf_counter()
    made = report.build([tmp_path / "records"], tmp_path / "out")
    seconds = time.perf_counter() - start
    assert made["records"] == 3000 and made["points"] == 35
    print(f"report: 3,000 records -> {made['points']} points, {len(made['files'])} files in {seconds:.1f} s")


def test_wandb_report_run_holds_the_table_and_the_plots(tmp_path: Path, monkeypatch):
    """wandb=true: one offline run of job_type 'report' in the records' sweep group, holding the
    comparison table (one row per point) and the plots."""
    from wandb_log import read_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    _write(known_records(), tmp_path / "records")
    made = report.build([tmp_path / "records"], tmp_path / "out", to_wandb=True)
    assert made["wandb"]["error"] is None
    wb = read_offline_run(made["wandb"]["dir"])
    assert wb["run"]["job_type"] == "report" and wb["run"]["run_group"] == "multirun/x"
    logged = wb["summary"]  # nested values come back flattened: comparison/_type, plots/<name>/_type, ...
    assert logged["comparison/_type"] == "table-file" and logged["comparison/nrows"] == made["points"]
    table = json.loads((Path(made["wandb"]["dir"]) / "files" / logged["comparison/path"]).read_text())
    labels = table["columns"].index("label")
    assert sorted(r[labels] for r in table["data"]) == sorted(report.points_frame(report.runs_frame(known_records()))["label"])
    images = {k.rsplit("/", 1)[0] for k, v in logged.items() if k.startswith("plots/") and k.endswith("/_type") and v == "image-file"}
    assert images == {f"plots/{name}" for name in made["plots"]}


def test_bad_report_arguments_name_the_key_and_the_valid_ones(tmp_path, capsys):


    assert invoke(["report", f"results_dir={tmp_path}", "ouput_dir=b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ouput_dir=") and "output_dir" in err and len(err.strip().splitlines()) == 1
    assert invoke(["report", "results"]) == 2
    assert "config error: argument='results'" in capsys.readouterr().err
    assert invoke(["report", f"results_dir={tmp_path}", "wandb=yes"]) == 2  # booleans are true/false, never silently false
    assert "config error: wandb='yes'" in capsys.readouterr().err


def test_duration_line_sums_run_times_and_spans_the_wall_clock():
    recs = [record("lora", s, 0.8, 10, 100, r=4) for s in range(2)]
    recs[0]["run"].update(started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:10:00+00:00")
    recs[1]["run"].update(started_at="2026-01-01T00:05:00+00:00", finished_at="2026-01-01T00:20:00+00:00")  # overlaps the first
    line = report.duration_line(report.runs_frame(recs))
    assert line == "2 runs: 25.0 min of run time, 20.0 min of wall clock from the first start to the last finish."


# ---------------------------------------------------------------- collapse and malformed files
def test_classification_metrics_say_when_every_prediction_is_one_label():
    from bench.measure import metrics

    collapsed = metrics.classification([1] * 8, [1, 1, 1, 1, 1, 0, 0, 0], num_labels=2)  # 5 of 8 gold labels are 1
    assert collapsed["accuracy"] == collapsed["majority_baseline"] == 0.625 and collapsed["mcc"] == 0.0
    assert collapsed["predicted_classes"] == 1 and collapsed["constant_predictions"] is True
    learned = metrics.classification([1, 1, 0, 2, 1, 0], [1, 1, 0, 2, 2, 2], num_labels=3)
    assert learned["majority_baseline"] == 0.5 and learned["predicted_classes"] == 3 and learned["constant_predictions"] is False


def collapsed_records() -> list[dict]:
    """A LoRA run that predicted "True" for every example (accuracy = the majority share 0.628,
    MCC 0) beside full fine-tuning that learned, and an earlier record without the new keys."""
    recs = [record("full", 0, 0.81, 1000, 900, task="boolq"), record("lora", 0, 0.628, 10, 300, task="boolq", r=8),
            record("bitfit", 0, 0.70, 5, 280, task="boolq")]
    recs[0]["quality"].update(mcc=0.55, majority_baseline=0.628, predicted_classes=2, constant_predictions=False, num_examples=500)
    recs[1]["quality"].update(mcc=0.0, majority_baseline=0.628, predicted_classes=1, constant_predictions=True, num_examples=500)
    return recs  # recs[2] (bitfit) was written before records kept the baseline


def test_a_run_with_constant_predictions_is_flagged_and_tables_show_the_majority_baseline(tmp_path: Path):
    runs = report.runs_frame(collapsed_records())
    points = report.points_frame(runs).set_index("method")
    assert points.loc["lora", "flags"] == f"{report.CONSTANT} (1/1 seeds)" and points.loc["full", "flags"] == points.loc["bitfit", "flags"] == ""
    report.write_tables(runs, points.reset_index(), tmp_path)
    md = (tmp_path / "tables" / "minilm-l6__boolq.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["lora"].endswith(f"| success; {report.CONSTANT} (1/1 seeds) |")
    assert rows["full"].endswith("| success |") and rows["bitfit"].endswith("| success |")  # the record without the keys renders
    assert "Majority-class baseline of the eval split: accuracy 0.628 (500 examples)" in md
    one_line = {r["method"]: r for r in (report.row_of(rec) for rec in collapsed_records())}
    assert one_line["lora"]["status"] == f"success ({report.CONSTANT})" and "(majority-class baseline 0.628)" in one_line["lora"]["quality (main metric first)"]
    assert one_line["bitfit"]["status"] == "success"
    # only earlier records: the table still says where the baseline would be; a summarization table has none
    old = report.points_frame(report.runs_frame([collapsed_records()[2]]))
    assert report.baseline_line(old) == "Majority-class baseline of the eval split: not in these records (written before runs recorded it)."
    rouge = record("lora", 0, None, 10, 300, task="dialogsum", r=8)
    rouge["quality"] = {"rouge1": 0.3, "main_metric": "rouge1", "num_examples": 5}
    assert report.baseline_line(report.points_frame(report.runs_frame([rouge]))) is None


def test_the_report_skips_each_malformed_file_with_one_line_and_counts_them(tmp_path: Path, capsys):
    folder = tmp_path / "records"
    good = known_records()
    _write(good, folder)
    text = json.dumps(record("lora", 5, 0.8, 10, 300, r=2))
    broken = {"latin1.json": "é".encode("latin-1") + text.encode(),  # not UTF-8
              "oops.json": json.dumps({"schema_version": 1, "run": "oops"}).encode(),
              "nomodel.json": json.dumps({"schema_version": 1, "run": {k: v for k, v in json.loads(text)["run"].items() if k != "model"}}).encode(),
              "cut.json": text[: len(text) // 2].encode(),  # a record cut short
              "future.json": text.replace('"schema_version": 1', '"schema_version": 99').encode()}
    for name, data in broken.items():
        (folder / name).write_bytes(data)
    (folder / "cost-cpu.json").write_text(json.dumps([{"steps": 10}]))  # other tools' JSON beside the records: no line
    (folder / "notes.json").write_text(json.dumps({"keep": True}))
    assert invoke(["report", f"results_dir={folder}"]) == 0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == len(broken) + 1 and lines[-1] == f"report: skipped {len(broken)} file(s) that are not readable records"
    why = {name: next(line for line in lines if f"{folder / name}:" in line) for name in broken}
    assert "UnicodeDecodeError" in why["latin1.json"] and "run is str, not an object" in why["oops.json"]
    assert "run.model is missing" in why["nomodel.json"] and "JSONDecodeError" in why["cut.json"]
    assert "schema_version is 99, this version reads 1" in why["future.json"]
    assert out.count("\n| minilm-l6 | sst2 |") == len(good)  # every good record is a row
    assert len(report.read([folder])) == len(good)


# ---------------------------------------------------------------- the package's shape
def _report_imports() -> dict[str, set[str]]:
    """bench.report's modules -> the bench.report modules each imports, at the top or inside a
    function (a function-level import is still an edge: a cycle dodged by a late import is a cycle)."""
    import ast

    folder = ROOT / "bench" / "report"
    modules = {p.stem: p for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "bench.report":
                edges |= {a.name if a.name in modules else "__init__" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench.report."):
                edges.add(node.module.removeprefix("bench.report."))
            elif isinstance(node, ast.Import):
                edges |= {a.name.removeprefix("bench.report.") for a in node.names if a.name.startswith("bench.report.")}
        graph[name] = edges - {name}
    return graph


def test_the_report_package_has_no_import_cycle_and_frames_depends_on_nothing_of_it():
    graph = _report_imports()
    assert {"__init__", "__main__", "cli", "frames", "tables", "plots", "dashboard", "wandb_log"} <= set(graph)
    assert graph["frames"] == set(), graph["frames"]  # the data model: records in, frames out
    path: list[str] = []

    def visit(node: str, seen: set[str]) -> None:
        assert node not in path, f"import cycle: {' -> '.join(path[path.index(node):] + [node])}"
        if node in seen:
            return
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, seen)
        seen.add(path.pop())

    done: set[str] = set()
    for module in sorted(graph):
        visit(module, done)
    old = [p.name for p in (ROOT / "bench").glob("*.py") if p.stem in ("report", "plots", "dashboard")]
    assert old == [], f"the report's old modules are back beside the package: {old}"


@pytest.mark.parametrize("module", ["frames", "tables", "plots", "dashboard", "wandb_log", "cli"])
def test_each_report_module_imports_first_in_a_fresh_interpreter(module: str):
    """Imported first, alone, each module loads (an import cycle fails exactly here); frames
    imports nothing of the report but the package it lives in."""
    code = (f"import sys, bench.report.{module}; "
            "print(sorted(m for m in sys.modules if m.startswith('bench.report.')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"bench.report.{module}" in proc.stdout


# ---------------------------------------------------------------- no method names in the report
def test_a_new_methods_rank_sweep_is_labelled_by_the_knobs_that_vary_and_sizes_need_no_method_list():
    """A method the report has never heard of: its runs on one model and task are told apart by
    the method-config keys that differ among them (short names for the known keys, the key itself
    otherwise), a knob an older record lacks does not split a label, and the model's size is the
    smallest total of its runs."""
    recs = [record("full", 0, 0.90, 1000, 900)]
    for r in (4, 8):
        for seed in (0, 1):
            rec = record("adalora", seed, 0.8 + r / 100, 10 * r, 300, r=r, init_r=12, **({"orth_reg": 0.5} if r == 8 else {}))
            rec["params"]["total"] = 1000 + 10 * r  # it adds its matrices to the base model
            recs.append(rec)
    recs += [record("sparse", 0, 0.7, 50, 300, density=d, pattern="block") for d in (0.1, 0.2)]  # a key with no short name
    runs = report.runs_frame(recs)
    points = report.points_frame(runs)
    assert sorted(points["label"]) == ["adalora r=4", "adalora r=8", "full", "sparse density=0.1", "sparse density=0.2"]  # orth_reg: only the r=8 records have it
    assert set(points["model_size"]) == {1000.0}  # full's total; adalora's runs add parameters, so they are larger
    fig = plots.rank_vs_score(points)  # the rank figure reads the `r` knob, whichever method has it
    (container,) = fig.axes[0].containers
    assert list(container.lines[0].get_xdata()) == [4.0, 8.0] and container.get_label().startswith("adalora")
    assert [line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"] == [pytest.approx(0.90)]


def test_forgetting_is_named_by_its_measure_and_two_measures_never_share_a_column(tmp_path: Path):
    """A decoder's LM-loss delta (> 0: it forgot) and a classifier's representation-cosine delta
    (< 0: it drifted) read a negative number oppositely: each has its own column, in the tables and
    on the dashboard, named by its measure."""
    from bench.report import tables

    decoder = [record("lora", s, 0.3, 10, 300, model="smollm2-135m", r=8) for s in (0, 1)]
    for rec in decoder:
        rec["forgetting"] = {"measure": "lm_loss", "delta": 0.25}
    runs = report.runs_frame(known_records() + decoder)
    points = report.points_frame(runs)
    report.write_tables(runs, points, tmp_path)
    classifier_md = (tmp_path / "tables" / "minilm-l6__sst2.md").read_text()
    decoder_md = (tmp_path / "tables" / "smollm2-135m__sst2.md").read_text()
    assert "forgetting: repr. cosine Δ (< 0 drifted)" in classifier_md and "LM loss" not in classifier_md
    assert "| forgetting: LM loss Δ (> 0 forgot) |" in decoder_md and "| 0.2500 |" in decoder_md and "cosine" not in decoder_md
    columns = tables.point_columns(points, "dashboard")
    forgetting = [c for c in columns if c.header.startswith("forgetting")]
    assert [c.header for c in forgetting] == ["forgetting: LM loss Δ (> 0 forgot)", "forgetting: repr. cosine Δ (< 0 drifted)"]
    by_model = {p["model"]: [c.text(p) for c in forgetting] for _, p in points[points["method"] == "lora"].iterrows()}
    assert by_model["smollm2-135m"] == ["0.2500", ""] and by_model["minilm-l6"] == ["", "-0.0100"]


def test_no_method_name_is_written_in_the_report_code():
    """The report knows methods only by their records: no method's config name appears in its code
    as a string (the labels, sizes and figures read method configs and parameter counts)."""
    import re

    names = {p.stem for p in (ROOT / "conf" / "method").glob("*.yaml")}
    for path in (ROOT / "bench" / "report").glob("*.py"):
        code = path.read_text().split('PAGE = """')[0]  # the page's HTML and JavaScript ("none" is a CSS value there)
        quoted = set(re.findall(r"""["']([a-z_0-9]+)["']""", code))
        assert not quoted & names, f"{path.name} names methods: {sorted(quoted & names)}"


def test_the_scale_table_gives_each_sizes_gap_to_full_fine_tuning(tmp_path: Path):
    """From the committed tuned prompt-sizes records: one row per model, smallest first, with its
    family, full fine-tuning's score and prompt tuning's with the gap (full minus it)."""
    from bench.records.store import load_records
    from bench.report.tables import scale_table

    records = load_records(ROOT / "results" / "reference" / "prompt-sizes-tuned")
    runs = report.runs_frame(records)
    text = scale_table(report.points_frame(runs[runs["role"] != "trial"]))
    rows = [line for line in text.splitlines() if line.startswith("| minilm") or line.startswith("| smollm2")]
    assert [r.split(" | ")[0] for r in rows] == ["| minilm-l6", "| smollm2-135m"]
    assert "| encoder |" in rows[0] and "| decoder |" in rows[1]
    assert rows[0].endswith("0.774 ± 0.024 (3) (+0.057) |") and rows[1].endswith("0.723 ± 0.050 (3) (+0.139) |")
    assert scale_table(report.points_frame(runs[(runs["role"] != "trial") & (runs["model"] == "minilm-l6")])) is None  # one size


def test_two_searches_of_one_point_across_hash_rules_give_one_tuned_row():
    """prompt-ladder keeps MiniLM full fine-tuning's finals of the first search (2026-12-01, hashed
    before speed.count_flops existed), prompt-sizes-tuned those of the halving search (2026-12-06):
    read together, they are one point and one study, the earlier search's finals are left out as
    stale, and the row is the newer search's 3 seeds."""
    from bench.records.store import load_records
    from bench.report.frames import points_frame, runs_frame, stale_finals

    folders = [ROOT / "results" / "reference" / name for name in ("prompt-ladder", "prompt-sizes-tuned")]
    records = [r for d in folders for r in load_records(d) if r["run"]["model"] == "minilm-l6" and r["run"]["method"] == "full"]
    runs = runs_frame(records)
    finals = runs[runs["role"] == "final"]
    assert len(finals) == 6 and finals["point"].nunique() == 1 and finals["study"].nunique() == 1
    stale = stale_finals(runs)
    assert sorted(stale) == sorted(finals.loc[finals["started_at"].astype(str) < "2026-12-02", "id"])
    points = points_frame(runs[(runs["role"] != "trial") & ~runs["id"].isin(stale)])
    assert len(points) == 1 and points.iloc[0]["seeds"] == 3 and points.iloc[0]["selection"]["pruner"] == "halving"
