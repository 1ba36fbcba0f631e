"""Figures that cannot mislead, and the dashboard a user steers: every metric named in the tables,
the majority-class baseline and constant-prediction runs on the plots, a zero on a log axis at a
marked floor, and the page's controls (axes and their Pareto front, columns, query, CSV, compare)
driven in a real headless browser on the committed reference records."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from bench import report
from bench.report import dashboard, plots, tables
from bench.report.frames import pareto_front
from conftest import ROOT
from test_report import collapsed_records, record

REFERENCE = ROOT / "results" / "reference"


def scored_records() -> list[dict]:
    """Two seeds each of full fine-tuning and LoRA with accuracy, F1 and MCC, and a base model
    evaluated as it is (no trainable parameters)."""
    recs = []
    for method, trainable, scores in (("full", 1000, [(0.90, 0.89, 0.80), (0.92, 0.91, 0.84)]),
                                      ("lora", 10, [(0.80, 0.78, 0.60), (0.84, 0.82, 0.68)])):
        for seed, (acc, f1, mcc) in enumerate(scores):
            rec = record(method, seed, acc, trainable, 300 if method == "lora" else 900, **({"r": 8} if method == "lora" else {}))
            rec["quality"].update(f1=f1, mcc=mcc, majority_baseline=0.55, num_examples=200)
            recs.append(rec)
    base = record("none", 0, 0.60, 0, 250)
    base["quality"].update(f1=0.5, mcc=0.1, majority_baseline=0.55, num_examples=200)
    return recs + [base]


def summarization_records() -> list[dict]:
    recs = []
    for method, trainable, rouge in (("full", 1000, (0.38, 0.12, 0.31, 0.33)), ("lora", 10, (0.30, 0.08, 0.25, 0.26))):
        rec = record(method, 0, None, trainable, 300, task="dialogsum", **({"r": 8} if method == "lora" else {}))
        rec["quality"] = dict(zip(("rouge1", "rouge2", "rougeL", "rougeLsum"), rouge), main_metric="rouge1", num_examples=50)
        recs.append(rec)
    return recs


# ---------------------------------------------------------------- tables: every metric, each named
def test_every_table_shows_each_metric_of_the_task_named(tmp_path: Path):
    runs = report.runs_frame(scored_records() + summarization_records())
    points = report.points_frame(runs)
    report.write_tables(runs, points, tmp_path)
    md = (tmp_path / "tables" / "minilm-l6__sst2.md").read_text()
    header = md.splitlines()[2]
    assert "| accuracy (mean ± 95% CI) | f1 (mean) | mcc (mean) | seeds |" in header and "score" not in header
    lora = next(line for line in md.splitlines() if line.startswith("| lora |"))
    assert "| 0.820 ± 0.254 | 0.800 | 0.640 | 2 |" in lora  # sd 0.0283 -> 12.706 * 0.0283 / 1.414 = 0.254; F1 and MCC their means
    rouge = (tmp_path / "tables" / "minilm-l6__dialogsum.md").read_text()
    assert "| rouge1 (mean ± 95% CI) | rouge2 (mean) | rougeL (mean) | rougeLsum (mean) |" in rouge
    assert "| 0.300 | 0.080 | 0.250 | 0.260 | 1 |" in rouge and "accuracy" not in rouge.split("\n\n")[1]
    # one table for every model and task (the dashboard's): a column per metric, never an unnamed "score"
    headers = [c.header for c in tables.point_columns(points, "dashboard")]
    assert [h for h in headers if "mean" in h] == ["accuracy (mean ± 95% CI)", "rouge1 (mean ± 95% CI)", "f1 (mean)", "mcc (mean)",
                                                   "rouge2 (mean)", "rougeL (mean)", "rougeLsum (mean)"]
    assert not any(h.startswith("score") for h in headers)


def test_a_metric_that_is_main_on_one_task_and_not_on_another_says_so():
    cola = record("lora", 0, 0.30, 10, 300, task="cola", r=8)
    cola["quality"].update(accuracy=0.70, main_metric="mcc", mcc=0.30)
    points = report.points_frame(report.runs_frame(scored_records() + [cola]))
    headers = [c.header for c in tables.point_columns(points, "dashboard")]
    assert "accuracy (mean; ± 95% CI where it is the main metric)" in headers and "mcc (mean; ± 95% CI where it is the main metric)" in headers


# ---------------------------------------------------------------- plots: baseline, constant predictions, zero on a log axis
def _line(ax, label: str):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_classification_plots_draw_the_majority_baseline_inside_the_axes_and_flag_constant_runs():
    points = report.points_frame(report.runs_frame(collapsed_records()))
    fig = plots.pareto(points, "trainable", "trainable parameters (log scale)")
    ax = fig.axes[0]
    base = _line(ax, "majority class (0.628)")
    assert list(base.get_ydata()) == [0.628, 0.628]
    low, high = ax.get_ylim()
    assert low < 0.628 < high
    (stuck,) = [c for c in ax.collections if c.get_label().startswith("constant predictions")]
    assert [tuple(xy) for xy in stuck.get_offsets()] == [pytest.approx((10.0, 0.628))]  # the LoRA run that predicted one label
    assert "accuracy" in ax.get_ylabel() and "higher is better" in ax.get_ylabel() and "accuracy" in ax.get_title()
    # an MCC plot draws MCC's 0; a summarization plot draws no baseline
    assert plots.baseline(points.assign(kind="classification"), "mcc") == (0.0, "constant predictions (MCC 0)")
    assert plots.baseline(report.points_frame(report.runs_frame(summarization_records())), "rouge1") is None


def test_the_rank_curve_and_the_training_curves_draw_the_baseline_too():
    recs = scored_records() + [record("lora", 0, 0.83, 40, 320, r=32)]
    recs[-1]["quality"].update(majority_baseline=0.55)
    for rec in recs:
        rec["curve"] = [{"step": s, "loss": 1.0 / s, **({"eval": {"accuracy": 0.7}} if s == 2 else {})} for s in range(1, 5)]
    runs = report.runs_frame(recs)
    fig = plots.rank_vs_score(report.points_frame(runs))
    assert list(_line(fig.axes[0], "majority class (0.550)").get_ydata()) == [0.55, 0.55]
    score_ax = plots.curves(runs).axes[0]
    assert _line(score_ax, "majority class (0.550)").get_ydata()[0] == 0.55 and score_ax.get_ylim()[0] < 0.55


def test_the_dashboards_rank_chart_draws_the_baseline_and_full_fine_tuning():
    recs = scored_records() + [record("lora", 0, 0.83, 40, 320, r=32)]
    recs[-1]["quality"].update(majority_baseline=0.55)
    (chart,) = dashboard.rank_figures(report.points_frame(report.runs_frame(recs)))
    lines = {a["text"]: s["y0"] for s, a in zip(chart["figure"]["layout"]["shapes"], chart["figure"]["layout"]["annotations"])}
    assert lines == {"full fine-tuning": pytest.approx(0.91), "majority class (0.550)": 0.55}


def test_a_zero_parameter_point_sits_at_a_marked_floor_of_the_log_axis():
    points = report.points_frame(report.runs_frame(scored_records()))
    assert plots.log_floor([0, 10, 1000]) == 1.0 and plots.log_floor([0, 250, 900]) == 10.0
    fig = plots.pareto(points, "trainable", "trainable parameters (log scale)")
    ax = fig.axes[0]
    drawn = {text.get_text(): text.xy for text in ax.texts if hasattr(text, "xy")}
    assert drawn["none"] == (1.0, 0.60)  # 0 parameters, on the floor a decade below lora's 10
    assert "trainable parameters = 0 (drawn at this floor)" in drawn
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":" and line.get_xdata()[0] == line.get_xdata()[1]] == [1.0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] < 1.0
    # the front starts at the free point: nothing costs less
    front = [p for p in pareto_front(points, "trainable")]
    assert dict(zip(points["point"], points["label"]))[front[0]] == "none"


# ---------------------------------------------------------------- the dashboard's data
def test_each_axis_is_named_with_its_unit_and_direction():
    runs = report.runs_frame(scored_records())
    points = report.points_frame(runs)
    axes = {a["key"]: a for a in dashboard.axes(points)}
    assert [k for k in axes if k.startswith("q:")] == ["q:accuracy", "q:f1", "q:mcc"]
    assert axes["q:accuracy"]["higher"] is True and axes["peak_bytes"] == {**axes["peak_bytes"], "unit": "MiB", "higher": False, "log": True}
    assert axes["tokens_per_s"]["higher"] is True and axes["step_time_s"]["higher"] is False
    assert axes["forgetting:representation_cosine"]["label"] == "forgetting: repr. cosine Δ (< 0 drifted)"
    data = {p["label"]: p for p in dashboard.point_data(points, runs, list(axes.values()))}
    assert data["lora"]["values"]["q:mcc"] == pytest.approx(0.64) and data["lora"]["values"]["peak_bytes"] == pytest.approx(300)
    assert data["none"]["values"]["trainable"] == 0 and data["lora"]["memory"]["optimizer_state_bytes"] == pytest.approx(2.0)
    assert dashboard.baselines(points) == {"accuracy": [0.55, "majority class (0.550)"], "mcc": [0.0, "constant predictions (MCC 0)"]}


def test_paired_differences_for_the_page_come_from_the_records_per_example_predictions():
    from bench.measure import significance

    records = report.read([REFERENCE / "glue-minilm-paired"])
    runs = report.runs_frame(records)
    points = report.points_frame(runs)
    found = dashboard.paired_differences(records, runs, points)
    assert found["metric"] == "accuracy" and found["left_out"] == [] and found["all_pairs"]
    ((a, row),) = found["pairs"].items()
    ((b, (diff, low, high, differs, seeds, examples)),) = row.items()
    by_method = {label: [r for r in records if r["run"]["method"] == label.split()[0]] for label in (a, b)}
    expected = significance.compare_records(by_method[a], by_method[b], "accuracy", (a, b))
    assert (diff, low, high, differs) == (expected.diff, expected.low, expected.high, expected.distinguishable)
    assert low <= diff <= high and (seeds, examples) == (3, 872)
    assert dashboard.paired_differences(report.read([REFERENCE / "dialogsum-smollm2"]), *_frames(REFERENCE / "dialogsum-smollm2")) is None


def _frames(folder: Path):
    runs = report.runs_frame(report.read([folder]))
    return runs, report.points_frame(runs)


def test_the_progress_line_names_each_number():
    from bench.run.progress import line

    text = line("train", 40, 200, "loss 0.6931, step time (median of last 20): 0.52 s", 21.2, 83.4)
    assert text == "train 40/200 done, loss 0.6931, step time (median of last 20): 0.52 s, elapsed 21 s, eta 83 s"
    source = (ROOT / "bench" / "run" / "train.py").read_text()
    assert 'step time (median of last 20): {statistics.median(result.step_times_s[-20:]):.2f} s' in source


# ---------------------------------------------------------------- the page in a browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.system
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_the_dashboard_is_steered_in_a_headless_browser(tmp_path: Path):
    """On the committed reference records (MiniLM on SST-2 with per-example predictions, SmolLM2 on
    DialogSum with a base model that trains nothing): choose axes and see the front follow, show and
    hide columns, query, download the CSV, and compare two methods with their paired difference."""
    playwright = pytest.importorskip("playwright.sync_api")
    folders = [REFERENCE / "glue-minilm-paired", REFERENCE / "dialogsum-smollm2"]
    records = report.read(folders)
    runs = report.runs_frame(records)
    points = report.points_frame(runs)
    page_path = dashboard.write(runs, points, {}, tmp_path / "dashboard.html", records=records)
    size_kb = page_path.stat().st_size / 1024
    assert size_kb < 8000, f"the page grew to {size_kb:,.0f} KB"
    columns = tables.point_columns(points, "dashboard")
    ordered = points.sort_values(["model", "task", "method", "trainable"], na_position="last")
    texts = [[t for t, _ in row] for row in tables.cells(columns, [p for _, p in ordered.iterrows()])]
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        fetched: list[str] = []  # anything beyond the file itself (and the blob it makes of DataTables) would need the network
        page.route("**/*", lambda route: (fetched.append(route.request.url), route.abort()) if not route.request.url.startswith(("file:", "blob:", "data:"))
                   else route.continue_())
        page.goto(page_path.as_uri())
        page.wait_for_selector("body[data-ready=yes]", timeout=20_000)
        assert page.locator("#points tbody tr").count() == len(points)

        # columns: the memory parts are hidden until asked for; lr can be hidden
        shown = lambda: page.locator("#points thead th").all_inner_texts()  # noqa: E731
        assert "grads MiB" not in shown() and "lr" in shown()
        page.click("button:has-text('Columns')")
        page.click(".dt-button-collection button:has-text('grads MiB')")
        page.click(".dt-button-collection button:has-text('lr')")
        page.keyboard.press("Escape")
        assert "grads MiB" in shown() and "lr" not in shown()

        # query: the rows whose text holds it, and the CSV holds exactly those rows and the columns shown
        page.fill(".dt-search input", "dialogsum")
        wanted = [row for row in texts if any("dialogsum" in t.lower() for t in row)]
        assert page.locator("#points tbody tr").count() == len(wanted) == 8
        with page.expect_download() as info:
            page.click("button:has-text('Download CSV')")
        rows = [r for r in csv.reader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8-sig"))) if r]
        visible = [i for i, c in enumerate(columns) if (c.key not in dashboard.HIDDEN or c.key == "gradients_mib") and c.key != "lr"]
        assert rows[0] == [columns[i].header for i in visible]
        assert sorted(rows[1:]) == sorted([row[i] for i in visible] for row in wanted)
        page.fill(".dt-search input", "")

        # the scatter: SmolLM2 on DialogSum, trainable params vs ROUGE-1; the base model (0 params) on the floor
        page.select_option("#group", label="smollm2-135m on dialogsum")
        mine = points[points["task"] == "dialogsum"]
        labels = dict(zip(mine["point"], mine["label"]))
        front = page.evaluate("window.DASH.front")
        assert front == [labels[k] for k in pareto_front(mine, "trainable")] and front[0] == "none"
        assert page.locator("#scatter .legendtext", has_text="trainable parameters = 0 (drawn at the log axis' floor)").count() == 1
        assert "lower is better" in page.locator("#scatter .g-xtitle").text_content()
        page.select_option("#x", "step_time_s")
        page.select_option("#y", "q:rouge2")
        front = page.evaluate("window.DASH.front")
        expected = [labels[k] for k in pareto_front(mine, "step_time_s", score="q_rouge2", higher=True)]
        assert sorted(front) == sorted(expected) and front != [labels[k] for k in pareto_front(mine, "trainable")]
        assert page.locator("#scatter .g-ytitle").text_content() == "rouge2 (F-measure, 0-1; higher is better)"
        assert page.locator("#front").inner_text().startswith(f"Pareto front ({len(expected)} of ")

        # compare on MiniLM / SST-2: the two methods' curves, costs and their paired difference
        page.select_option("#group", label="minilm-l6 on sst2")
        assert page.locator("#scatter .legendtext", has_text="majority class (0.509)").count() == 1
        assert page.locator("#compare-picks input:checked").count() == 2
        assert page.locator("#cmp-loss .scatterlayer .trace").count() == 2 and page.locator("#cmp-eval .scatterlayer .trace").count() == 3
        assert page.locator("#cmp-memory .barlayer .trace").count() == 4
        found = dashboard.paired_differences(records, runs, points[points["task"] == "sst2"])
        ((a, row),) = found["pairs"].items()
        ((b, (diff, low, high, differs, _, _)),) = row.items()
        cells = page.locator("#paired-table tbody tr").first.locator("td").all_inner_texts()
        sign = 1 if cells[0] == f"{a} − {b}" else -1
        assert cells[0] in (f"{a} − {b}", f"{b} − {a}")
        fmt = lambda v: f"{v:+.3f}".replace("-0.000", "+0.000")  # noqa: E731
        lo, hi = sorted((sign * low, sign * high))
        assert cells[1:4] == [fmt(sign * diff), f"[{fmt(lo)}, {fmt(hi)}]", "differs" if differs else "cannot tell"]
        page.locator("#compare-picks input").nth(0).uncheck()
        assert page.locator("#paired-table tbody tr").count() == 0
        browser.close()
    assert errors == [] and fetched == []
    print(f"dashboard: {size_kb:,.0f} KB")
