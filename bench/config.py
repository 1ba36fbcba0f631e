"""Validate the whole resolved config before any model weights load: a bad value fails in well
under a second with the field, the value and what would be valid."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import CONFIG_MAPPING

from bench import assets, models
from bench.errors import ConfigError
from bench.methods import Probe, get_method
from bench.tasks import get_kind
from bench.tasks.cache import check_parts
from bench.tasks.data import FORMATS, first_row_fields, split_file

SCHEDULES = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")


def _int(cfg: DictConfig, key: str, field: str, low: int, what: str) -> None:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(field, value, f"an integer >= {low} ({what})")


def _number(cfg: DictConfig, key: str, field: str, low: float, high: float, what: str, low_open: bool = False) -> None:
    value = cfg.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(field, value, f"a number in {bracket}{low}, {high}] ({what})")


def check_model(mcfg: DictConfig) -> None:
    if mcfg.source not in models.SOURCES:
        raise ConfigError("model.source", mcfg.source, f"one of {', '.join(models.SOURCES)}")
    if mcfg.source == "asset" and mcfg.path not in assets.ASSETS:
        raise ConfigError("model.path", mcfg.path, f"an offline asset: {', '.join(assets.ASSETS)}")
    if mcfg.source == "local" and not models.local_path_exists(mcfg):
        raise ConfigError("model.path", mcfg.path, "an existing local model directory")
    if mcfg.source == "config" and mcfg.get("arch") not in CONFIG_MAPPING:
        raise ConfigError("model.arch", mcfg.get("arch"), "a transformers model type such as bert, llama, t5")
    if mcfg.get("family") not in (None, "auto", *models.FAMILIES):
        raise ConfigError("model.family", mcfg.get("family"), f"auto or one of {', '.join(models.FAMILIES)}")
    if mcfg.get("pooling", "mean") not in models.POOLINGS:
        raise ConfigError("model.pooling", mcfg.get("pooling"), f"one of {', '.join(models.POOLINGS)}")
    if mcfg.get("dtype", "float32") not in ("float32", "bfloat16", "float16"):
        raise ConfigError("model.dtype", mcfg.get("dtype"), "float32, bfloat16 or float16")


def check_task(tcfg: DictConfig, data_root: str) -> None:
    get_kind(tcfg.kind)
    if tcfg.format not in FORMATS:
        raise ConfigError("task.format", tcfg.format, f"one of {', '.join(FORMATS)}")
    if tcfg.format in ("tsv", "jsonl"):
        root = Path(str(data_root)).expanduser()
        if not root.is_dir() and not Path(str(tcfg.path)).is_absolute():  # an absolute task.path needs no data_root
            raise ConfigError("data_root", data_root, "an existing folder that holds the datasets (ours: ../shared/datasets)")
        for split in ("train", "eval"):
            path = split_file(tcfg, data_root, split)
            if not path.is_file():
                raise ConfigError("data_root", data_root, f"a folder containing {Path(tcfg.path) / tcfg[f'{split}_split']} (task {tcfg.name}, {split} split); {path} does not exist")
            fields = first_row_fields(tcfg, data_root, split)
            wanted = list(tcfg.text_fields) + [tcfg.label_field] if tcfg.kind == "classification" else [tcfg.source_field]
            if split == "train" and tcfg.kind == "summarization":
                wanted.append(tcfg.target_field)
            if split == "eval" and tcfg.kind == "summarization" and tcfg.get("reference_fields"):
                wanted += list(tcfg.reference_fields)
            for name in wanted:
                if name not in fields:
                    raise ConfigError("task fields", name, f"a field of {path.name}: {', '.join(fields)}")
    _int(tcfg, "max_length" if tcfg.kind == "classification" else "max_source_tokens",
         "task.max_length" if tcfg.kind == "classification" else "task.max_source_tokens", 1, "tokens")


ATTENTION = ("auto", "sdpa", "eager")
PRECISIONS = ("fp32", "bf16")


def check_speed(cfg: DictConfig) -> None:
    """The speed switches; bf16 on a CUDA card without bf16 is refused here, before any model loads."""
    sp = cfg.get("speed") or {}
    if sp.get("attention", "auto") not in ATTENTION:
        raise ConfigError("speed.attention", sp.get("attention"), f"one of {', '.join(ATTENTION)}")
    if sp.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError("speed.precision", sp.get("precision"), f"one of {', '.join(PRECISIONS)}")
    for key in ("compile", "gradient_checkpointing"):
        if not isinstance(sp.get(key, False), bool):
            raise ConfigError(f"speed.{key}", sp.get(key), "true or false")
    if sp.get("fused_adamw", "auto") not in ("auto", True, False):
        raise ConfigError("speed.fused_adamw", sp.get("fused_adamw"), "auto, true or false")
    if sp.get("precision") == "bf16" and cfg.device != "cpu":
        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ConfigError("speed.precision", "bf16", f"fp32: {torch.cuda.get_device_name()} has no bf16 support")


def check_train_eval(cfg: DictConfig, trains: bool) -> None:
    t, e = cfg.train, cfg.eval
    if trains:
        _int(t, "max_steps", "train.max_steps", 1, "optimizer steps")
        _number(t, "lr", "train.lr", 0.0, 10.0, "peak learning rate", low_open=True)
    _int(t, "batch_size", "train.batch_size", 1, "examples per micro-batch")
    _int(t, "grad_accum_steps", "train.grad_accum_steps", 1, "micro-batches per optimizer step")
    _number(t, "warmup_ratio", "train.warmup_ratio", 0.0, 1.0, "fraction of steps spent warming up")
    _number(t, "weight_decay", "train.weight_decay", 0.0, 1.0, "AdamW weight decay")
    _number(t, "max_grad_norm", "train.max_grad_norm", 0.0, 1e6, "0 turns clipping off")
    _int(t, "eval_every", "train.eval_every", 0, "0 = evaluate only at the end")
    if not isinstance(t.get("group_by_length", False), bool):
        raise ConfigError("train.group_by_length", t.group_by_length, "true or false")
    check_speed(cfg)
    if t.schedule not in SCHEDULES:
        raise ConfigError("train.schedule", t.schedule, f"one of {', '.join(SCHEDULES)}")
    if e.get("max_examples") is not None:
        _int(e, "max_examples", "eval.max_examples", 1, "null = the whole eval split")
    _int(e, "batch_size", "eval.batch_size", 1, "examples per eval batch")
    _int(e, "max_new_tokens", "eval.max_new_tokens", 1, "generation length bound")
    _int(e, "keep_predictions", "eval.keep_predictions", 0, "predictions the record keeps; 0 = none")
    for key, what in (("examples", "eval examples timed"), ("batch_size", "the larger batch"),
                      ("max_new_tokens", "tokens generated per example"), ("repeats", "timing rounds")):
        _int(cfg.inference, key, f"inference.{key}", 1, what)
    _int(cfg.forgetting, "max_tokens", "forgetting.max_tokens", 8, "tokens per scored chunk")
    _int(cfg.forgetting, "max_chunks", "forgetting.max_chunks", 1, "chunks scored")
    if cfg.forgetting.get("text") and not Path(str(cfg.forgetting.text)).expanduser().is_file():
        raise ConfigError("forgetting.text", cfg.forgetting.text, "an existing text file, or null for the embedded sample")
    _number(t, "diverge_factor", "train.diverge_factor", 0.0, 1e9, "0 turns the divergence check off")
    check_validation(cfg)
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError("seed", cfg.seed, "an integer >= 0")
    if cfg.device not in DEVICES:
        raise ConfigError("device", cfg.device, f"one of {', '.join(DEVICES)}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda", "auto or cpu: torch sees no CUDA device here")


SCORE_ON = ("eval", "validation")


def check_validation(cfg: DictConfig) -> None:
    """The split carved from train; the tuning knobs, which the sweeper also checks before launching."""
    v = cfg.get("validation")
    if v is None:
        return
    _int(v, "examples", "validation.examples", 0, "training rows held out; 0 = none")
    _int(v, "seed", "validation.seed", 0, "which rows are held out")
    if v.get("score_on") not in SCORE_ON:
        raise ConfigError("validation.score_on", v.get("score_on"), f"one of {', '.join(SCORE_ON)}")
    if v.score_on == "validation" and v.examples == 0:
        raise ConfigError("validation.examples", 0, "an integer >= 1 when validation.score_on=validation (the rows to score)")
    if cfg.get("tune") is not None:
        from bench.tune import check

        check(cfg.tune)


def check_tracking(cfg: DictConfig) -> None:
    from bench import tracking

    tcfg = cfg.get("tracking")
    if tcfg is None:
        return
    if tcfg.get("name") not in tracking.BACKENDS:
        raise ConfigError("tracking", tcfg.get("name"), f"one of {', '.join(tracking.BACKENDS)}")
    if tcfg.name == "wandb":
        if tcfg.get("mode") not in tracking.MODES:
            raise ConfigError("tracking.mode", tcfg.get("mode"), f"one of {', '.join(tracking.MODES)}")
        _number(tcfg, "init_timeout", "tracking.init_timeout", 0.0, 3600.0, "seconds W&B may take to start", low_open=True)
    if not isinstance(cfg.get("force", False), bool):
        raise ConfigError("force", cfg.get("force"), "true or false")


def model_family(mcfg: DictConfig) -> str:
    """The declared family, or the one read from the architecture's config (no weights)."""
    family = mcfg.get("family")
    if family in models.FAMILIES:
        return str(family)
    return models.family_of(models.load_config(mcfg))


def validate(cfg: DictConfig) -> str:
    """Check everything checkable without weights; returns the model family."""
    check_model(cfg.model)
    check_tracking(cfg)
    method = get_method(cfg.method.name)
    method.check(cfg.method, None)  # the method's own fields first
    check_train_eval(cfg, method.trains)
    check_task(cfg.task, cfg.data_root)
    check_parts(cfg.task, cfg.data_root)  # train and eval parts of one file never overlap
    family = model_family(cfg.model)
    kind = get_kind(cfg.task.kind)
    if family not in kind.families:
        raise ConfigError("model", cfg.model.name, f"a {' or '.join(kind.families)} model for {kind.name} tasks; {cfg.model.name} is {family}")
    head = kind.head_for(family)
    meta = models.meta_model(cfg.model, head, num_labels=len(cfg.task.get("labels") or [0, 1]))
    method.check(cfg.method, Probe(model=meta, family=family, head=head, cfg=cfg))  # against the model's names and shapes
    return family
