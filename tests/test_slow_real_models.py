"""Real pretrained models on real data: the issue's acceptance checks. Marked slow (minutes);
CI runs them after the fast suite. Skipped where ../shared/datasets is absent."""

from __future__ import annotations

import pytest

from bench.run import run
from conftest import SHARED_DATA, make_cfg

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real datasets not found at {SHARED_DATA}"),
]


def test_minilm_lora_sst2_reaches_078(tmp_path):
    """MiniLM-L6 + LoRA r=8 (project defaults), 300 steps, full SST-2 dev set."""
    cfg = make_cfg(["model=minilm-l6", "task=sst2", "method=lora", "method.r=8", f"data_root={SHARED_DATA}",
                    "train.max_steps=300", f"results_dir={tmp_path}"])
    rec = run(cfg)
    assert rec["run"]["status"] == "success", rec["run"]["error"]
    assert rec["quality"]["num_examples"] == 872
    assert rec["quality"]["accuracy"] >= 0.78, rec["quality"]


def test_smollm2_dialogsum_lora_beats_zero_shot(tmp_path):
    """SmolLM2-135M on DialogSum: zero-shot ROUGE, then a short LoRA run raises ROUGE-1 above it."""
    common = ["model=smollm2-135m", "task=dialogsum", f"data_root={SHARED_DATA}", "eval.max_examples=50",
              f"results_dir={tmp_path}"]
    zero = run(make_cfg(common + ["method=none"]))
    assert zero["run"]["status"] == "success", zero["run"]["error"]
    lora = run(make_cfg(common + ["method=lora", "train.max_steps=60", "train.batch_size=4"]))
    assert lora["run"]["status"] == "success", lora["run"]["error"]
    assert 0.05 < zero["quality"]["rouge1"] < lora["quality"]["rouge1"], (zero["quality"], lora["quality"])
