"""Task data: the embedded generator, and the real datasets read by path from ../shared/datasets
(skipped with a reason where that folder is absent, as in a user's clone)."""

from __future__ import annotations

import json
from collections import Counter

from pathlib import Path

import pytest

from bench.config.plan import validate
from bench.tasks.data import read_rows
from conftest import SHARED_DATA, make_cfg

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real datasets not found at {SHARED_DATA}")


def test_embedded_task_is_deterministic_balanced_and_needs_negation():
    cfg = make_cfg(["task=embedded-sentiment"])
    rows = read_rows(cfg.task, cfg.data_root, "train")
    assert rows == read_rows(cfg.task, cfg.data_root, "train")
    assert len(rows) == cfg.task.num_train
    counts = Counter(r["label"] for r in rows)
    assert abs(counts["0"] - counts["1"]) < 0.1 * len(rows)
    negated = [r for r in rows if any(f" {neg}" in r["sentence"] for neg in ("not ", "never ", "hardly ", "by no means "))]
    assert 0.4 * len(rows) < len(negated) < 0.6 * len(rows)  # half the labels hinge on negation
    assert read_rows(cfg.task, cfg.data_root, "eval") != rows[: cfg.task.num_eval]


# (task, split, rows, label counts or None)
EXPECTED = [
    ("sst2", "eval", 872, {"0": 428, "1": 444}),
    ("sst2", "train", 67349, {"0": 29780, "1": 37569}),
    ("cola", "eval", 1043, {"0": 322, "1": 721}),
    ("mrpc", "train", 3668, {"0": 1194, "1": 2474}),
    ("mrpc", "eval", 408, {"0": 129, "1": 279}),
    ("rte", "eval", 277, {"entailment": 146, "not_entailment": 131}),
    ("superglue-rte", "train", 2490, {"entailment": 1249, "not_entailment": 1241}),
    ("cb", "train", 250, {"entailment": 115, "contradiction": 119, "neutral": 16}),
    ("cb", "eval", 56, None),
    ("dialogsum", "train", 500, None),
    ("dialogsum", "eval", 500, None),
]


@needs_shared
@pytest.mark.parametrize("task,split,n,labels", EXPECTED)
def test_real_datasets_match_published_sizes(task, split, n, labels):
    cfg = make_cfg([f"task={task}", f"data_root={SHARED_DATA}"])
    rows = read_rows(cfg.task, cfg.data_root, split)
    assert len(rows) == n
    if labels:
        assert dict(Counter(str(r[cfg.task.label_field]) for r in rows)) == labels
    if task == "dialogsum" and split == "eval":
        assert all(r["summary1"] and r["summary2"] and r["summary3"] for r in rows)


@needs_shared
@pytest.mark.parametrize("task", ["sst2", "cola", "mrpc", "rte", "superglue-rte", "cb"])
def test_real_classification_tasks_validate(task, tmp_path):
    assert validate(make_cfg([f"task={task}", f"data_root={SHARED_DATA}", f"results_dir={tmp_path}"])).family == "encoder"


@needs_shared
def test_mrpc_pairs_read_despite_quotes_and_bom():
    cfg = make_cfg(["task=mrpc", f"data_root={SHARED_DATA}"])
    first = read_rows(cfg.task, cfg.data_root, "eval")[0]
    assert first["Quality"] == "1" and first["#2 String"].startswith('" The foodservice pie')


def test_length_grouped_batches_cover_each_example_once_and_pad_less():
    """One epoch of grouped batches is a permutation of the whole batches, with far less padding."""
    import random

    from bench.run.train import batches

    rng = random.Random(0)
    feats = [{"input_ids": [0] * rng.randint(3, 120), "i": i} for i in range(1000)]
    collate = lambda batch: {"i": [f["i"] for f in batch], "lens": [len(f["input_ids"]) for f in batch]}  # noqa: E731

    def epoch(group: bool, seed: int = 0) -> list[dict]:
        stream = batches(feats, 16, seed, collate, group_by_length=group)
        return [next(stream) for _ in range(1000 // 16)]

    def padding(epoch_batches: list[dict]) -> float:
        padded = sum(max(b["lens"]) * len(b["lens"]) for b in epoch_batches)
        return 1 - sum(sum(b["lens"]) for b in epoch_batches) / padded

    grouped = epoch(True)
    seen = [i for b in grouped for i in b["i"]]
    assert len(seen) == len(set(seen)) == (1000 // 16) * 16
    assert all(len(b["i"]) == 16 for b in grouped)
    assert padding(grouped) < 0.1 < 0.3 < padding(epoch(False))
    assert [b["i"] for b in epoch(True, seed=1)] != [b["i"] for b in grouped]  # the order still depends on the seed
    # fewer examples than a batch: one partial batch, as without grouping
    assert len(next(batches(feats[:5], 16, 0, collate, group_by_length=True))["i"]) == 5


def test_perf_contestants_take_the_suites_batch_order():
    """bench.harness.perf feeds its bare loop and Trainer the suite's own first-epoch order, grouped or not."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from bench.harness.perf import first_epoch_order
    from bench.run.train import batches

    feats = [{"input_ids": [0] * (3 + (i * 37) % 90), "i": i} for i in range(200)]
    collate = lambda batch: {"i": [f["i"] for f in batch]}  # noqa: E731
    for group in (False, True):
        cfg = OmegaConf.create({"seed": 3, "train": {"batch_size": 16, "group_by_length": group}})
        order = first_epoch_order(SimpleNamespace(train=feats), cfg)
        stream = batches(feats, 16, 3, collate, group_by_length=group)
        suite = [i for _ in range(200 // 16) for i in next(stream)["i"]]
        assert suite == order[: len(suite)]


def test_tokenised_data_is_prepared_once_and_reused(tmp_path, monkeypatch):
    """A second run with the same data, tokenizer and lengths loads the features from the cache;
    a change to any of them (here task.max_length), a damaged entry, or cache_data=false tokenises anew."""
    import bench.tasks.cache as cache
    from bench.models import sources as models
    from bench.tasks import get_kind

    monkeypatch.setattr(cache, "cache_root", lambda: tmp_path / "cache")
    cfg = make_cfg(["model=tiny-bert", "task=embedded-sentiment"])
    family = validate(cfg).family
    tokenizer, kind = models.load_tokenizer(cfg.model), get_kind(cfg.task.kind)

    first, info1 = cache.prepare_task(cfg, kind, tokenizer, family, trains=True)
    second, info2 = cache.prepare_task(cfg, kind, tokenizer, family, trains=True)
    assert (info1["cache"], info2["cache"]) == ("miss", "hit") and info1["cache_path"] == info2["cache_path"]
    assert second.train == first.train and second.eval == first.eval and len(first.train) == info1["train_examples"] > 0
    assert second.collate(second.train[:4])["input_ids"].shape[0] == 4  # the cached Task works like a fresh one
    print(f"prepare: tokenised {info1['prepare_s']:.3f} s, from the cache {info2['prepare_s']:.3f} s")

    shorter = make_cfg(["model=tiny-bert", "task=embedded-sentiment", "task.max_length=8"])
    task, info = cache.prepare_task(shorter, kind, tokenizer, family, trains=True)
    assert info["cache"] == "miss" and max(len(f["input_ids"]) for f in task.train) <= 8

    Path(info1["cache_path"]).write_bytes(b"half-written")
    assert cache.prepare_task(cfg, kind, tokenizer, family, trains=True)[1]["cache"] == "miss"
    assert cache.prepare_task(cfg, kind, tokenizer, family, trains=True)[1]["cache"] == "hit"

    off = make_cfg(["model=tiny-bert", "task=embedded-sentiment", "cache_data=false"])
    task, info = cache.prepare_task(off, kind, tokenizer, family, trains=True)
    assert info["cache"] == "off" and info["cache_path"] is None and task.train == first.train


def test_cache_key_covers_the_row_reading_code_and_the_tokenizer_libraries(monkeypatch):
    """bench/tasks/data.py reads and selects the rows, and transformers/tokenizers turn them into ids:
    a change to that code or an upgrade of either library is a new key (no stale features)."""
    import inspect
    from importlib import metadata

    import bench.tasks.cache as cache
    import bench.tasks.data as data
    from bench.models import sources as models
    from bench.tasks import get_kind

    cfg = make_cfg(["model=tiny-bert", "task=embedded-sentiment"])
    family = validate(cfg).family
    tokenizer, kind = models.load_tokenizer(cfg.model), get_kind(cfg.task.kind)
    key = cache.cache_key(cfg, kind, tokenizer, family, trains=True)
    assert cache.cache_key(cfg, kind, tokenizer, family, trains=True) == key  # stable

    source = inspect.getsource
    with monkeypatch.context() as patch:  # data.py edited
        patch.setattr(inspect, "getsource", lambda obj: source(obj) + ("\n# edited" if obj is data else ""))
        assert cache.cache_key(cfg, kind, tokenizer, family, trains=True) != key
    version = metadata.version
    for library in ("transformers", "tokenizers"):
        with monkeypatch.context() as patch:  # the library upgraded
            patch.setattr(metadata, "version", lambda name, lib=library: "999.0" if name == lib else version(name))
            assert cache.cache_key(cfg, kind, tokenizer, family, trains=True) != key, library
    assert cache.cache_key(cfg, kind, tokenizer, family, trains=True) == key


def test_a_knob_added_later_at_its_default_keeps_earlier_records_hashes():
    from omegaconf import OmegaConf

    from bench.records.store import config_digest

    plain = OmegaConf.to_container(make_cfg(["task=sst2"]), resolve=True)
    earlier = {**plain, "train": {k: v for k, v in plain["train"].items() if k != "group_by_length"}}
    assert plain["train"]["group_by_length"] is False
    assert config_digest(plain) == config_digest(earlier)
    assert config_digest({**plain, "train": {**plain["train"], "group_by_length": True}}) != config_digest(earlier)


class _Payload:
    """Unpickling this creates `marker`: proof that a planted pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_planted_in_the_cache_is_never_run_and_the_entry_is_rebuilt(tmp_path, monkeypatch):
    """The cache is read as JSON only: a pickle (or any foreign file) under the key's name is not
    executed, the run tokenises anew, and the rebuilt entry is then served."""
    import pickle

    import bench.tasks.cache as cache
    from bench.models import sources as models
    from bench.tasks import get_kind

    monkeypatch.setattr(cache, "cache_root", lambda: tmp_path / "cache")
    cfg = make_cfg(["model=tiny-bert", "task=embedded-sentiment", "eval.max_examples=20"])
    family = validate(cfg).family
    tokenizer, kind = models.load_tokenizer(cfg.model), get_kind(cfg.task.kind)
    fresh, info = cache.prepare_task(cfg, kind, tokenizer, family, trains=True)
    entry = Path(info["cache_path"])
    marker = tmp_path / "payload-ran"
    planted = pickle.dumps((_Payload(marker), []), protocol=pickle.HIGHEST_PROTOCOL)
    for foreign in (planted, pickle.dumps((_Payload(marker), []), protocol=0),  # protocol 0 is ASCII: read as text, it is still not JSON
                    json.dumps({"format": 1, "key": "someone else's", "train": [], "eval": []}).encode(), b"[1, 2, 3]"):
        entry.write_bytes(foreign)
        entry.with_suffix(".pkl").write_bytes(planted)  # the old format's name for this key
        task, info = cache.prepare_task(cfg, kind, tokenizer, family, trains=True)
        assert not marker.exists() and info["cache"] == "miss"
        assert task.train == fresh.train and task.eval == fresh.eval and len(task.eval) == 20
        assert cache.prepare_task(cfg, kind, tokenizer, family, trains=True)[1]["cache"] == "hit"  # rebuilt as JSON
        assert json.loads(entry.read_text())["key"] == entry.stem


def test_the_data_section_counts_inputs_cut_by_the_length_limit_per_split(tmp_path, monkeypatch):
    """classification: inputs longer than task.max_length; summarization: sources longer than
    task.max_source_tokens; counted by hand with the same tokenizer, and the same from the cache."""
    import bench.tasks.cache as cache
    from bench.models import sources as models
    from bench.tasks import get_kind
    from conftest import write_dialogsum_like

    monkeypatch.setattr(cache, "cache_root", lambda: tmp_path / "cache")
    cfg = make_cfg(["model=tiny-bert", "task=embedded-sentiment", "task.max_length=10", "eval.max_examples=50"])
    family = validate(cfg).family
    tokenizer, kind = models.load_tokenizer(cfg.model), get_kind(cfg.task.kind)
    train, scored = cache._rows(cfg, trains=True)
    by_hand = {split: sum(len(tokenizer(r["sentence"])["input_ids"]) > 10 for r in rows) for split, rows in (("train", train), ("eval", scored))}
    assert 0 < by_hand["train"] < len(train) and 0 < by_hand["eval"] < len(scored)  # the limit cuts some inputs, not all
    for expected_cache in ("miss", "hit"):
        task, info = cache.prepare_task(cfg, kind, tokenizer, family, trains=True)
        assert info["cache"] == expected_cache and info["truncated"] == by_hand
        assert max(len(f["input_ids"]) for f in task.train) == 10
    roomy = make_cfg(["model=tiny-bert", "task=embedded-sentiment", "task.max_length=64", "eval.max_examples=50"])
    assert cache.prepare_task(roomy, kind, tokenizer, family, trains=True)[1]["truncated"] == {"train": 0, "eval": 0}

    root = write_dialogsum_like(tmp_path / "data", n=6)
    for limit in (12, 1000):
        t5 = make_cfg(["model=tiny-t5", "task=dialogsum", f"data_root={root}", f"task.max_source_tokens={limit}"])
        t5_tokenizer = models.load_tokenizer(t5.model)
        train, scored = cache._rows(t5, trains=True)
        count = lambda rows: sum(len(t5_tokenizer(r["dialogue"], add_special_tokens=False)["input_ids"]) > limit for r in rows)  # noqa: E731
        _, info = cache.prepare_task(t5, get_kind("summarization"), t5_tokenizer, validate(t5).family, trains=True)
        assert info["truncated"] == {"train": count(train), "eval": count(scored)} == ({"train": 6, "eval": 6} if limit == 12 else {"train": 0, "eval": 0})
