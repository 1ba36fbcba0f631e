"""Model heads: what a task kind puts on a model, by name (`classifier`, `causal_lm`, `seq2seq_lm`,
the names records and configs hold), with everything the code decides by the head: which
transformers Auto class loads it, whether a new head sits on the backbone, whether it has a
language-model head (generates, keeps vocab-sized logits, scores an LM loss on plain text and how
its labels are built), which PEFT task type wraps it, and which modules train with any method.

Code asks `get_head(name).<what it needs>` instead of comparing the name. A new head is one
`register_head(Head(...))`. Torch-free at import (the Auto class is named, resolved on use), so the
plain config checks and the task kinds' declarations read it before torch loads."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Head:
    name: str  # as records and configs hold it
    auto_class: str  # the transformers Auto class that loads the model (the backbone, when `new_head`)
    families: tuple[str, ...]  # the model families it goes on
    new_head: bool = False  # a new linear head on the backbone's pooled output (bench.models.sources.SequenceClassifier)
    keeps_decoder: bool = True  # an encoder-decoder keeps its decoder (False: the encoder alone, no KV cache)
    lm_labels: str | None = None  # how an LM loss on plain token ids is built: "shifted" (labels = the ids,
    #                               the model shifts them), "source_target" (the first half is the input, the
    #                               second the labels); None: no LM head (no vocab logits, no LM loss, no generation)
    peft_task_type: str = "FEATURE_EXTRACTION"  # peft.TaskType for the PEFT-built methods (prompt and prefix tuning)
    trained_modules: tuple[str, ...] = ()  # modules that train and are saved with any method (peft's modules_to_save)
    output: str = ""  # one line: what its outputs are (docs, error messages)

    @property
    def is_lm(self) -> bool:
        """A language-model head: vocab-sized logits (the estimator counts them), generation, an LM loss."""
        return self.lm_labels is not None

    @property
    def generates(self) -> bool:
        return self.is_lm

    @property
    def forgetting_measure(self) -> str:
        """What forgetting scores on general text: the LM loss, or (no LM head) representation drift."""
        return "lm_loss" if self.is_lm else "representation_cosine"

    def auto(self) -> Any:
        """The Auto class itself (imports transformers)."""
        return getattr(importlib.import_module("transformers"), self.auto_class)

    def lm_batch(self, ids: list[int]) -> tuple[list[int], list[int]]:
        """(input ids, label ids) for an LM loss on plain token ids (forgetting's general text)."""
        if self.lm_labels == "shifted":
            return ids, ids
        if self.lm_labels == "source_target":
            half = len(ids) // 2
            return ids[:half], ids[half:]
        raise ValueError(f"head {self.name!r} has no language-model head: no LM loss on plain text")

    def scored_tokens(self, labels: list[int]) -> int:
        """Tokens an LM loss averages over: a causal model predicts every label but the first."""
        return len(labels) - 1 if self.lm_labels == "shifted" else len(labels)

    def scored_per_example(self, labels: Any) -> Any:
        """A batch's loss averages over label positions; how many each example holds (a tensor of
        label ids, -100 = not scored): a classifier's one label, an LM's scored tokens (a causal
        model's first label left out). Data-parallel training weighs each rank's loss by them."""
        if not self.is_lm:
            return (labels != -100).long()
        if self.lm_labels == "shifted":
            labels = labels[:, 1:]
        return (labels != -100).sum(1)


HEADS: dict[str, Head] = {}


def register_head(head: Head) -> Head:
    if head.name in HEADS:
        raise ValueError(f"head {head.name!r} is registered twice")
    HEADS[head.name] = head
    return head


def get_head(name: str) -> Head:
    if name not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {name!r}")
    return HEADS[name]


def head_names() -> tuple[str, ...]:
    return tuple(HEADS)


def language_head(family: str) -> str:
    """The LM head that goes on a model family (decoder: causal_lm; encoder-decoder: seq2seq_lm)."""
    found = [h.name for h in HEADS.values() if h.is_lm and family in h.families]
    if len(found) != 1:
        raise ValueError(f"no single language-model head for family {family!r} (found {found})")
    return found[0]


CLASSIFIER = register_head(Head(
    "classifier", auto_class="AutoModel", families=("encoder", "decoder", "encoder-decoder"), new_head=True, keeps_decoder=False,
    peft_task_type="FEATURE_EXTRACTION", trained_modules=("head",), output="class logits from a new linear head on the pooled backbone"))
CAUSAL_LM = register_head(Head(
    "causal_lm", auto_class="AutoModelForCausalLM", families=("decoder",), lm_labels="shifted", peft_task_type="CAUSAL_LM",
    output="next-token logits over the vocabulary"))
SEQ2SEQ_LM = register_head(Head(
    "seq2seq_lm", auto_class="AutoModelForSeq2SeqLM", families=("encoder-decoder",), lm_labels="source_target",
    peft_task_type="SEQ_2_SEQ_LM", output="decoder logits over the vocabulary, conditioned on the encoded input"))
