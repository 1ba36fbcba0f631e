"""A user's own dataset: one JSONL file, one task YAML passed with --config-dir, and no Python.

The rows are a yes/no reading-comprehension set with JSON boolean labels; train and eval are
disjoint parts of the one file (task.eval_fraction, or task.train_rows / task.eval_rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.tasks.cache import _rows, cache_key, check_parts
from conftest import ROOT, make_cfg

ROWS = 60


def write_yes_no(folder: Path, n: int = ROWS) -> Path:
    """n rows {question, passage, answer (a JSON boolean)}; every 7th passage is long. Each
    question names its row, so overlap between parts is visible."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "yesno.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            passage = f"The shop on street {i} opens at nine." + (" It sells bread, milk and fruit." * 12 if i % 7 == 0 else "")
            f.write(json.dumps({"question": f"is row {i} open at nine", "passage": passage, "answer": i % 3 != 0}) + "\n")
    return path


def task_yaml(data: Path, **parts) -> str:
    """The task YAML a user writes: every key a classification task takes, `path:` absolute."""
    lines = ["name: yesno", "kind: classification", "format: jsonl", f"path: {data}", "train_split: yesno.jsonl",
             "eval_split: yesno.jsonl", "text_fields: [question, passage]", "label_field: answer", "labels: [false, true]",
             'label_names: ["no", "yes"]', "metrics: [accuracy, f1, mcc]", "max_length: 32", "max_train_examples: null"]
    return "\n".join(lines + [f"{key}: {json.dumps(value)}" for key, value in parts.items()]) + "\n"


def own_cfg(tmp_path: Path, *overrides: str, **parts):
    """The composed config of the task YAML, as `--config-dir` would find it (the YAML's keys
    override the built-in task's)."""
    data = tmp_path / "data"
    write_yes_no(data)
    cfg = make_cfg(["model=tiny-bert", f"data_root={tmp_path}", *overrides])
    OmegaConf.set_struct(cfg, False)
    cfg.task = OmegaConf.create(task_yaml(data, **parts))
    return cfg


def questions(rows: list[dict]) -> list[str]:
    return [r["question"] for r in rows]


def test_an_eval_fraction_parts_one_file_into_disjoint_seeded_train_and_eval(tmp_path: Path):
    cfg = own_cfg(tmp_path, eval_fraction=0.25, split_seed=1)
    train, scored = _rows(cfg, trains=True)
    assert len(scored) == 15 and len(train) == 45
    assert not set(questions(train)) & set(questions(scored))
    assert sorted(questions(train) + questions(scored)) == sorted(f"is row {i} open at nine" for i in range(ROWS))
    assert _rows(cfg, trains=True) == (train, scored)  # seeded: the same parts every time
    other = own_cfg(tmp_path, eval_fraction=0.25, split_seed=2)
    assert questions(_rows(other, trains=True)[1]) != questions(scored)
    from bench.models import sources as models

    tokenizer = models.load_tokenizer(cfg.model)
    from bench.tasks import get_kind

    kind = get_kind("classification")
    assert cache_key(cfg, kind, tokenizer, "encoder", True) != cache_key(other, kind, tokenizer, "encoder", True)  # the seed is in the key


def test_the_validation_split_is_carved_from_the_train_part_only(tmp_path: Path):
    cfg = own_cfg(tmp_path, "validation.examples=10", "validation.score_on=validation", eval_fraction=0.25)
    train, validation = _rows(cfg, trains=True)
    _, scored = _rows(own_cfg(tmp_path, "validation.examples=10", eval_fraction=0.25), trains=True)
    assert (len(train), len(validation), len(scored)) == (35, 10, 15)
    assert not set(questions(validation)) & set(questions(scored)) and not set(questions(validation)) & set(questions(train))


def test_row_ranges_part_one_file_and_either_alone_leaves_the_rest_to_the_other(tmp_path: Path):
    train, scored = _rows(own_cfg(tmp_path, train_rows=[0, 40], eval_rows=[40, 60]), trains=True)
    assert questions(train) == [f"is row {i} open at nine" for i in range(40)]
    assert questions(scored) == [f"is row {i} open at nine" for i in range(40, 60)]
    train, scored = _rows(own_cfg(tmp_path, eval_rows=[10, 20]), trains=True)
    assert questions(scored) == [f"is row {i} open at nine" for i in range(10, 20)]
    assert questions(train) == [f"is row {i} open at nine" for i in [*range(10), *range(20, 60)]]
    train, scored = _rows(own_cfg(tmp_path, train_rows=[0, 50], eval_rows=[50, None]), trains=True)  # null end: to the last row
    assert len(train) == 50 and len(scored) == 10


@pytest.mark.parametrize("parts,field", [
    ({}, "task.eval_split"),  # one file for both splits and no way to part it: it would score rows it trained on
    ({"train_rows": [0, 40], "eval_rows": [30, 60]}, "task.eval_rows"),  # overlapping ranges
    ({"train_rows": [0, None], "eval_rows": [50, 60]}, "task.eval_rows"),  # to the end of the file overlaps too
    ({"eval_fraction": 0.25, "eval_rows": [50, 60]}, "task.eval_fraction"),  # both ways at once
    ({"eval_fraction": 1.5}, "task.eval_fraction"),
    ({"eval_fraction": 0.25, "split_seed": -1}, "task.split_seed"),
    ({"eval_rows": [20, 10]}, "task.eval_rows"),
    ({"eval_rows": "10-20"}, "task.eval_rows"),
])
def test_parts_that_could_share_rows_are_refused_naming_the_field(tmp_path: Path, parts: dict, field: str):
    cfg = own_cfg(tmp_path, **parts)
    with pytest.raises(ConfigError) as info:
        check_parts(cfg.task, cfg.data_root)
    assert info.value.field == field
    from bench.config.plan import validate

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):  # validate refuses it before any model loads
        validate(cfg)


def test_a_range_past_the_end_of_the_file_names_the_field_and_the_row_count(tmp_path: Path):
    from bench.config.plan import validate

    for parts in ({"eval_rows": [50, 70]}, {"train_rows": [0, 50], "eval_rows": [60, None]}):
        cfg = own_cfg(tmp_path, **parts)
        for refuse in (validate, lambda c: _rows(c, trains=True)):  # before a model loads, and where the rows are parted
            with pytest.raises(ConfigError, match=r"task\.eval_rows=.*within the 60 rows of yesno.jsonl"):
                refuse(cfg)


def test_an_absolute_task_path_needs_no_data_root(tmp_path: Path):
    from bench.config.plan import validate

    cfg = own_cfg(tmp_path, eval_fraction=0.25)
    cfg.data_root = str(tmp_path / "no-such-folder")  # a user's clone has no ../shared/datasets
    assert validate(cfg).family == "encoder" and len(_rows(cfg, trains=True)[1]) == 15


def test_two_files_or_a_hub_dataset_need_no_part_keys(tmp_path: Path):
    check_parts(make_cfg(["task=sst2"]).task, "../shared/datasets")  # train.tsv and dev.tsv: nothing to refuse
    hub = OmegaConf.create({"format": "hub", "path": "boolq", "train_split": "train", "eval_split": "train"})
    with pytest.raises(ConfigError, match=r"task\.eval_split"):
        check_parts(hub, "")


def test_boolean_labels_match_the_data_in_any_spelling(tmp_path: Path):
    """YAML and JSON both read true/false as booleans; a TSV holds them as text. Each spelling in
    task.labels matches each in the data, and the label index follows task.labels' order."""
    from bench.models import sources as models
    from bench.tasks.classification import _features

    tokenizer = models.load_tokenizer(make_cfg(["model=tiny-bert"]).model)
    rows = [{"question": "q", "passage": "p", "answer": value} for value in (False, True, "True", "false")]
    for labels in ([False, True], ["false", "true"], ["False", "True"]):
        task_cfg = OmegaConf.create(task_yaml(tmp_path))
        task_cfg.labels = labels
        assert [f["label"] for f in _features(rows, task_cfg, tokenizer)] == [0, 1, 1, 0]
    task_cfg.labels = ["no", "yes"]
    with pytest.raises(ConfigError, match="task.labels"):
        _features(rows, task_cfg, tokenizer)


@pytest.mark.system
def test_a_one_file_dataset_runs_end_to_end_from_one_yaml_with_config_dir(tmp_path: Path):
    """The user's whole job: write conf/task/yesno.yaml beside nothing else, pass --config-dir.
    The record shows disjoint parts (train + validation + eval = the file's rows), the truncated
    inputs per split, and eval.keep_predictions predictions."""
    data, conf, results = tmp_path / "data", tmp_path / "conf", tmp_path / "results"
    write_yes_no(data)
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "yesno.yaml").write_text(task_yaml(data, eval_fraction=0.25, split_seed=0))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline", "PEFT_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bench", "--config-dir", str(conf), "task=yesno", "model=tiny-bert", "tracking=none",
                           "train.max_steps=2", f"results_dir={results}", f"data_root={tmp_path}", "validation.examples=5",
                           "eval.keep_predictions=5", "inference.enabled=false", "forgetting.enabled=false"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = results.glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["run"]["status"] == "success" and rec["run"]["task"] == "yesno"
    data_info, quality = rec["data"], rec["quality"]
    assert (data_info["train_examples"], data_info["validation_examples"], data_info["eval_examples"]) == (40, 5, 15)
    assert data_info["train_examples"] + data_info["validation_examples"] + data_info["eval_examples"] == data_info["source_rows"] == ROWS
    assert quality["num_examples"] == 15 and len(quality["examples"]) == 5
    assert {e["reference"] for e in quality["examples"]} <= {"no", "yes"} and all(e["input"] for e in quality["examples"])
    cfg = make_cfg(["model=tiny-bert"])
    OmegaConf.set_struct(cfg, False)
    cfg.task, cfg.data_root = OmegaConf.create(task_yaml(data, eval_fraction=0.25, split_seed=0)), str(tmp_path)
    cfg.validation.examples = 5
    from bench.models import sources as models

    tokenizer = models.load_tokenizer(cfg.model)
    train, scored = _rows(cfg, trains=True)
    long = lambda rows: sum(len(tokenizer(r["question"], r["passage"])["input_ids"]) > 32 for r in rows)  # noqa: E731
    assert data_info["truncated"] == {"train": long(train), "eval": long(scored)} and long(train) > 0
    majority = max(sum(r["answer"] for r in scored), sum(not r["answer"] for r in scored)) / len(scored)
    assert quality["majority_baseline"] == pytest.approx(majority)
    assert "inputs cut to the task's length limit" in proc.stderr


def test_the_readmes_task_yamls_validate_and_part_their_one_file(tmp_path: Path):
    """Each YAML in the README's "Your own dataset" section, pointed at a file of its shape, passes
    validation and parts the file into disjoint train and eval rows: the README's claims hold."""
    import re

    from bench.config.plan import validate

    text = (ROOT / "docs" / "own-data.md").read_text()
    section = text[text.index("## Your own dataset"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2 and "{source}" in blocks[1]
    for block, model, row in ((blocks[0], "tiny-bert", lambda i: {"question": f"q {i}", "passage": "p", "answer": i % 2 == 0}),
                              (blocks[1], "tiny-t5", lambda i: {"dialogue": f"A: hi {i}\nB: bye", "summary": f"They part {i}."})):
        task = OmegaConf.create(block)
        folder = tmp_path / task.name
        folder.mkdir()
        (folder / task.train_split).write_text("".join(json.dumps(row(i)) + "\n" for i in range(50)))
        task.path = str(folder)  # absolute, as the README's
        cfg = make_cfg([f"model={model}", f"results_dir={tmp_path / 'results'}"])
        OmegaConf.set_struct(cfg, False)
        cfg.task = task
        assert validate(cfg).family in ("encoder", "encoder-decoder")
        train, scored = _rows(cfg, trains=True)
        assert len(scored) == round(50 * task.eval_fraction) and len(train) + len(scored) == 50
        assert not {json.dumps(r) for r in train} & {json.dumps(r) for r in scored}


@pytest.mark.parametrize("value", ["abc", -1, 2.5])
def test_a_bad_keep_predictions_is_refused_naming_the_field(tmp_path: Path, value):
    from bench.config.plan import validate

    with pytest.raises(ConfigError, match=r"eval\.keep_predictions=.*an integer >= 0"):
        validate(make_cfg(["model=tiny-bert", f"results_dir={tmp_path}", f"eval.keep_predictions={value}"]))


@pytest.mark.slow  # a real (random-weight) T5 generates: ~10 s here
def test_keep_predictions_sets_how_many_generated_predictions_a_summarization_record_keeps(tmp_path: Path, cfg_factory):
    import torch

    from conftest import build, write_dialogsum_like

    root = write_dialogsum_like(tmp_path / "data", n=6)
    cfg = cfg_factory("model=tiny-t5", "task=dialogsum", f"data_root={root}", "eval.max_new_tokens=2")
    model, task, _ = build(cfg)
    progress = lambda total, desc: type("Bar", (), {"update": lambda self, n: None, "close": lambda self: None})()  # noqa: E731
    for keep in (0, 5):
        cfg.eval.keep_predictions = keep
        quality = task.evaluate(model, task, cfg.eval, torch.device("cpu"), progress)
        assert quality["num_examples"] == 6 and len(quality["examples"]) == keep
        assert [e["reference"] for e in quality["examples"]] == [f["references"][0] for f in task.eval[:keep]]
