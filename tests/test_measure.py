"""Every figure of the trade-off table, checked with numbers: the estimator against a hand
computation, the record's exact parts against the estimator, the CPU peak against batch size and
method, inference variants, and forgetting."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bench.measure import estimate
from bench.methods import get_method
from bench.run.pipeline import run
from bench.sweep.supervise import run_isolated
from conftest import ROOT, build, write_dialogsum_like


def test_estimator_equals_a_hand_computation(cfg_factory, tmp_path):
    """tiny-llama (vocab 30,522 from the MiniLM tokenizer, hidden 32, 2 blocks, 4 heads, kv 16,
    FFN 64, tied embeddings) + LoRA r=8 on q_proj, v_proj; batch 4 x 10 tokens, fp32."""
    cfg = cfg_factory("model=tiny-llama", "method=lora", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}")
    base, task, _ = build(cfg)
    model = get_method("lora").apply(base, cfg.method, task)
    got = estimate.predict(model, "causal_lm", batch_size=4, seq_len=10)
    params = 30522 * 32 + 2 * (32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32  # 995,296
    lora = 2 * 8 * ((32 + 32) + (32 + 16))  # 1,792
    assert got["weights_bytes"] == 4 * (params + lora)
    assert got["gradients_bytes"] == 4 * lora
    assert got["optimizer_state_bytes"] == 2 * 4 * lora + 4 * 8  # two moments + a step per tensor (8 tensors)
    tokens = 4 * 10
    per_block = tokens * (8 * 32 + 2 * 16 + 3 * 64) + 2 * 4 * 4 * 10 * 10
    adapters = 2 * 2 * tokens * (32 + 32 + 8)  # per wrapped layer: dropout's output and its fp32 mask (CPU), A's output (r)
    assert got["activations_bytes"] == 4 * (2 * per_block + tokens * 32 + 3 * tokens * 30522 + adapters)
    assert got["inputs"]["blocks_with_activations"] == 2


def test_estimator_counts_only_the_blocks_gradients_cross(cfg_factory):
    cfg = cfg_factory("model=tiny-bert", "method=last_layers", "method.num_layers=1")
    base, task, _ = build(cfg)
    top = estimate.predict(get_method("last_layers").apply(base, cfg.method, task), "classifier", 4, 10)
    cfg = cfg_factory("model=tiny-bert", "method=prompt_tuning", "method.num_virtual_tokens=5")
    base, task, _ = build(cfg)
    prompt = estimate.predict(get_method("prompt_tuning").apply(base, cfg.method, task), "classifier", 4, 10)
    assert top["inputs"]["blocks_with_activations"] == 1
    assert prompt["inputs"]["blocks_with_activations"] == 2 and prompt["inputs"]["virtual_tokens"] == 5
    assert prompt["activations_bytes"] > 2 * top["activations_bytes"]


def test_record_carries_estimate_inference_and_forgetting(cfg_factory):
    rec = run(cfg_factory("model=tiny-llama", "method=lora"))
    assert rec["run"]["status"] == "success", rec["run"].get("traceback")
    mem, est = rec["memory"], rec["memory"]["estimate"]
    assert est["weights_bytes"] == mem["breakdown"]["weights_bytes"]  # both exact: same tensors
    assert est["optimizer_state_bytes"] == mem["breakdown"]["optimizer_state_bytes"]
    assert est["gradients_bytes"] == mem["breakdown"]["gradients_bytes"]
    assert est["peak_ratio"] == mem["peak_bytes"] / est["total_bytes"]
    inf = rec["inference"]
    assert set(inf) >= {"model", "base", "merged", "ratio_to_base"}
    assert inf["model"]["batch_1"]["latency_per_example_s"] > 0 and inf["ratio_to_base"]["merged"]["batch_2"] > 0
    assert rec["forgetting"]["measure"] == "representation_cosine" and -1.0 <= rec["forgetting"]["after"] <= 1.0


def test_generation_inference_counts_virtual_tokens_and_exact_lengths(cfg_factory, tmp_path):
    rec = run(cfg_factory("model=tiny-llama", "method=prompt_tuning", "method.num_virtual_tokens=6", "task=dialogsum",
                          f"data_root={write_dialogsum_like(tmp_path)}"))
    inf = rec["inference"]
    assert inf["extra_input_tokens"] == 6 and "merged" not in inf
    assert inf["model"]["batch_1"]["generated_tokens"] == inf["base"]["batch_1"]["generated_tokens"] == 2 * 2
    assert inf["model"]["batch_2"]["tokens_per_s"] > 0


@pytest.mark.parametrize("method,task,precision", [("lora", "embedded-sentiment", "fp32"), ("ia3", "dialogsum", "bf16")])
def test_a_mergeable_method_records_how_far_merging_moves_its_outputs(cfg_factory, tmp_path, method, task, precision):
    """inference.merge_fidelity: merged against unmerged on the served examples, at the run's
    precision. The LoRA B matrix starts at zero, so a high lr makes the adapters matter."""
    rec = run(cfg_factory("model=tiny-llama", f"method={method}", f"task={task}", f"data_root={write_dialogsum_like(tmp_path)}",
                          f"speed.precision={precision}", "train.lr=1e-2"))
    fid = rec["inference"]["merge_fidelity"]
    assert fid["examples"] == 2 and fid["loss_diff"] == pytest.approx(fid["loss_merged"] - fid["loss_unmerged"])
    assert 0 <= fid["max_abs_logit_diff"] < (0.5 if precision == "bf16" else 1e-3)  # merging is exact up to rounding
    assert abs(fid["loss_diff"]) < (0.1 if precision == "bf16" else 1e-4)


def test_a_method_that_cannot_merge_has_no_merge_fidelity(cfg_factory):
    assert "merge_fidelity" not in run(cfg_factory("model=tiny-bert", "method=prompt_tuning"))["inference"]


def test_forgetting_is_zero_without_training_and_moves_with_full_fine_tuning(cfg_factory, tmp_path):
    data = f"data_root={write_dialogsum_like(tmp_path)}"
    none = run(cfg_factory("model=tiny-llama", "method=none", "task=dialogsum", data))["forgetting"]
    assert none["measure"] == "lm_loss" and none["delta"] == 0.0 and none["before"] > 0
    full = run(cfg_factory("model=tiny-llama", "method=full", "task=dialogsum", data, "train.lr=1e-2"))["forgetting"]
    assert full["before"] == none["before"]  # the same base model, the same sample
    assert full["after"] != full["before"]


@pytest.mark.system
def test_cpu_peak_grows_with_batch_and_full_exceeds_lora(cfg_factory):
    """Isolated runs (a fresh process each, as in a sweep) of MiniLM on the embedded task."""
    peaks = {}
    for method in ("full", "lora"):
        for batch in (4, 64):
            rec = run_isolated(cfg_factory("model=minilm-l6", f"method={method}", f"train.batch_size={batch}",
                                           "inference.enabled=false", "forgetting.enabled=false"), None)
            assert rec["run"]["status"] == "success", rec["run"]["error"]
            peaks[method, batch] = rec["memory"]["peak_bytes"]
            # the stated tolerance: measured / predicted in [0.7, 2.0] (the benchmark saw 1.4-1.6 for
            # MiniLM: torch's CPU runtime and backward temporaries are outside the formula)
            assert 0.7 <= rec["memory"]["estimate"]["peak_ratio"] <= 2.0, (method, batch, rec["memory"]["estimate"]["peak_ratio"])
    assert peaks["full", 64] > peaks["full", 4] and peaks["lora", 64] > peaks["lora", 4]
    # full also keeps gradients (86 MiB) and two Adam moments (172 MiB) for all 22.6M weights
    assert peaks["full", 4] > peaks["lora", 4] + 2 * 86 * 2**20


@pytest.mark.system
def test_estimate_command_works_for_a_model_too_big_to_load():
    out = subprocess.run([sys.executable, "-m", "bench", "estimate", "model=llama3-8b-config", "method=lora", "task=dialogsum",
                          "train.batch_size=4", "estimate.seq_len=512"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "weights" in out.stdout and "14.9" in out.stdout  # 8.0B bf16 weights, about 14.97 GiB


def test_benchmark_tables_show_each_part_beside_its_prediction(cfg_factory):
    from bench.harness.benchmark import inference_table, memory_table, tradeoff_table

    rec = run(cfg_factory("model=tiny-bert", "method=lora"))
    failed = {"run": {"model": "tiny-bert", "method": "bitfit", "status": "failed", "error": "config: no bias terms"}}
    table = memory_table([rec, failed])
    b, e = rec["memory"]["breakdown"], rec["memory"]["estimate"]
    assert f"{b['weights_bytes'] / 2**20:,.1f} / {e['weights_bytes'] / 2**20:,.1f}" in table
    assert "failed: config: no bias terms" in table
    rows = inference_table([rec]).splitlines()[2:]
    assert [r.split(" | ")[2] for r in rows] == ["base", "model", "merged"]
    tradeoffs = tradeoff_table([rec, failed])
    assert "(random weights)" in tradeoffs and "representation_cosine 1.000 ->" in tradeoffs and "bitfit" not in tradeoffs


def test_the_loop_frees_gradients_between_steps_and_the_breakdown_still_counts_them(cfg_factory):
    """zero_grad(set_to_none=True) is the faster loop; the breakdown must not read the freed grads."""
    from bench.measure import figures as measure
    from bench.run.train import train

    cfg = cfg_factory("model=tiny-bert", "method=full")
    base, task, _ = build(cfg)
    model = get_method("full").apply(base, cfg.method, task)
    result = train(model, task, cfg, torch.device("cpu"))
    assert result.optimizer.state and all(p.grad is None for p in model.parameters())
    parts = measure.breakdown(model, result.optimizer, peak=10**9)
    assert parts["gradients_bytes"] == parts["trainable_weights_bytes"] > 0
    assert measure.breakdown(model, None, peak=10**9)["gradients_bytes"] == 0  # nothing trains: no gradients
