"""The run config's schema: every knob of conf/config.yaml's top level and fixed sections, with its
type, its valid range or choices, and what it means. One table, read three ways: the checks walk it
(types, ranges, choices and unknown keys are refused from here, not by hand-written code per key),
`peft-bench run --help` lists the keys, and a test holds conf/config.yaml to it key for key.

Why a table and not OmegaConf's typed dataclasses: OmegaConf converts as it merges (`yes`, `on`
and `1` become true; `10` becomes `10.0` in a float field), so a typo would pass as a value and a
committed record's config would hash differently once retyped. Here a value is taken as written,
and refused unless it is exactly of its type. The defaults stay where a user reads and overrides
them, conf/config.yaml, each with its comment; nothing else in the code restates them.

Torch-free, like the checks that use it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError


@dataclass(frozen=True)
class Knob:
    """One config key: what it holds and what is valid."""

    kind: str  # int | number | bool | str | choice | path | lrs | any
    low: float | None = None  # int / number: the smallest valid value
    high: float | None = None  # number: the largest valid value
    low_open: bool = False  # number: low itself is not valid
    high_open: bool = False  # number: high itself is not valid
    choices: tuple[Any, ...] = ()  # choice: the valid values
    nullable: bool = False  # null is valid (it means what `what` says)
    what: str = ""  # what it means, in the error's words
    trains_only: bool = False  # checked only for a method that trains (a method that trains nothing ignores it)

    def valid(self) -> str:
        """What would be valid, as the error says it."""
        if self.kind == "int":
            text = f"an integer >= {self.low:g}"
        elif self.kind == "number":
            text = f"a number in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)
        elif self.kind == "lrs":
            text = "a list of at least 2 learning rates in (0, 10]"
        else:
            text = "a non-empty string"
        if self.nullable:
            text = f"null or {text}"
        return f"{text} ({self.what})" if self.what and self.kind not in ("bool", "choice") else text

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "any":
            return True
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int":
            return _is_int(value) and value >= (self.low or 0)
        if self.kind == "number":
            if not _is_number(value):
                return False
            assert self.low is not None and self.high is not None
            return (value > self.low if self.low_open else value >= self.low) and (value < self.high if self.high_open else value <= self.high)
        if self.kind == "choice":
            return any(value is c or (value == c and type(value) is type(c)) for c in self.choices)
        if self.kind == "lrs":
            items = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else None
            return items is not None and len(items) >= 2 and all(
                _is_number(x) and 0 < x <= 10 for x in items)
        return isinstance(value, str) and bool(value.strip())


SCHEDULES = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
ATTENTION = ("auto", "sdpa", "eager")
PRECISIONS = ("fp32", "bf16")
SCORE_ON = ("eval", "validation")
VALIDATION_SCORES = ("metric", "loss")  # what a trial is scored with: the task's main metric, or the loss on the references (bench/tasks/summarization.py)
TUNE_MODES = ("grid", "tpe")
TUNE_PRUNERS = ("median", "halving")  # the tuning stage's early stopping (bench/sweep/tune.py)

# Section "" is the top level. Groups (model, task, method, tracking) are checked by their own kinds.
SCHEMA: dict[str, dict[str, Knob]] = {
    "": {
        "seed": Knob("int", low=0, what="seeds data order, init and dropout"),
        "data_root": Knob("str", what="a folder that holds the datasets (ours: ../shared/datasets)"),
        "results_dir": Knob("str", what="the folder records go to"),
        "keep_artifacts": Knob("bool"),
        "device": Knob("choice", choices=DEVICES),
        "threads": Knob("int", low=0, what="torch CPU threads; 0 = this job's share of the cores"),
        "cache_data": Knob("bool"),
        "force": Knob("bool"),
        "max_attempts": Knob("int", low=1, what="failed records of a point before a sweep stops retrying it"),
        "selection": Knob("any", nullable=True, what="set by the tuning stage on its finals"),
    },
    "train": {
        "max_steps": Knob("int", low=1, what="optimizer steps", trains_only=True),
        "stop_after": Knob("int", low=1, nullable=True, what="null = max_steps; fewer = stop early on max_steps' schedule"),
        "batch_size": Knob("int", low=1, what="examples per micro-batch"),
        "world_size": Knob("int", low=1, what="processes training data-parallel, each on its slice of every batch; 1 = one process"),
        "group_by_length": Knob("bool"),
        "grad_accum_steps": Knob("int", low=1, what="micro-batches per optimizer step"),
        "lr": Knob("number", low=0.0, high=10.0, low_open=True, what="peak learning rate", trains_only=True),
        "weight_decay": Knob("number", low=0.0, high=1.0, what="AdamW weight decay"),
        "adam_beta1": Knob("number", low=0.0, high=1.0, high_open=True, what="AdamW's moving-average coefficient"),
        "adam_beta2": Knob("number", low=0.0, high=1.0, high_open=True, what="AdamW's moving-average coefficient"),
        "warmup_ratio": Knob("number", low=0.0, high=1.0, what="fraction of steps spent warming up"),
        "schedule": Knob("choice", choices=SCHEDULES),
        "max_grad_norm": Knob("number", low=0.0, high=1e6, what="0 turns clipping off"),
        "eval_every": Knob("int", low=0, what="0 = evaluate only at the end"),
        "log_every": Knob("int", low=1, what="steps between progress lines"),
        "timing_warmup_steps": Knob("int", low=0, what="steps left out of the median step time"),
        "diverge_factor": Knob("number", low=0.0, high=1e9, what="0 turns the divergence check off"),
    },
    "speed": {
        "attention": Knob("choice", choices=ATTENTION),
        "precision": Knob("choice", choices=PRECISIONS),
        "compile": Knob("bool"),
        "gradient_checkpointing": Knob("bool"),
        "fused_adamw": Knob("choice", choices=("auto", True, False)),
        "count_flops": Knob("bool"),
    },
    "eval": {
        "max_examples": Knob("int", low=1, nullable=True, what="null = the whole eval split"),
        "batch_size": Knob("int", low=1, what="examples per eval batch"),
        "max_new_tokens": Knob("int", low=1, what="generation length bound"),
        "keep_predictions": Knob("int", low=0, what="predictions the record keeps; 0 = none"),
    },
    "validation": {
        "examples": Knob("int", low=0, what="training rows held out; 0 = none"),
        "seed": Knob("int", low=0, what="which rows are held out"),
        "score_on": Knob("choice", choices=SCORE_ON),
        "score": Knob("choice", choices=VALIDATION_SCORES),
    },
    "tune": {
        "enabled": Knob("bool"),
        "mode": Knob("choice", choices=TUNE_MODES),
        "trials": Knob("int", low=2, what="learning rates tried per point"),
        "lr_span": Knob("number", low=1.0, high=1e6, low_open=True, what="the range is method.lr / span ... method.lr x span"),
        "lrs": Knob("lrs", nullable=True, what="null = the range of lr_span"),
        "max_steps": Knob("int", low=1, nullable=True, what="null = train.max_steps"),
        "eval_every": Knob("int", low=1, nullable=True, what="null = 4 validation scores per trial"),
        "val_examples": Knob("int", low=1, what="rows of the validation split carved from train"),
        "trial_seeds": Knob("int", low=1, what="seeds per trial learning rate"),
        "prune": Knob("bool"),
        "prune_startup_trials": Knob("int", low=1, what="finished trials before the pruner stops any"),
        "pruner": Knob("choice", choices=TUNE_PRUNERS),
        "reduction": Knob("int", low=2, what="halving: 1/reduction of the trials go on at each rung"),
        "min_steps": Knob("int", low=1, nullable=True, what="halving: null = the finals' steps / reduction^2"),
        "score": Knob("choice", choices=VALIDATION_SCORES),
        "sampler_seed": Knob("int", low=0, what="TPE's seed"),
    },
    "adaptive_seeds": {
        "enabled": Knob("bool"),
        "max_seeds": Knob("int", low=2, what="the most seeds a point runs"),
        "reference": Knob("str", what="a method name, the one every point is compared with (full, say)"),
    },
    "estimate": {
        "seq_len": Knob("int", low=1, nullable=True, what="null = the task's longest input"),
    },
    "inference": {
        "enabled": Knob("bool"),
        "examples": Knob("int", low=1, what="eval examples timed"),
        "batch_size": Knob("int", low=1, what="the larger batch"),
        "max_new_tokens": Knob("int", low=1, what="tokens generated per example"),
        "repeats": Knob("int", low=1, what="timing rounds"),
    },
    "forgetting": {
        "enabled": Knob("bool"),
        "text": Knob("str", nullable=True, what="an existing text file, or null for the embedded sample"),
        "max_tokens": Knob("int", low=8, what="tokens per scored chunk"),
        "max_chunks": Knob("int", low=1, what="chunks scored"),
    },
}
SECTIONS = tuple(s for s in SCHEMA if s)
OPTIONAL = {("", "max_attempts"), ("eval", "keep_predictions")}  # keys a config may leave out (their owner has a default)


def field_name(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def check_value(section: str, key: str, value: Any, trains: bool = True) -> None:
    """One knob's value against the schema (a ConfigError names it and what is valid)."""
    knob = SCHEMA[section][key]
    if knob.trains_only and not trains:
        return
    plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if not knob.accepts(plain):
        raise ConfigError(field_name(section, key), plain, knob.valid())


def check_sections(cfg: DictConfig, trains: bool) -> None:
    """Every schema knob the config holds, in the order of the table: types, ranges and choices."""
    for section, knobs in SCHEMA.items():
        node = cfg if not section else cfg.get(section)
        if node is None:
            continue
        for key in knobs:
            if key not in node:
                if (section, key) in OPTIONAL or (section == "" and key == "selection"):
                    continue
                raise ConfigError(field_name(section, key), None, f"a value: {field_name(section, key)} is missing from the config")
            check_value(section, key, node.get(key), trains)


# ---------------------------------------------------------------- typed values, for the checks of groups (model, task kinds, methods)
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
