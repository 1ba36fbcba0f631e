"""python -m bench.measure.advise: memory, fit, step time and recorded quality per method, and the
recommendation; bad input is refused naming the field."""

from __future__ import annotations

import json

import pytest

from bench.cli import invoke
from bench.run.pipeline import run


@pytest.mark.parametrize("args,field", [(["memory_gib=-1"], "memory_gib"), ([], "memory_gib"), (["memory_gib=nan"], "memory_gib"),
                                        (["memory_gib=8", "model=nope"], "model"), (["memory_gib=8", "format=xml"], "format"),
                                        (["memory_gib=8", "train.bsz=2"], "train.bsz"), (["8"], "argument"),
                                        (["memory_gib=8", "methods=[lora,nope]"], "methods"), (["memory_gib=8", "methods=lora"], "methods")])
def test_bad_input_is_refused_naming_the_field(args, field, capsys):
    assert invoke(["advise", *args]) == 2
    assert f"config error: {field}=" in capsys.readouterr().err


def test_advice_from_the_estimator_and_the_records(cfg_factory, tmp_path, capsys):
    """A LoRA r=8 record of MiniLM (pretrained: random weights have no quality) gives LoRA r=8 its quality and every training method of
    this device a step time; the estimate is the estimator's; what does not fit is not advised."""
    rec = run(cfg_factory("model=minilm-l6", "method=lora", "method.r=8", f"results_dir={tmp_path / 'records'}", "train.max_steps=4"))
    assert rec["run"]["status"] == "success"
    common = ["model=minilm-l6", "task=embedded-sentiment", f"results_dir={tmp_path / 'records'}", "device=cpu", "format=json", "train.batch_size=4",
              "methods=[full,lora,prompt_tuning,none,ia3]"]  # the test's subset (every method: tests/test_all_methods.py estimates each)
    assert invoke(["advise", "memory_gib=1", *common, f"output_dir={tmp_path / 'advice'}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "advice" / "advice.json").read_text()) == out
    page = (tmp_path / "advice" / "advice.html").read_text()
    assert "Plotly.newPlot('peak'" in page and "<td>lora r=8</td>" in page and "Recommended: <b>lora r=8</b>" in page
    rows = {r["candidate"]: r for r in out["candidates"]}
    assert {"lora r=8", "lora r=32", "prompt_tuning num_virtual_tokens=20", "prompt_tuning num_virtual_tokens=100", "full", "none", "ia3"} == set(rows)
    lora = rows["lora r=8"]
    assert lora["fits"] and lora["peak_bytes"] == sum(lora["parts"].values()) > 0
    assert lora["quality"]["mean"] == pytest.approx(rec["quality"]["accuracy"]) and lora["quality"]["record_ids"] == [rec["run"]["id"]]
    assert rows["lora r=32"]["quality"] is None  # no record of r=32
    assert lora["step_time"]["from_record"] == rec["run"]["id"] and lora["step_time"]["seconds"] > 0
    assert rows["full"]["trainable"] > rows["lora r=32"]["trainable"] > lora["trainable"]
    assert out["recommended"] == ["lora r=8"]  # the one fitting candidate with a recorded quality
    assert invoke(["advise", "memory_gib=0.00001", *common]) == 0
    tight = json.loads(capsys.readouterr().out)
    assert tight["recommended"] == [] and not any(r["fits"] for r in tight["candidates"] if r.get("trainable"))


@pytest.mark.system
def test_a_config_only_8b_model_is_advised_from_the_estimator(capsys):
    assert invoke(["advise", "model=llama3-8b-config", "task=dialogsum", "memory_gib=24", "train.batch_size=4", "format=json",
                   "methods=[full,lora,bitfit,ia3,prompt_tuning,none]"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["candidate"]: r for r in out["candidates"]}
    assert not rows["full"]["fits"] and rows["lora r=8"]["fits"]  # 8B full fine-tuning needs its optimizer state: > 24 GiB
    assert rows["bitfit"]["refused"] and "no bias" in rows["bitfit"]["refused"]
    assert out["recommended"] and "full" not in out["recommended"]
    # the recommendation is the front of memory against the recorded quality (ROUGE-1: higher is better), among what fits
    scored = [r for r in rows.values() if r["fits"] and r.get("trainable") and r["quality"]]
    for name in out["recommended"]:
        mine = rows[name]
        assert mine["fits"] and mine["quality"]
        assert not any(o["peak_bytes"] <= mine["peak_bytes"] and o["quality"]["mean"] > mine["quality"]["mean"] for o in scored)
    for r in scored:  # what is left out is dominated by something recommended
        if r["candidate"] not in out["recommended"]:
            assert any(rows[n]["peak_bytes"] <= r["peak_bytes"] and rows[n]["quality"]["mean"] >= r["quality"]["mean"] for n in out["recommended"])
