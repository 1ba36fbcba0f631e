"""Task kinds: code that turns raw rows into model inputs and scores predictions. A dataset of a
known kind is a YAML file under conf/task/, not code.

A kind module registers itself with `@register_kind(name)` on a `build(task_cfg, rows, tokenizer,
family, eval_cfg) -> Task` function and declares which families it supports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from bench.errors import ConfigError

if TYPE_CHECKING:  # torch loads with the kinds (get_kind), so that bench.tasks.data stays torch-free for validation
    import torch


@dataclass
class Task:
    """Everything the loop and the evaluator need, with no knowledge of the method."""

    name: str
    kind: str
    head: str  # what the model needs on top: classifier | causal_lm | seq2seq_lm
    train: list[dict]  # tokenised training features
    eval: list[dict]  # tokenised evaluation features, with references
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]  # training batches (dynamic padding)
    evaluate: Callable[..., dict[str, Any]]  # (model, task, eval_cfg, device, progress) -> quality
    main_metric: str
    tokenizer: Any = None  # generation decodes with it
    family: str = ""  # encoder | decoder | encoder-decoder
    num_labels: int = 0
    label_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[..., Task]
    families: tuple[str, ...]  # model families the kind supports
    head_for: Callable[[str], str]  # family -> head


KINDS: dict[str, Kind] = {}


def register_kind(name: str, families: tuple[str, ...], head_for: Callable[[str], str]):
    def wrap(build: Callable[..., Task]) -> Callable[..., Task]:
        KINDS[name] = Kind(name, build, families, head_for)
        return build

    return wrap


def get_kind(name: str) -> Kind:
    from bench.tasks import classification, summarization  # noqa: F401  (registers the kinds; they import torch)

    if name not in KINDS:
        raise ConfigError("task.kind", name, f"one of {', '.join(sorted(KINDS))}")
    return KINDS[name]


def pad(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """Pad to the longest sequence in the batch (dynamic padding)."""
    import torch

    width = max(len(s) for s in seqs)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)

