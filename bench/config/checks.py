"""The plain checks of a whole composed config: types, ranges, choices, unknown keys, the data
files and every row, the model's files. Why a module of its own: importing torch and transformers
costs seconds, and a bad value must answer in well under two, with the field, the value and what
would be valid. So this module imports no torch, transformers or peft; `python -m bench` runs it
before the run's code is imported, and `bench.config.plan.validate` runs it first, then the checks that
need the model's architecture (positions, shapes, module names)."""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.models import assets
from bench.errors import ConfigError
from bench.tasks.cache import check_parts
from bench.tasks.data import FORMATS, read_numbered, split_file

CONF = Path(__file__).resolve().parents[2] / "conf"

SOURCES = ("hub", "local", "asset", "config")
FAMILIES = ("encoder", "decoder", "encoder-decoder")
POOLINGS = ("mean", "cls", "last")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("linear", "cosine", "constant")
ATTENTION = ("auto", "sdpa", "eager")
PRECISIONS = ("fp32", "bf16")
SCORE_ON = ("eval", "validation")
NOT_TRAINING = ("none",)  # methods that evaluate the model as it is (their `trains` is False in bench.methods)

SECTIONS = ("train", "speed", "eval", "validation", "tune", "inference", "forgetting", "estimate")  # their keys: conf/config.yaml's
GROUPS = ("model", "task", "method", "tracking")  # chosen with group=option; their keys are checked by kind below
# Keys accepted that the default config need not set (knobs another part of the suite owns).
OPTIONAL_KEYS = {"": frozenset({"max_attempts"}), "eval": frozenset({"keep_predictions"})}


@functools.cache
def known_keys() -> dict[str, frozenset[str]]:
    """The keys conf/config.yaml sets, at the top level ("") and per fixed section, plus the optional
    ones: any other key is a typo or a stale override (`+foo=bar` would even change the config hash).
    Read from the file itself (milliseconds), so a knob added there is known here at once."""
    default = OmegaConf.load(CONF / "config.yaml")
    top = (set(default.keys()) - {"defaults", "hydra"}) | set(GROUPS) | OPTIONAL_KEYS[""]
    return {"": frozenset(top), **{s: frozenset(set(default[s].keys()) | OPTIONAL_KEYS.get(s, frozenset())) for s in SECTIONS}}


MODEL_KEYS = frozenset({"name", "source", "path", "arch", "tokenizer", "family", "pooling", "dtype", "size"})
# Task keys: every kind's, then each kind's own. The split keys (eval_fraction ...) take disjoint
# parts of one file for train and eval.
TASK_KEYS = frozenset({"name", "kind", "format", "path", "subset", "train_split", "eval_split", "columns", "metrics",
                       "max_train_examples", "seed", "num_train", "num_eval",
                       "eval_fraction", "split_seed", "train_rows", "eval_rows"})
METHOD_SHARED_KEYS = frozenset({"name", "lr"})  # every method has these; the rest are its own conf/method/<name>.yaml's


def kinds() -> dict[str, Any]:
    """The task kinds' declarations (bench.tasks: each kind module declares its keys, metrics and
    checks; none loads torch when imported)."""
    from bench.tasks import kinds as registered

    return registered()


def task_all_keys() -> frozenset[str]:
    """Every key some kind reads: a task whose kind is missing or misspelt is checked against these."""
    return TASK_KEYS.union(*(k.keys for k in kinds().values()))


# ---------------------------------------------------------------- typed values
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_at_least(section: Any, key: str, field: str, low: int, what: str) -> int:
    value = section.get(key)
    if not _is_int(value) or value < low:
        raise ConfigError(field, value, f"an integer >= {low} ({what})")
    return value


def optional_int(section: Any, key: str, field: str, low: int, what: str) -> None:
    if section.get(key) is not None:
        int_at_least(section, key, field, low, f"null = {what}")


def number_in(section: Any, key: str, field: str, low: float, high: float, what: str,
              low_open: bool = False, high_open: bool = False) -> float:
    value = section.get(key)
    ok = _is_number(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(field, value, f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'} ({what})")
    return value


def boolean(section: Any, key: str, field: str) -> None:
    if not isinstance(section.get(key), bool):
        raise ConfigError(field, section.get(key), "true or false")


def choice(section: Any, key: str, field: str, valid: tuple[Any, ...], default: Any = None) -> None:
    value = section.get(key, default)
    if value not in valid:
        raise ConfigError(field, value, f"one of {', '.join(str(v) for v in valid)}")


# ---------------------------------------------------------------- the whole config
def check(cfg: DictConfig) -> None:
    """Every plain check, roughly in the order a reader meets the keys; raises the first ConfigError."""
    check_keys(cfg)
    for key in known_keys()[""] - {"selection"}:  # selection: how the tuning stage chose the lr (its scores may be nan), not a knob
        value = cfg.get(key)
        check_finite(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value, key)
    check_top(cfg)
    check_tracking(cfg)
    check_model(cfg.model)
    check_dtype(cfg.model, device_is_cpu(cfg.device))
    check_method(cfg.method)
    check_train_eval(cfg, cfg.method.name not in NOT_TRAINING)
    check_task(cfg.task)
    check_text_needs(cfg)
    if kinds()[cfg.task.kind].reads_rows:
        check_data(cfg)
        check_parts(cfg.task, cfg.data_root)  # train and eval parts of one file never overlap


def check_text_needs(cfg: DictConfig) -> None:
    """A model without a tokenizer (model.tokenizer: null, built from config) can only train on a
    kind that makes its own token ids (synthetic), and cannot score forgetting's general text."""
    if cfg.model.source != "config" or cfg.model.get("tokenizer") is not None:
        return
    if kinds()[cfg.task.kind].reads_rows:
        raise ConfigError("model.tokenizer", None, f"a tokenizer for task {cfg.task.name} (its rows are text); "
                          "only a synthetic task needs none")
    if cfg.forgetting.enabled:
        raise ConfigError("forgetting.enabled", True, "false for a model without a tokenizer (forgetting scores general text)")


def check_keys(cfg: DictConfig) -> None:
    """No key the suite does not read: the top level, the fixed sections, the model, the task (by
    kind; every kind's keys when its kind is misspelt) and the method (the shared name and lr, and
    the keys of its own conf/method/<name>.yaml)."""
    known = known_keys()
    _known(cfg, "", known[""], ignore=("hydra",))  # Hydra's own settings: there when composed with return_hydra_config (the tuning stage)
    for section in SECTIONS:
        if isinstance(cfg.get(section), DictConfig):
            _known(cfg[section], section, known[section])
    _known(cfg.model, "model", MODEL_KEYS)
    kind = cfg.task.get("kind")
    if kind in kinds():
        _known(cfg.task, "task", TASK_KEYS | kinds()[kind].keys, owner=f"a {kind} task")
    else:  # check_task names the kind; a misspelt key beside it is named first
        _known(cfg.task, "task", task_all_keys(), owner="a task of any kind")
    name = str(cfg.method.get("name"))
    keys = method_keys(name)
    if keys is not None:  # an unknown method name is refused by the registry, listing the known ones
        _known(cfg.method, "method", keys, owner=f"method {name} (conf/method/{name}.yaml)")


@functools.cache
def method_keys(name: str) -> frozenset[str] | None:
    """The keys a method reads: those of its conf/method/<name>.yaml plus the shared ones (None: no such method)."""
    defaults = CONF / "method" / f"{name}.yaml"
    if not defaults.is_file():
        return None
    return frozenset(OmegaConf.load(defaults).keys()) | METHOD_SHARED_KEYS


def all_method_keys() -> frozenset[str]:
    """Every key some method reads (a `method.key=` override before the method is known)."""
    return frozenset().union(*(method_keys(p.stem) or () for p in (CONF / "method").glob("*.yaml")))


OVERRIDE = re.compile(r"(?P<section>[A-Za-z_]\w*)\.(?P<key>[A-Za-z_]\w*)[\w.]*=(?P<value>.*)", re.S)


def check_overrides(args: list[str]) -> None:
    """`method.rr=8` on the command line (no +) makes Hydra stop with "Key 'rr' is not in struct",
    which names no valid key: refuse a key the section cannot have first, listing the ones it can.
    The method is the one `method=NAME` chooses; without it, any method's key passes here (the
    composed config's check_keys then names the chosen method's). `+key=` additions are left to
    check_keys, which sees the composed config."""
    chosen = [a.split("=", 1)[1] for a in args if a.startswith("method=")]
    keys = method_keys(chosen[-1]) if chosen else None
    known = known_keys()
    sets: dict[str, tuple[frozenset[str], str]] = {
        "method": (keys, f"method {chosen[-1]} has") if keys is not None else (all_method_keys(), "the methods have"),
        "task": (task_all_keys(), "the task kinds have"), "model": (MODEL_KEYS, "model has"),
        **{section: (known[section], f"{section} has") for section in SECTIONS},
    }
    for arg in args:
        match = OVERRIDE.fullmatch(arg)
        if match is None or match["section"] not in sets:
            continue  # an option (-m, --config-dir), a group choice, a +/++/~ edit, or a section checked later
        valid, owner = sets[match["section"]]
        if match["key"] not in valid:
            raise ConfigError(f"{match['section']}.{match['key']}", match["value"], f"a known key; {owner}: {', '.join(sorted(valid))}")


def _known(section: DictConfig, prefix: str, known: frozenset[str], ignore: tuple[str, ...] = (), owner: str = "") -> None:
    for key in section.keys():
        if key not in known and key not in ignore:
            field = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(field, section.get(key), f"a known key; {owner or prefix or 'the top level'} has: {', '.join(sorted(known))}")


def check_finite(value: Any, field: str) -> None:
    """nan and inf pass every `x > 0` test and then poison a run (method.alpha=nan): refused anywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(field, value, "a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_finite(item, f"{field}[{i}]")


def check_top(cfg: DictConfig) -> None:
    if not _is_int(cfg.get("seed")) or cfg.seed < 0:
        raise ConfigError("seed", cfg.get("seed"), "an integer >= 0")
    choice(cfg, "device", "device", DEVICES)
    int_at_least(cfg, "threads", "threads", 0, "torch CPU threads; 0 = this job's share of the cores")
    for key in ("keep_artifacts", "cache_data", "force"):
        boolean(cfg, key, key)
    if "max_attempts" in cfg:  # the sweeper's own check, run for a single run's config too
        from bench.records.store import check_max_attempts

        check_max_attempts(cfg.max_attempts)
    if not isinstance(cfg.get("data_root"), str) or not cfg.data_root:
        raise ConfigError("data_root", cfg.get("data_root"), "a folder that holds the datasets (ours: ../shared/datasets)")


def check_tracking(cfg: DictConfig) -> None:
    from bench.records import tracking

    tcfg = cfg.get("tracking")
    if tcfg is None:
        return
    if tcfg.get("name") not in tracking.BACKENDS:
        raise ConfigError("tracking", tcfg.get("name"), f"one of {', '.join(tracking.BACKENDS)}")
    if tcfg.name == "wandb":
        choice(tcfg, "mode", "tracking.mode", tracking.MODES)
        number_in(tcfg, "init_timeout", "tracking.init_timeout", 0.0, 3600.0, "seconds W&B may take to start", low_open=True)


# ---------------------------------------------------------------- the model
def check_model(mcfg: DictConfig) -> None:
    """Where the weights and the tokenizer come from, read from the disk only (no download)."""
    choice(mcfg, "source", "model.source", SOURCES)
    if mcfg.source == "asset" and mcfg.get("path") not in assets.ASSETS:
        raise ConfigError("model.path", mcfg.get("path"), f"an offline asset: {', '.join(assets.ASSETS)}")
    if mcfg.source == "asset" and (refusal := assets.terms_refusal(mcfg.path)):
        raise ConfigError("model.path", mcfg.path, f"an asset whose terms you accepted: {refusal}")
    if mcfg.source == "local" and not Path(str(mcfg.get("path"))).expanduser().is_dir():
        raise ConfigError("model.path", mcfg.get("path"), "an existing local model directory")
    if mcfg.source == "config":
        if not isinstance(mcfg.get("arch"), str):
            raise ConfigError("model.arch", mcfg.get("arch"), "a transformers model type such as bert, llama, t5")
        if mcfg.get("size") is not None and not isinstance(mcfg.size, DictConfig):
            raise ConfigError("model.size", mcfg.size, "null or a mapping of config fields (hidden_size: 32 ...)")
    if mcfg.source == "hub":
        check_hub_offline("model.path", str(mcfg.path))
    if mcfg.get("family") not in (None, "auto", *FAMILIES):
        raise ConfigError("model.family", mcfg.get("family"), f"auto or one of {', '.join(FAMILIES)}")
    choice(mcfg, "pooling", "model.pooling", POOLINGS, default="mean")
    choice(mcfg, "dtype", "model.dtype", DTYPES, default="float32")
    check_tokenizer(mcfg)


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check_tokenizer(mcfg: DictConfig) -> None:
    """model.tokenizer: an offline asset, an existing folder, or a hub id (null = the model's own)."""
    name = mcfg.get("tokenizer")
    if name is None or name in assets.ASSETS or Path(str(name)).expanduser().is_dir():
        return
    if not isinstance(name, str) or not HUB_ID.fullmatch(name) or ".." in name:
        raise ConfigError("model.tokenizer", name, f"an offline asset ({', '.join(assets.ASSETS)}), an existing folder, or a hub id (org/name)")
    check_hub_offline("model.tokenizer", name)


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_hub_offline(field: str, repo_id: str) -> None:
    """Offline, a hub id must already be in the local Hugging Face cache (otherwise transformers
    fails after the run started, with a long traceback)."""
    if not hub_offline():
        return
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the cache (or not a valid id): either way not loadable offline
        raise ConfigError(field, repo_id, "a model available offline: HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set and it is not in the "
                          "Hugging Face cache; download it where the hub is reachable (unset HF_HUB_OFFLINE), or use "
                          "model.source=local with its folder, or an offline asset (model=minilm-l6)") from None


def device_is_cpu(device: str) -> bool:
    """True when the run will surely be on the CPU. device=auto without any GPU device node (Linux)
    or on macOS is the CPU; where this cannot be told without torch, False (validate asks torch)."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    if sys.platform == "darwin":
        return True
    nodes = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")  # NVIDIA, WSL, ROCm
    return sys.platform.startswith("linux") and not any(os.path.exists(n) for n in nodes)


def check_dtype(mcfg: DictConfig, on_cpu: bool) -> None:
    """float16 weights on the CPU are refused: CPU kernels lack or emulate half precision (such a
    run failed only after the model loaded), while bfloat16 is the CPU's half-size dtype."""
    if on_cpu and mcfg.get("dtype") == "float16":
        raise ConfigError("model.dtype", "float16", "float32 or bfloat16 on the CPU (float16 needs a CUDA device)")


# ---------------------------------------------------------------- the method, training, evaluation
def check_method(mcfg: DictConfig) -> None:
    """The method's learning rate; its own fields are checked by its `check` in bench.methods."""
    if not isinstance(mcfg.get("name"), str):
        raise ConfigError("method.name", mcfg.get("name"), "a method name such as lora, full, prompt_tuning")
    if mcfg.get("lr") is not None:
        number_in(mcfg, "lr", "method.lr", 0.0, 10.0, "the method's default peak learning rate")


def check_speed(cfg: DictConfig) -> None:
    sp = cfg.get("speed") or {}
    choice(sp, "attention", "speed.attention", ATTENTION, default="auto")
    choice(sp, "precision", "speed.precision", PRECISIONS, default="fp32")
    for key in ("compile", "gradient_checkpointing"):
        if not isinstance(sp.get(key, False), bool):
            raise ConfigError(f"speed.{key}", sp.get(key), "true or false")
    if sp.get("fused_adamw", "auto") not in ("auto", True, False):
        raise ConfigError("speed.fused_adamw", sp.get("fused_adamw"), "auto, true or false")


def check_train_eval(cfg: DictConfig, trains: bool) -> None:
    t, e = cfg.train, cfg.eval
    if trains:
        int_at_least(t, "max_steps", "train.max_steps", 1, "optimizer steps")
        number_in(t, "lr", "train.lr", 0.0, 10.0, "peak learning rate", low_open=True)
    int_at_least(t, "batch_size", "train.batch_size", 1, "examples per micro-batch")
    int_at_least(t, "grad_accum_steps", "train.grad_accum_steps", 1, "micro-batches per optimizer step")
    number_in(t, "warmup_ratio", "train.warmup_ratio", 0.0, 1.0, "fraction of steps spent warming up")
    number_in(t, "weight_decay", "train.weight_decay", 0.0, 1.0, "AdamW weight decay")
    for key in ("adam_beta1", "adam_beta2"):
        number_in(t, key, f"train.{key}", 0.0, 1.0, "AdamW's moving-average coefficient", high_open=True)
    number_in(t, "max_grad_norm", "train.max_grad_norm", 0.0, 1e6, "0 turns clipping off")
    int_at_least(t, "eval_every", "train.eval_every", 0, "0 = evaluate only at the end")
    int_at_least(t, "log_every", "train.log_every", 1, "steps between progress lines")
    int_at_least(t, "timing_warmup_steps", "train.timing_warmup_steps", 0, "steps left out of the median step time")
    if not isinstance(t.get("group_by_length", False), bool):
        raise ConfigError("train.group_by_length", t.group_by_length, "true or false")
    choice(t, "schedule", "train.schedule", SCHEDULES)
    number_in(t, "diverge_factor", "train.diverge_factor", 0.0, 1e9, "0 turns the divergence check off")
    check_speed(cfg)
    optional_int(e, "max_examples", "eval.max_examples", 1, "the whole eval split")
    int_at_least(e, "batch_size", "eval.batch_size", 1, "examples per eval batch")
    int_at_least(e, "max_new_tokens", "eval.max_new_tokens", 1, "generation length bound")
    int_at_least(e, "keep_predictions", "eval.keep_predictions", 0, "predictions the record keeps; 0 = none")
    boolean(cfg.inference, "enabled", "inference.enabled")
    for key, what in (("examples", "eval examples timed"), ("batch_size", "the larger batch"),
                      ("max_new_tokens", "tokens generated per example"), ("repeats", "timing rounds")):
        int_at_least(cfg.inference, key, f"inference.{key}", 1, what)
    boolean(cfg.forgetting, "enabled", "forgetting.enabled")
    int_at_least(cfg.forgetting, "max_tokens", "forgetting.max_tokens", 8, "tokens per scored chunk")
    int_at_least(cfg.forgetting, "max_chunks", "forgetting.max_chunks", 1, "chunks scored")
    if cfg.forgetting.get("text") and not Path(str(cfg.forgetting.text)).expanduser().is_file():
        raise ConfigError("forgetting.text", cfg.forgetting.text, "an existing text file, or null for the embedded sample")
    if cfg.get("estimate") is not None:
        optional_int(cfg.estimate, "seq_len", "estimate.seq_len", 1, "the task's longest input")
    check_validation(cfg)


def check_validation(cfg: DictConfig) -> None:
    """The split carved from train; the tuning knobs, which the sweeper also checks before launching."""
    v = cfg.get("validation")
    if v is not None:
        int_at_least(v, "examples", "validation.examples", 0, "training rows held out; 0 = none")
        int_at_least(v, "seed", "validation.seed", 0, "which rows are held out")
        choice(v, "score_on", "validation.score_on", SCORE_ON)
        if v.score_on == "validation" and v.examples == 0:
            raise ConfigError("validation.examples", 0, "an integer >= 1 when validation.score_on=validation (the rows to score)")
    if cfg.get("tune") is not None:
        from bench.sweep.tune import check as check_tune

        boolean(cfg.tune, "enabled", "tune.enabled")
        check_tune(cfg.tune)


# ---------------------------------------------------------------- the task and its data
def check_task(tcfg: DictConfig) -> None:
    """The keys every task has, then its kind's own (the kind's module checks them)."""
    choice(tcfg, "kind", "task.kind", tuple(sorted(kinds())))
    kind = kinds()[tcfg.kind]
    if kind.reads_rows:
        choice(tcfg, "format", "task.format", FORMATS)
    metrics = tcfg.get("metrics")
    if not isinstance(metrics, ListConfig) or not metrics or any(m not in kind.metrics for m in metrics):
        raise ConfigError("task.metrics", metrics, f"a list of {', '.join(kind.metrics)} (the first is the main metric)")
    optional_int(tcfg, "max_train_examples", "task.max_train_examples", 1, "every training row")
    if kind.reads_rows and tcfg.format == "embedded":
        for key in ("num_train", "num_eval"):
            int_at_least(tcfg, key, f"task.{key}", 1, "generated examples")
    kind.check(tcfg)


def check_data(cfg: DictConfig) -> None:
    """A local task's files: they exist, parse (data.py names the file and line otherwise), have
    rows, and every row has the fields the task reads and, for classification, a listed label."""
    tcfg = cfg.task
    if tcfg.format not in ("tsv", "jsonl"):
        return
    root = Path(str(cfg.data_root)).expanduser()
    if not root.is_dir() and not Path(str(tcfg.path)).is_absolute():  # an absolute task.path needs no data_root
        raise ConfigError("data_root", cfg.data_root, "an existing folder that holds the datasets (ours: ../shared/datasets)")
    for split in ("train", "eval"):
        if not tcfg.get(f"{split}_split"):
            continue  # a task that carves this split from the other file
        path = split_file(tcfg, cfg.data_root, split)
        if not path.is_file():
            raise ConfigError("data_root", cfg.data_root, f"a folder containing {Path(tcfg.path) / tcfg[f'{split}_split']} "
                              f"(task {tcfg.name}, {split} split); {path} does not exist")
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, split, repr(OmegaConf.to_container(tcfg, resolve=True)))
        if key not in _ROW_COUNTS:
            rows = read_numbered(tcfg, cfg.data_root, split)
            check_rows(tcfg, split, path, rows)
            _ROW_COUNTS[key] = len(rows)
        held_out = (cfg.get("validation") or {}).get("examples", 0)
        if split == "train" and held_out >= _ROW_COUNTS[key]:
            raise ConfigError("validation.examples", held_out, f"fewer than the {_ROW_COUNTS[key]:,} rows of {path.name}")


# Files whose rows passed, with their row counts, by (path, size, mtime, split, task config): a sweep
# validates every point in one process, and the app's plain checks run again in validate.
_ROW_COUNTS: dict[tuple, int] = {}


def check_rows(tcfg: DictConfig, split: str, path: Path, rows: list[tuple[int, dict]]) -> None:
    kind = kinds()[tcfg.kind]
    wanted = kind.fields(tcfg, split)
    names = [name for _, name in wanted]
    problem = kind.row_check(tcfg)  # the kind's own check of a row's values (classification: its label is listed)
    for line, row in rows:
        if not all(name in row for name in names):
            key, name = next((key, name) for key, name in wanted if name not in row)
            raise ConfigError(key, name, f"a field of every row of {path.name}; line {line} has {', '.join(map(str, row)) or 'no fields'}")
        found = problem(row) if problem is not None else None
        if found is not None:
            key, value, valid, has = found
            raise ConfigError(key, value, f"{valid}; {path.name} line {line} has {has}")
