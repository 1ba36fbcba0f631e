"""Data-parallel training (bench.run.distributed): train.world_size is checked before any model
loads; a batch is split into equal slices whose losses weigh as the whole batch's; and, with 2
processes on the CPU (gloo), a run trains the very curve of one process at the same global batch,
writes exactly one record (world_size 2, a peak per rank) and one W&B run, whether torchrun or the
knob started it. The multi-process runs take 20-30 s each: the system tier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import torch

from bench.config.checks import check
from bench.config.plan import validate
from bench.errors import ConfigError
from bench.methods import get_method
from bench.models.heads import get_head
from bench.records.store import SCHEMA_PATH, config_hash, load_records
from bench.run import distributed
from bench.run.pipeline import run
from conftest import ROOT, make_cfg

# Dropout draws its masks per process, so a curve equals one process's only without it: the
# classifier head's (model.head_dropout) and LoRA's; tiny-llama's own layers have none.
TINY = ["model=tiny-llama", "+model.head_dropout=0.0", "task=embedded-sentiment", "train.batch_size=4", "train.max_steps=4",
        "eval.max_examples=8", "eval.batch_size=8", "inference.enabled=false", "forgetting.enabled=false"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "bench"]


def as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    """This process as torchrun starts rank `rank` of `world` (no process group: the helpers under test need none)."""
    for key, value in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world, "LOCAL_WORLD_SIZE": world}.items():
        monkeypatch.setenv(key, str(value))


# --- checked before any model loads -----------------------------------------------------------------------

@pytest.mark.parametrize("override,field,valid", [
    (["train.world_size=0"], "train.world_size", "an integer >= 1"),
    (["train.world_size=2", "train.batch_size=5"], "train.batch_size", "a multiple of train.world_size=2"),
])
def test_the_knob_and_the_batch_it_splits_are_checked_naming_the_field(tmp_path: Path, override: list[str], field: str, valid: str):
    with pytest.raises(ConfigError) as info:
        check(make_cfg(["model=tiny-bert", f"results_dir={tmp_path}", *override]))
    assert info.value.field == field and valid in str(info.value)


def test_a_method_that_trains_nothing_refuses_data_parallel_with_its_reason(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        validate(make_cfg(["model=tiny-bert", "method=none", "train.world_size=2", f"results_dir={tmp_path}"]))
    assert info.value.field == "train.world_size" and "trains nothing" in str(info.value)


def test_the_command_line_refuses_it_with_exit_2_before_starting_any_process(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "bench", *TINY, "method=none", "train.world_size=2", f"results_dir={tmp_path / 'r'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("config error: train.world_size=2 is not valid: 1 for method none: it trains nothing")
    assert "data-parallel:" not in proc.stderr and not (tmp_path / "r").exists()  # torchrun never started; nothing written


def test_a_data_parallel_point_outside_torchrun_is_refused_into_its_record(cfg_factory, monkeypatch: pytest.MonkeyPatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    cfg = cfg_factory("model=tiny-bert", "method=lora", "train.world_size=2")
    with pytest.raises(ConfigError, match="not one of 2 torchrun processes"):
        run(cfg)
    record = run(cfg, sweep="a-sweep")  # a sweep's point runs in one process: a refused record, and the sweep goes on
    assert record["run"]["status"] == "failed" and record["run"]["refused"] and "train.world_size" in record["run"]["error"]


def test_under_torchrun_the_knob_takes_the_processes_it_started(monkeypatch: pytest.MonkeyPatch):
    as_rank(monkeypatch, 0, 2)
    cfg = make_cfg(["model=tiny-bert"])
    distributed.adopt_launch(cfg)
    assert cfg.train.world_size == 2 and config_hash(cfg) == config_hash(make_cfg(["model=tiny-bert", "train.world_size=2"]))
    with pytest.raises(ConfigError, match="train.world_size=3"):
        distributed.adopt_launch(make_cfg(["model=tiny-bert", "train.world_size=3"]))


def test_layer_dropping_methods_declare_that_a_step_may_skip_parameters():
    lokr = make_cfg(["model=tiny-bert", "method=lokr"]).method
    assert get_method("lokr").skips_parameters(lokr) is False  # module_dropout 0: every step uses every parameter
    lokr.config.module_dropout = 0.5
    assert get_method("lokr").skips_parameters(lokr) is True  # DDP looks for unused parameters (without: it stops at step 2)
    assert get_method("lora").skips_parameters is None


# --- a rank's slice and its loss's weight -----------------------------------------------------------------

def test_each_rank_takes_its_slice_and_weighs_its_loss_by_its_share_of_the_scored_tokens(monkeypatch: pytest.MonkeyPatch):
    labels = torch.tensor([[5, 5, 5, 5], [5, 5, -100, -100], [5, -100, -100, -100], [5, 5, 5, -100]])
    whole = {"input_ids": torch.arange(16).reshape(4, 4), "labels": labels}
    assert distributed.shard(whole) is whole and distributed.loss_weight(whole, get_head("causal_lm")) == 1.0  # a plain run
    as_rank(monkeypatch, 1, 2)
    assert distributed.shard(whole)["input_ids"].tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]]
    # A causal LM scores every label but the first: 3 + 1 + 0 + 2 = 6 tokens, rank 1's slice 0 + 2 of them: 2 x 2 / 6
    assert distributed.loss_weight(whole, get_head("causal_lm")) == pytest.approx(2 * 2 / 6)
    assert distributed.loss_weight({"labels": torch.tensor([0, 1, 1, 0])}, get_head("classifier")) == 1.0  # one label each
    as_rank(monkeypatch, 0, 2)
    assert distributed.loss_weight(whole, get_head("causal_lm")) == pytest.approx(2 * 4 / 6)  # the two weights average to 1


def test_the_data_parallel_table_shows_each_process_count_beside_one_process():
    from bench.harness.data_parallel import table

    def record(world: int, step: float, peaks: list[int]) -> dict:
        return {"run": {"method": "full", "world_size": world, "status": "success", "started_at": str(world), "error": None},
                "env": {"torch_threads": 2 // world}, "speed": {"step_time_median_s": step, "tokens_per_s": 1000.0 / step},
                "memory": {"peak_bytes": peaks[0], "peak_bytes_per_rank": peaks}, "curve": [{"loss": 0.5}]}

    rows = table([record(2, 0.5, [300 * 2**20, 280 * 2**20]), record(1, 0.25, [400 * 2**20])]).splitlines()[2:]
    assert rows == ["| full | 1 | 2 | 0.250 | 1.00 | 4,000 | 400 | 0.5000 |", "| full | 2 | 1 | 0.500 | 2.00 | 2,000 | 300 / 280 | 0.5000 |"]


# --- two processes on the CPU -----------------------------------------------------------------------------

def cli(command: list[str], results: Path, *overrides: str) -> dict:
    """Run the command into `results` and return its one record."""
    proc = subprocess.run([*command, *overrides, f"results_dir={results}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    records = load_records(results)
    assert len(records) == 1, [r["run"]["id"] for r in records]  # exactly one record: only rank 0 writes
    jsonschema.validate(records[0], json.loads(SCHEMA_PATH.read_text()))
    assert records[0]["run"]["status"] == "success"
    return records[0]


@pytest.mark.system
@pytest.mark.parametrize("method,launch", [
    (["method=full"], "torchrun"),
    (["method=lora", "method.dropout=0.0"], "knob"),
    (["method=lokr", "method.config.r=4", "method.config.module_dropout=0.5"], "knob"),  # a step may leave a layer out: find_unused_parameters
], ids=["full-torchrun", "lora-knob", "lokr-module-dropout-knob"])
def test_two_processes_train_the_curve_of_one_and_write_one_record(tmp_path: Path, method: list[str], launch: str):
    one = cli([sys.executable, "-m", "bench"], tmp_path / "one", *TINY, *method, "tracking=none")
    command = TORCHRUN if launch == "torchrun" else [sys.executable, "-m", "bench"]
    knob = ["train.world_size=2"] if launch == "knob" else []  # torchrun: the default 1 takes the 2 processes it started
    two = cli(command, tmp_path / "two", *TINY, *method, *knob, "tracking=wandb", "tracking.mode=offline")
    assert [p["loss"] for p in two["curve"]] == pytest.approx([p["loss"] for p in one["curve"]], rel=1e-5, abs=1e-6)
    assert one["run"]["world_size"] == 1 and two["run"]["world_size"] == 2 and two["run"]["config"]["train"]["world_size"] == 2
    assert two["run"]["config_hash"] == config_hash(make_cfg([*TINY, *method, "train.world_size=2", f"results_dir={tmp_path / 'two'}"]))
    peaks = two["memory"]["peak_bytes_per_rank"]
    assert len(peaks) == 2 and all(p > 0 for p in peaks) and two["memory"]["peak_bytes"] == peaks[0]
    assert len(one["memory"]["peak_bytes_per_rank"]) == 1
    estimate = two["memory"]["estimate"]  # one process's share under DDP, as `estimate devices=2` predicts it
    assert estimate["data_parallel"]["devices"] == 2 and estimate["inputs"]["batch_size"] == 2
    assert estimate["peak_ratio"] == pytest.approx(peaks[0] / estimate["data_parallel"]["ddp_bytes"])
    # Tokens are the total over the ranks: both runs trained the same global batches
    tokens = one["speed"]["tokens_per_s"] * sum(p["step_time_s"] for p in one["curve"])
    assert two["speed"]["tokens_per_s"] * sum(p["step_time_s"] for p in two["curve"]) == pytest.approx(tokens)
    assert len(list((tmp_path / "two" / "artifacts").iterdir())) == 1  # one saved adapter or model, rank 0's
    assert len(list((tmp_path / "two" / "wandb").glob("offline-run-*"))) == 1  # one W&B run, rank 0's


@pytest.mark.system
def test_an_lm_loss_weighs_each_rank_by_its_scored_tokens(tmp_path: Path):
    """Summaries of 5 to 21 words: the two slices of a batch score different numbers of tokens, so
    each rank's mean loss weighs by its share (unweighted, this curve was off by 3e-3 from step 1)."""
    folder = tmp_path / "data" / "dialogsum"
    folder.mkdir(parents=True)
    rows = [{"fname": f"dev_{i}", "dialogue": f"#Person1#: Shall we meet at {i}?\n#Person2#: Yes.",
             "summary": "They agree to meet " + "and talk a lot " * (1 + 4 * (i % 3)) + ".", "topic": "meeting"} for i in range(24)]
    (folder / "dialogsum.dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test = {"fname": "test_0", "dialogue": "#Person1#: Open?\n#Person2#: No.", "summary1": "Closed.", "summary2": "Shut.",
            "summary3": "It closes.", "topic1": "shop"}
    (folder / "dialogsum.test.jsonl").write_text(json.dumps(test) + "\n")
    task = ["model=tiny-llama", "method=full", "task=dialogsum", f"data_root={tmp_path / 'data'}", "train.batch_size=4", "train.max_steps=4",
            "eval.max_examples=1", "eval.max_new_tokens=2", "inference.enabled=false", "forgetting.enabled=false", "tracking=none"]
    one = cli([sys.executable, "-m", "bench"], tmp_path / "one", *task)
    two = cli([sys.executable, "-m", "bench"], tmp_path / "two", *task, "train.world_size=2")
    assert [p["loss"] for p in two["curve"]] == pytest.approx([p["loss"] for p in one["curve"]], rel=1e-6)
