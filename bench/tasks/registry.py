"""The task-kind registry (the package, bench.tasks, discovers the kind modules, which register here). Task kinds: code that turns raw rows into model inputs and scores predictions. A dataset of a
known kind is a YAML file under conf/task/, not code; a new kind is one module in this package.

A kind module declares everything about its kind in one `register_kind(...)` on its `build`
function: the task keys and metrics it accepts and how their values are checked, the fields each
row must hold, how long its inputs get (the models' position checks and the memory estimate),
how its examples are served for the inference timing, and its evaluation (on the Task it builds).
Kind modules load no torch when imported (their functions import it), so the plain checks read
the declarations before torch loads. Kinds are discovered: every module here that registers one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable


if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig
    from torch import nn


@dataclass
class Task:
    """Everything the loop and the evaluator need, with no knowledge of the method."""

    name: str
    kind: str
    head: str  # what the model needs on top: a registered head's name (bench.models.heads: classifier | causal_lm | seq2seq_lm)
    train: list[dict]  # tokenised training features
    eval: list[dict]  # tokenised evaluation features, with references
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]  # training batches (dynamic padding)
    evaluate: Callable[..., dict[str, Any]]  # (model, task, eval_cfg, device, progress) -> quality
    main_metric: str
    tokenizer: Any = None  # generation decodes with it
    family: str = ""  # encoder | decoder | encoder-decoder
    num_labels: int = 0
    label_names: list[str] = field(default_factory=list)
    score_loss: Callable[..., dict[str, Any]] | None = None  # (model, task, eval_cfg, device, progress) -> {"loss", "per_example"}: a trial's cheap score (validation.score=loss); None = the kind has none


Serve = Callable[["Task", list[dict], "torch.device", int], Callable[["nn.Module"], int]]


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[..., Task]  # (task_cfg, train_rows, eval_rows, tokenizer, family) -> Task
    families: tuple[str, ...]  # model families the kind supports
    head_for: Callable[[str], str]  # family -> head (a name registered in bench.models.heads)
    keys: frozenset[str]  # its own task.* keys, beside the ones every kind has (preflight.TASK_KEYS)
    metrics: tuple[str, ...]  # what task.metrics may list (registered in bench.measure.metrics); the first listed is the run's main metric
    check: Callable[[DictConfig], None]  # its keys' values, torch-free (a ConfigError names the key)
    fields: Callable[[DictConfig, str], list[tuple[str, str]]]  # (config key, field name) each row of a split must hold
    input_tokens: Callable[[DictConfig, str], tuple[int, str, str]]  # (cfg, family) -> longest input: tokens, made of, the key to name
    train_tokens: Callable[[DictConfig, str], int]  # (cfg, family) -> longest training sequence (the estimator's default length)
    serve: Serve  # (task, features, device, max_new_tokens) -> a function serving that batch with a model; returns tokens generated
    generates: bool  # serving generates tokens (the inference record has tokens/s), or is one forward pass
    score_batch: Callable[[Task, list[dict]], dict] | None = None  # eval features -> a batch with labels: outputs and loss compared merged vs unmerged; None = task.collate
    row_check: Callable[[DictConfig], Callable[[dict], tuple[str, Any, str, str] | None] | None] = lambda tcfg: None  # task cfg -> per-row check: (key, value, what is valid, what the row has) or None
    reads_rows: bool = True  # False: the kind makes its own examples (task.format is not read)
    scores_loss: bool = False  # its tasks can score a trial by the loss on the references (Task.score_loss; validation.score=loss)


KINDS: dict[str, Kind] = {}


def register_kind(name: str, **declared: Any) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorate a kind's build function with the kind's declarations (the fields of Kind). Its
    metrics must be registered (bench.measure.metrics.METRICS: each says its direction) and the head
    it puts on each family too (bench.models.heads.HEADS)."""
    def wrap(build: Callable[..., Task]) -> Callable[..., Task]:
        from bench.measure.metrics import METRICS
        from bench.models.heads import HEADS

        kind = Kind(name=name, build=build, **declared)
        unknown = [m for m in kind.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"kind {name!r} declares unregistered metrics {unknown}: register them in bench.measure.metrics "
                             f"(registered: {', '.join(METRICS)})")
        heads = {family: kind.head_for(family) for family in kind.families}
        if any(h not in HEADS for h in heads.values()):
            raise ValueError(f"kind {name!r} puts unregistered heads on its families {heads}: register them in bench.models.heads "
                             f"(registered: {', '.join(HEADS)})")
        KINDS[name] = kind
        return build

    return wrap


def pad(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """Pad to the longest sequence in the batch (dynamic padding)."""
    import torch

    width = max(len(s) for s in seqs)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)

