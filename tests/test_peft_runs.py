"""python -m bench.harness.peft_runs: PEFT's published runs mapped to the estimator's inputs, a clear error
for a folder that is not PEFT's, and a row per mapped run. Real result files are read from
../shared/peft-method-comparison when present; the command itself is checked on made-up records."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from bench.cli import invoke
from bench.harness import peft_runs
from bench.errors import ConfigError

SHARED = peft_runs.DEFAULT_DIR
needs_shared = pytest.mark.skipif(not (SHARED / "results").is_dir(), reason=f"PEFT's results are not at {SHARED}")


def _record(name: str) -> dict:
    return json.loads((SHARED / "results" / f"{name}.json").read_text())


@needs_shared
def test_a_few_result_files_map_to_our_methods_and_counts():
    lora = peft_runs.map_run("lora", _record("lora--llama-3.2-3B-rank32"))
    assert (lora.method, lora.settings["r"], lora.settings["alpha"], lora.settings["target_modules"]) == ("lora", 32, 64.0, ["q_proj", "v_proj"])
    assert lora.train["batch_size"] == 4 and lora.train["max_seq_length"] == 768 and lora.train["use_gc"] is False
    ia3 = peft_runs.map_run("ia3", _record("ia3--llama-3.2-3B-default"))
    assert ia3.settings == {"target_modules": ["down_proj", "k_proj", "v_proj"], "feedforward_modules": ["down_proj"]}
    assert peft_runs.map_run("full", _record("full-finetuning--llama-3.2-3B-lr_0.00001")).method == "full"
    with pytest.raises(ValueError, match="ADAPTION_PROMPT: no method of ours"):
        peft_runs.map_run("adaptionprompt", _record("adaptionprompt--llama-3.2-3B-lr_0.0005"))
    row = peft_runs.compare(lora)
    assert row["trainable_ours"] == row["trainable_peft"] == 9_175_040  # 28 x (32 x (3072 + 3072) + 32 x (3072 + 1024))
    assert row["measured_reserved_peak_bytes"] == 22_292_725_760
    assert 0.9 <= row["ratio"] <= 1.1, row["ratio"]  # the README's claim for LoRA at 768 tokens
    prompt = peft_runs.compare(peft_runs.map_run("prompt", _record("prompt_tuning--llama-3.2-3B-default")))
    assert prompt["trainable_ours"] == prompt["trainable_peft"] == 200 * 3072


@needs_shared
def test_every_peft_type_a_method_yaml_declares_maps_to_it_with_the_runs_config():
    """The generic mapping: a YAML that declares the run's peft_type, method.config = the run's peft
    config (fields its config class accepts, less the run's own); LoRA's variants by optimizer and
    settings; at least 50 of PEFT's 63 runs map (5 more fail on the meta device, said in the table)."""
    mapped, skipped = {}, {}
    for name, record in peft_runs.load_results(SHARED):
        try:
            mapped[name] = peft_runs.map_run(name, record)
        except ValueError as exc:
            skipped[name] = str(exc)
    assert len(mapped) >= 55, sorted(skipped)
    methods = {name: m.method for name, m in mapped.items()}
    assert methods["lora--llama-3.2-3B-rank32"] == methods["lora--llama-3.2-3B-rank64-rslora"] == "lora"  # plain LoRA: the hand-written method
    assert methods["lora--llama-3.2-3B-rank32-dora"] == "dora" and methods["lora--llama-3.2-3B-rank32-lorafa"] == "lorafa"
    assert methods["ln_tuning--llama-3.2-3B-default"] == "ln_tuning" and methods["miss--llama-3.2-3B-bat"] == "miss"
    vera = mapped["vera--llama-3.2-3B-default"].settings["config"]
    assert vera["r"] == 256 and vera["target_modules"] == ["v_proj", "q_proj"] and "task_type" not in vera and "peft_version" not in vera
    adalora = mapped["adalora--llama-3.2-3B-rank32"]
    assert "rank_pattern" not in adalora.settings["config"] and "written back" in adalora.note  # AdaLoRA's end-of-training budget
    assert "mica" in skipped["lora--llama-3.2-3B-rank32-mica"] and "P_TUNING" in skipped["ptuning--llama-3.2-3B-default"]
    with pytest.raises(ValueError, match="optimizer 'SGD'"):
        peft_runs.map_method({"peft_type": "VERA"}, {"optimizer_type": "SGD"})


def test_a_run_whose_method_peft_cannot_apply_on_the_meta_device_is_listed_with_why(monkeypatch):
    def fails(mapped):
        raise NotImplementedError("Cannot copy out of meta tensor; no data!")

    monkeypatch.setattr(peft_runs, "_prepared", fails)
    mapped = peft_runs.Mapped("svd", "OSF", "osf", {}, train={"batch_size": 4, "max_seq_length": 8}, info={})
    with pytest.raises(ValueError, match="osf: not estimated: peft's init computes on the weights.*Cannot copy out of meta"):
        peft_runs.compare(mapped)


def test_a_folder_without_peft_results_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="peft_dir=.*method_comparison/MetaMathQA"):
        peft_runs.load_results(tmp_path / "missing")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text('{"not": "peft"}')
    with pytest.raises(ConfigError, match="run_info and train_info"):
        peft_runs.load_results(tmp_path)
    assert invoke(["peft-runs", f"peft_dir={tmp_path / 'missing'}"]) == 2
    assert "config error: peft_dir=" in capsys.readouterr().err
    assert invoke(["peft-runs", f"peft_dir={tmp_path}", "seq_len=0"]) == 2
    assert invoke(["peft-runs", f"peft_dir={tmp_path}", "--seq-len", "8"]) == 2  # one argument style: key=value


def _made_up(peft_config: dict | None, trainable: int) -> dict:
    train = {"model_id": "meta-llama/Llama-3.2-3B", "dtype": "bfloat16", "max_seq_length": 768, "batch_size": 4, "compile": False,
             "use_gc": False, "use_amp": False, "optimizer_type": "AdamW", "attn_implementation": None}
    info = {"status": "success", "accelerator_memory_max": 22 * 2**30, "accelerator_memory_reserved_99th": 20 * 2**30,
            "num_trainable_params": trainable}
    return {"run_info": {"train_config": train, "peft_config": peft_config}, "train_info": info}


def test_the_command_prints_a_row_per_mapped_run_and_lists_the_rest(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    lora = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "bias": "none"}
    runs = {"lora-r8": _made_up(lora, 28 * 8 * (6144 + 4096)), "lora-r8-wrong-count": _made_up(lora, 1),
            "adaption": _made_up({"peft_type": "ADAPTION_PROMPT"}, 1)}
    runs["gc"] = copy.deepcopy(runs["lora-r8"])
    runs["gc"]["run_info"]["train_config"]["use_gc"] = True
    for name, record in runs.items():
        (results / f"{name}.json").write_text(json.dumps(record))
    out = tmp_path / "out"
    assert invoke(["peft-runs", f"peft_dir={tmp_path}", f"output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ") and line.count("|") > 10]
    assert len(rows) == 1 + 3  # header + the three LoRA runs
    assert "- adaption: ADAPTION_PROMPT: no method of ours computes it" in printed
    table = {r["run"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert sorted(table) == ["gc", "lora-r8", "lora-r8-wrong-count"]
    assert [table[n]["trainable_match"] for n in ("gc", "lora-r8", "lora-r8-wrong-count")] == ["yes", "yes", "NO"]
    assert float(table["gc"]["predicted_gib"]) < float(table["lora-r8"]["predicted_gib"])  # checkpointing keeps less
    assert (out / "table.md").read_text() == printed


@needs_shared
def test_external_records_are_rows_the_report_can_show():
    from bench.report.frames import points_frame, runs_frame

    records = peft_runs.external_records(SHARED)
    frame = runs_frame(records)
    assert len(frame) == len(peft_runs.load_results(SHARED)) and frame["model"].str.endswith("(PEFT, external)").all()
    lora = frame[frame["id"] == "peft:lora--llama-3.2-3B-rank32"].iloc[0]
    assert (lora["method"], lora["trainable"], lora["peak_bytes"]) == ("lora", 9_175_040, 22_292_725_760)
    assert 0 < lora["score"] < 1 and records[0]["run"]["source"].startswith("external: ")
    assert len(points_frame(frame)) > 0


@pytest.mark.system
@needs_shared
def test_the_report_shows_peft_runs_beside_ours_marked_external(tmp_path):
    """`python -m bench.report ... external=DIR`: PEFT's runs get their own table (named after
    their hub id, `/` and all), next to ours, in the same report."""
    from bench.cli import invoke
    from bench.report.frames import file_stem

    ours = tmp_path / "records"
    ours.mkdir()
    quickstart = sorted((Path(__file__).resolve().parent.parent / "results" / "reference" / "quickstart").glob("*.json"))[:1]
    (ours / quickstart[0].name).write_text(quickstart[0].read_text())
    assert invoke(["report", f"results_dir={ours}", f"output_dir={tmp_path / 'out'}", f"external={SHARED}"]) == 0
    tables = {p.name for p in (tmp_path / "out" / "tables").glob("*.md")}
    assert "meta-llama-Llama-3-2-3B-PEFT-external__metamathqa-gsm8k.md" in tables and len(tables) == 2
    assert "(PEFT, external)" in (tmp_path / "out" / "tables" / "meta-llama-Llama-3-2-3B-PEFT-external__metamathqa-gsm8k.md").read_text()
    assert file_stem("minilm-l6", "sst2") == "minilm-l6__sst2"  # our names stay as they were
    assert invoke(["report", f"results_dir={ours}", "external=/nonexistent"]) == 2


# Runs whose counts differ for a reason outside the mapping (said in the table's note and the report):
KNOWN_COUNT_GAPS = {
    "osf--llama-3.2-3B-rank128": "conf/method/osf.yaml's formula leaves out rank_pattern, which PEFT's run sets",
}
# Families whose median is outside 5% for a reason the table's notes give
KNOWN_OUTLIERS = {"osf": "peft 0.21 keeps other OSF buffers",
                  "boft": "about its fp32 permutation buffers above", "lorafa": "measured as LoRA; no input copy is kept"}


@pytest.mark.system
@needs_shared
def test_the_whole_table_maps_50_runs_with_peft_s_counts_and_medians_within_5_percent():
    """All 63 runs through the estimator (minutes): at least 50 rows, each one's counts (the meta
    model's and the method's formula) equal to PEFT's, every family's median within 5%, but for
    the gaps listed above."""
    rows, skipped = peft_runs.run_all(SHARED)
    assert len(rows) >= 50 and len(rows) + len(skipped) == len(peft_runs.load_results(SHARED))
    wrong = {r["run"]: (r["trainable_ours"], r["trainable_formula"], r["trainable_peft"]) for r in rows if not r["trainable_match"]}
    assert set(wrong) <= set(KNOWN_COUNT_GAPS), wrong
    off = {s["method"]: round(s["median"], 3) for s in peft_runs.summary(rows) if abs(s["median"] - 1) > 0.05}
    assert set(off) <= set(KNOWN_OUTLIERS), off
