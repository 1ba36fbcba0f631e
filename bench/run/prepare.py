"""Tokenizer, task and model for one run, built one way for everything that needs them: the run
(bench.run.pipeline.execute), the harness that times the suite against a bare loop (bench.harness.perf.setup) and
the tests (tests/conftest.build). Why one function: a harness or a test that built them its own way
would measure or check something other than what a run does."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from torch import nn
from transformers import PreTrainedTokenizerBase

from bench.config.plan import Plan
from bench.measure import figures as measure
from bench.measure import forgetting
from bench.models import sources as models
from bench.tasks import Task
from bench.tasks.cache import prepare_task


@dataclass
class Prepared:
    model: nn.Module  # the method applied (the base model when prepare was asked not to apply it)
    task: Task
    tokenizer: PreTrainedTokenizerBase
    data: dict[str, Any]  # the record's `data` section: how many examples, from the cache or tokenised, in how long
    rss_before_load: int  # bytes: the CPU memory peak's baseline, taken with the data ready and no model yet
    load_s: float  # seconds the model took to load
    base_score: tuple[list[list[int]], Any] | None = None  # forgetting's (chunks, score) of the base model, when asked


def load_base(cfg: DictConfig, plan: Plan, task: Task, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """The base model with the task's head, as every run loads it (again, for the inference
    comparison against the trained model)."""
    return models.load_model(cfg.model, plan.head, task.num_labels, tokenizer, plan.speed.attention, plan.device)


def prepare(cfg: DictConfig, plan: Plan, record: dict[str, Any] | None = None, score_base: bool = False,
            apply_method: bool = True) -> Prepared:
    """Tokenizer -> task (from the tokenised cache when an entry matches) -> model -> method.
    record: the run's record; its `data` section is set as soon as the data is ready, so a run
    that fails loading the model still says what data it had. score_base: score the base model on
    forgetting's general text (on plan.device) before the method touches it. apply_method=False
    returns the base model (tests that apply methods themselves)."""
    tokenizer = models.load_tokenizer(cfg.model)
    task, data = prepare_task(cfg, plan.kind, tokenizer, plan.family, plan.method.trains)
    if record is not None:
        record["data"] = data
    print(f"data: {data['train_examples']:,} train + {data['eval_examples']:,} eval examples "
          + ("loaded from the tokenised cache" if data["cache"] == "hit" else "tokenised") + f" in {data['prepare_s']:.2f} s", file=sys.stderr)
    rss_before_load = measure.rss_bytes()  # the baseline of the CPU peak: data ready, no model yet
    t0 = time.perf_counter()
    model = load_base(cfg, plan, task, tokenizer)
    load_s = time.perf_counter() - t0
    base_score = None
    if score_base:
        chunks = forgetting.sample_chunks(cfg.forgetting, tokenizer)
        base_score = chunks, forgetting.score(model.to(plan.device), plan.head, chunks, plan.device)
    if apply_method:
        model = plan.method.apply(model, cfg.method, task)
    return Prepared(model=model, task=task, tokenizer=tokenizer, data=data, rss_before_load=rss_before_load,
                    load_s=load_s, base_score=base_score)
