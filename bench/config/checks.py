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
from bench.config.schema import SCHEMA, SECTIONS, _is_int, _is_number, boolean, check_sections, choice, int_at_least, number_in, optional_int  # noqa: F401
from bench.errors import ConfigError
from bench.tasks.cache import check_parts
from bench.tasks.data import FORMATS, read_numbered, split_file

CONF = Path(__file__).resolve().parents[2] / "conf"

SOURCES = ("hub", "local", "asset", "config")
FAMILIES = ("encoder", "decoder", "encoder-decoder")
POOLINGS = ("mean", "cls", "last")
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZE = ("nf4", "fp4", "int8")  # model.quantize: the frozen base's linear layers in 4-bit (NF4, FP4) or 8-bit (LLM.int8) through bitsandbytes


def _not_training() -> tuple[str, ...]:
    """The methods that evaluate the model as it is: those whose `register(...)` in bench/methods/
    declares `trains=False`, read from the source text (the registry imports torch; the plain checks
    must not, and a regex over seven files takes well under a millisecond), so a method's own file
    stays the one place that says it."""
    call = re.compile(r"register\(\s*\"([\w-]+)\"((?:[^()]|\([^()]*\))*)\)")
    return tuple(name for path in sorted((Path(__file__).resolve().parents[1] / "methods").glob("*.py"))
                 for name, args in call.findall(path.read_text()) if re.search(r"\btrains\s*=\s*False\b", args))


NOT_TRAINING = _not_training()  # methods that train nothing, as their files declare (tests/test_preflight.py holds it to the registry)

GROUPS = ("model", "task", "method", "tracking")  # chosen with group=option; their keys are checked by kind below


@functools.cache
def known_keys() -> dict[str, frozenset[str]]:
    """The keys of the run config's top level ("") and fixed sections: bench.config.schema's table
    (a test holds conf/config.yaml to it). Any other key is a typo or a stale override (`+foo=bar`
    would even change the config hash)."""
    return {"": frozenset(SCHEMA[""]) | frozenset(GROUPS) | frozenset(SECTIONS), **{s: frozenset(SCHEMA[s]) for s in SECTIONS}}


MODEL_KEYS = frozenset({"name", "source", "path", "arch", "tokenizer", "family", "pooling", "dtype", "size", "quantize", "double_quant",
                        "head_dropout"})  # head_dropout: optional (+model.head_dropout=0.0), the new classification head's dropout; 0.1 when absent
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


# ---------------------------------------------------------------- the whole config
def check(cfg: DictConfig) -> None:
    """Every plain check, roughly in the order a reader meets the keys; raises the first ConfigError."""
    check_keys(cfg)
    for key in known_keys()[""] - {"selection"}:  # selection: how the tuning stage chose the lr (its scores may be nan), not a knob
        value = cfg.get(key)
        check_finite(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value, key)
    check_method(cfg.method)
    check_sections(cfg, trains=cfg.method.name not in NOT_TRAINING)  # every knob's type, range and choices, from the schema
    check_tracking(cfg)
    check_model(cfg.model)
    check_dtype(cfg.model, device_is_cpu(cfg.device))
    check_across_knobs(cfg)
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
    if tcfg.name == "mlflow":
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:  # an optional extra: refused here, before any model loads, not after training
            raise ConfigError("tracking", "mlflow", f"an installed tracker; MLflow is not installed: {tracking.MLFLOW_INSTALL} (or tracking=wandb, tracking=none)")
        for key in ("tracking_uri", "experiment"):
            if not isinstance(tcfg.get(key), str) or not tcfg.get(key).strip():
                raise ConfigError(f"tracking.{key}", tcfg.get(key), "a non-empty string")


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
    if mcfg.source == "local" and not (Path(str(mcfg.path)).expanduser() / "config.json").is_file():
        raise ConfigError("model.path", mcfg.path, "a local model directory with a config.json (as save_pretrained writes it)")
    if mcfg.source == "config":
        if not isinstance(mcfg.get("arch"), str):
            raise ConfigError("model.arch", mcfg.get("arch"), "a transformers model type such as bert, llama, t5")
        if mcfg.get("size") is not None and not isinstance(mcfg.size, DictConfig):
            raise ConfigError("model.size", mcfg.size, "null or a mapping of config fields (hidden_size: 32 ...)")
        for key, value in (mcfg.get("size") or {}).items():  # a size is a count or a rate: never negative
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"model.size.{key}", value, "a number >= 0 (a size field of the architecture's config)")
    if mcfg.source == "hub":
        check_hub_offline("model.path", str(mcfg.path))
    if mcfg.get("family") not in (None, "auto", *FAMILIES):
        raise ConfigError("model.family", mcfg.get("family"), f"auto or one of {', '.join(FAMILIES)}")
    choice(mcfg, "pooling", "model.pooling", POOLINGS, default="mean")
    if mcfg.get("head_dropout") is not None:
        number_in(mcfg, "head_dropout", "model.head_dropout", 0.0, 1.0, "the new classification head's dropout; 0 = off, "
                  "which makes a data-parallel run's curve equal the single process's", high_open=True)
    choice(mcfg, "dtype", "model.dtype", DTYPES, default="float32")
    check_quantize(mcfg)
    check_tokenizer(mcfg)


def check_quantize(mcfg: DictConfig) -> None:
    """model.quantize (null, or a bitsandbytes format for the frozen base) and model.double_quant;
    bitsandbytes must be importable (found without importing it: it imports torch). Whether the
    method leaves the quantized weights frozen is bench.config.plan's check (it needs the model)."""
    quantize = mcfg.get("quantize")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError("model.quantize", quantize, f"null (the base at model.dtype) or one of {', '.join(QUANTIZE)} "
                          "(the frozen base's linear layers in 4-bit NF4/FP4 or 8-bit LLM.int8, through bitsandbytes)")
    double = mcfg.get("double_quant", False)
    if not isinstance(double, bool):
        raise ConfigError("model.double_quant", double, "true or false (4-bit only: quantize the per-block scales too)")
    if double and quantize not in ("nf4", "fp4"):
        raise ConfigError("model.double_quant", double, f"false with model.quantize={'null' if quantize is None else quantize} (double quantization is for the 4-bit formats nf4, fp4)")
    if quantize is not None:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("model.quantize", quantize, "null here: bitsandbytes is not installed "
                              "(pip install 'bitsandbytes>=0.50.2,<0.51', a dependency of peft-bench)")


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
    """The method's learning rate, and each of its knobs' types against conf/method/<name>.yaml
    (a number where the default is a number, true/false where it is a boolean; a knob whose default
    is null names modules: null, a name or a list of names). Ranges and what a knob means for a
    model are the method's own `check` in bench.methods, which needs torch."""
    if not isinstance(mcfg.get("name"), str):
        raise ConfigError("method.name", mcfg.get("name"), "a method name such as lora, full, prompt_tuning")
    if mcfg.get("lr") is not None:
        number_in(mcfg, "lr", "method.lr", 0.0, 10.0, "the method's default peak learning rate")
    defaults_file = CONF / "method" / f"{mcfg.name}.yaml"
    if not defaults_file.is_file():
        return  # an unknown method: the registry names the known ones
    defaults = OmegaConf.to_container(OmegaConf.load(defaults_file))
    assert isinstance(defaults, dict)
    plain = OmegaConf.to_container(mcfg, resolve=True)
    assert isinstance(plain, dict)
    check_like_defaults(plain, {k: v for k, v in defaults.items() if k not in METHOD_SHARED_KEYS and k != "about"}, "method")


def check_like_defaults(values: dict, defaults: dict, where: str) -> None:
    """Each knob's type against its default's, into nested sections (a YAML method's `config:`)."""
    for key, default in defaults.items():
        if key not in values:
            continue
        value = values[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}", value, f"a section of keys such as {{{', '.join(list(default)[:3])}}}")
            check_like_defaults(value, default, f"{where}.{key}")
            continue
        if isinstance(default, str) and default.startswith("${"):
            continue  # an interpolation (AdaLoRA's total_step: ${train.max_steps}): its target is checked where it lives
        if isinstance(default, bool) and where == "method.config":  # peft's union fields (init_weights: true | bat | mini)
            ok, what = isinstance(value, (bool, str)), "true, false or one of the names peft's config accepts"
        elif isinstance(default, bool):
            ok, what = isinstance(value, bool), "true or false"
        elif isinstance(default, (int, float)):
            ok, what = _is_number(value), f"a number (the default is {default})"
        elif isinstance(default, str):
            ok, what = isinstance(value, str), f"a string (the default is {default})"
        elif isinstance(default, list):
            ok, what = isinstance(value, list), f"a list such as [a,b] (the default is {default})"
        else:  # null: module names
            ok = value is None or isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            what = "null, a module name or a list of names such as [query,value]"
        if not ok:
            raise ConfigError(f"{where}.{key}", value, what)


def check_across_knobs(cfg: DictConfig) -> None:
    """What the schema cannot say of one knob alone: a file that must exist, and knobs that need each other (their types and ranges are checked already)."""
    if cfg.forgetting.get("text") and not Path(str(cfg.forgetting.text)).expanduser().is_file():
        raise ConfigError("forgetting.text", cfg.forgetting.text, "an existing text file, or null for the embedded sample")
    check_validation(cfg)
    check_loss_score(cfg)
    check_world_size(cfg)
    stop = cfg.train.get("stop_after")
    if stop is not None and stop > cfg.train.max_steps:
        raise ConfigError("train.stop_after", stop, f"null or an integer from 1 to train.max_steps={cfg.train.max_steps} (it stops early on max_steps' schedule)")


def check_world_size(cfg: DictConfig) -> None:
    """Data-parallel: every process takes an equal slice of every batch, so the batch divides."""
    world, batch = cfg.train.get("world_size", 1), cfg.train.batch_size
    if world > 1 and batch % world:
        below = batch - batch % world
        nearest = f"{below} or {below + world}" if below else str(world)
        raise ConfigError("train.batch_size", batch, f"a multiple of train.world_size={world} (each of the {world} processes "
                          f"takes an equal slice of every batch: {nearest})")


def check_loss_score(cfg: DictConfig) -> None:
    """Scoring trials by the loss on their references (tune.score=loss, validation.score=loss) needs a
    task kind that computes it (classification: the labels' cross-entropy; summarization: the
    reference summaries'); a kind whose metric is a loss already (synthetic) has nothing to add."""
    for key, section in (("tune.score", cfg.get("tune")), ("validation.score", cfg.get("validation"))):
        if section is not None and section.get("score") == "loss" and not kinds()[cfg.task.kind].scores_loss:
            able = ", ".join(sorted(name for name, kind in kinds().items() if kind.scores_loss))
            raise ConfigError(key, "loss", f"metric for a {cfg.task.kind} task (loss scores a {able} task's references)")


def check_validation(cfg: DictConfig) -> None:
    """The split carved from train: scoring it needs rows in it."""
    v = cfg.get("validation")
    if v is not None and v.score_on == "validation" and v.examples == 0:
        raise ConfigError("validation.examples", 0, "an integer >= 1 when validation.score_on=validation (the rows to score)")


# ---------------------------------------------------------------- the task and its data
def check_task(tcfg: DictConfig) -> None:
    """The keys every task has, then its kind's own (the kind's module checks them)."""
    choice(tcfg, "kind", "task.kind", tuple(sorted(kinds())))
    kind = kinds()[tcfg.kind]
    if kind.reads_rows:
        choice(tcfg, "format", "task.format", FORMATS)
    from bench.measure.metrics import METRICS  # the metric registry (torch-free): each metric's name and direction

    metrics = tcfg.get("metrics")
    valid = f"a list of {', '.join(kind.metrics)} (the first is the main metric)"
    if not isinstance(metrics, ListConfig) or not metrics:
        raise ConfigError("task.metrics", metrics, valid)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:  # not a metric at all (a typo): the registry's names, beside the ones this kind computes
        raise ConfigError("task.metrics", metrics, f"{valid}; {', '.join(map(repr, unknown))}: not a known metric "
                          f"(registered in bench.measure.metrics: {', '.join(METRICS)})")
    if any(m not in kind.metrics for m in metrics):
        raise ConfigError("task.metrics", metrics, f"{valid}: a {tcfg.kind} task computes only these")
    optional_int(tcfg, "max_train_examples", "task.max_train_examples", 1, "every training row")
    if kind.reads_rows and tcfg.format == "embedded":
        for key in ("num_train", "num_eval"):
            int_at_least(tcfg, key, f"task.{key}", 1, "generated examples")
    kind.check(tcfg)


def check_data(cfg: DictConfig) -> None:
    """A local task's files: they exist, parse (data.py names the file and line otherwise), have
    rows, and every row has the fields the task reads and, for classification, a listed label.
    A generated task's training rows are counted from its config (task.num_train)."""
    tcfg = cfg.task
    held_out = (cfg.get("validation") or {}).get("examples", 0)
    if tcfg.format == "embedded" and _is_int(tcfg.get("num_train")) and held_out >= tcfg.num_train:
        raise ConfigError("validation.examples", held_out, f"fewer than the {tcfg.num_train:,} rows of the training split (task.num_train)")
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
