"""The harness's own cost, measured side by side: does the suite train and evaluate as fast as a
minimal hand-written PyTorch loop, and at least as fast as transformers' Trainer?

    peft-bench perf                  # MiniLM-L6 (train, classify), SmolLM2-135M (generate): ~5 min on 2 cores
    peft-bench perf models=tiny      # tiny random models: the machinery in seconds (ratios mean little)
    peft-bench perf steps=20 rounds=5 task=sst2 data_root=../shared/datasets   # longer; other Hydra overrides
    peft-bench perf part=switches compile=true   # only the speed switches, torch.compile included

In one process, on the same model object, the same batches in the same order and the same
optimizer (AdamW, the run's lr schedule, clipping at 1.0), each contestant runs `steps` steps per
round, round after round in turn, so machine noise falls on all of them alike. The figure is the
median step time (the first step of each round is left out: it allocates the optimizer state).
Evaluation compares the suite's classification pass and greedy generation with a bare forward
loop and with `model.generate`. A benchmark prints figures; it asserts nothing (machines are
noisy). The last line is `overhead ratio max: X.XX`, the suite's worst ratio to the bare loop.
First it runs each speed switch (config `speed.*`, train.group_by_length) as a short real run in
its own process and prints step time and peak memory beside the default's: both sides of each trade.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from bench.config.compose import compose
from bench.errors import ConfigError
from bench.models import sources as models
from bench.config.plan import validate
from bench.run.generate import greedy_decoder
from bench.methods import get_method
from bench.run.prepare import prepare
from bench.run.progress import progress
from bench.tasks import Task, pad
from bench.tasks.cache import prepare_task
from bench.run.train import epoch_orders, lr_lambda, train

METHODS = ("full", "lora", "prompt_tuning")
MODELS = {"offline": ("minilm-l6", "smollm2-135m"), "tiny": ("tiny-bert", "tiny-llama")}  # (classify + train, generate)
CPU = torch.device("cpu")


def compose_cfg(overrides: list[str]) -> DictConfig:
    return compose(["tracking=none", *overrides])


def setup(cfg: DictConfig) -> tuple[torch.nn.Module, Task]:
    """The model and task exactly as a run builds them (bench.run.prepare, as bench.run.pipeline.execute does)."""
    ready = prepare(cfg, validate(cfg))
    return ready.model, ready.task


# ---------------------------------------------------------------- training: three contestants
def first_epoch_order(task: Task, cfg: DictConfig) -> list[int]:
    """The order the suite's batches take in its first epoch, from bench.run.train itself."""
    return next(epoch_orders(task.train, int(cfg.train.batch_size), int(cfg.seed), bool(cfg.train.group_by_length)))


def suite_train(model: torch.nn.Module, task: Task, cfg: DictConfig, steps: int) -> list[float]:
    short = OmegaConf.merge(cfg, {"train": {"max_steps": steps, "eval_every": 0, "log_every": 10**9}})
    return train(model, task, short, CPU).step_times_s[1:]


def bare_train(model: torch.nn.Module, task: Task, cfg: DictConfig, steps: int) -> list[float]:
    """What a user would write by hand: a DataLoader, forward, backward, clip, step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(cfg.train.lr))
    warmup = int(round(float(cfg.train.warmup_ratio) * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(str(cfg.train.schedule), warmup, steps))
    loader = torch.utils.data.DataLoader(task.train, batch_size=int(cfg.train.batch_size), collate_fn=task.collate,
                                         sampler=first_epoch_order(task, cfg), drop_last=True)
    model.train()
    times, batches = [], iter(loader)
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = model(**next(batches)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, float(cfg.train.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - t0)
    return times[1:]


def trainer_train(model: torch.nn.Module, task: Task, cfg: DictConfig, steps: int) -> list[float]:
    """transformers' Trainer on the same model, batches and optimizer; step time = the time between
    consecutive step ends (data loading included, as in the other two)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    order = first_epoch_order(task, cfg)
    ends: list[float] = []

    class StepEnds(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ends.append(time.perf_counter())

    class SameData(Trainer):
        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            return model(**inputs).loss  # our classifier returns a dataclass, not a dict

        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return order

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=int(cfg.train.batch_size),
                                 learning_rate=float(cfg.train.lr), weight_decay=0.0, optim="adamw_torch",
                                 lr_scheduler_type="linear", warmup_steps=int(round(float(cfg.train.warmup_ratio) * steps)),
                                 max_grad_norm=float(cfg.train.max_grad_norm), logging_strategy="no", save_strategy="no",
                                 report_to="none", disable_tqdm=True, use_cpu=True, remove_unused_columns=False,
                                 dataloader_pin_memory=False, dataloader_drop_last=True, seed=int(cfg.seed))
        SameData(model=model, args=args, train_dataset=task.train, data_collator=task.collate, callbacks=[StepEnds()]).train()
    return [b - a for a, b in zip(ends, ends[1:])]


# ---------------------------------------------------------------- evaluation
def suite_classify(model: torch.nn.Module, task: Task, cfg: DictConfig) -> float:
    t0 = time.perf_counter()
    task.evaluate(model, task, cfg.eval, CPU, progress)
    return time.perf_counter() - t0


def bare_classify(model: torch.nn.Module, task: Task, cfg: DictConfig) -> float:
    """The same batches as the suite's pass (sorted by length), argmax, accuracy."""
    order = sorted(range(len(task.eval)), key=lambda i: len(task.eval[i]["input_ids"]))
    bs = int(cfg.eval.batch_size)
    model.eval()
    t0 = time.perf_counter()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(order), bs):
            chunk = [task.eval[i] for i in order[start : start + bs]]
            batch = task.collate(chunk)
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return time.perf_counter() - t0


def prompts(tokenizer: Any, n: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n left-padded prompts of up to `tokens` tokens cut from the embedded general text."""
    text = (Path(__file__).resolve().parents[1] / "data" / "general_text.txt").read_text()
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    rows = [ids[i * tokens : i * tokens + tokens - 3 * i] for i in range(n)]  # unequal lengths: padding is exercised
    return pad(rows, tokenizer.pad_token_id, left=True), pad([[1] * len(r) for r in rows], 0, left=True)


def generation_pair(model: torch.nn.Module, tokenizer: Any, new_tokens: int) -> dict[str, Callable[[], float]]:
    ids, mask = prompts(tokenizer, 4, 48)

    def ours() -> float:
        t0 = time.perf_counter()
        greedy_decoder(model, ids, mask, new_tokens, eos_id=-1, pad_id=tokenizer.pad_token_id)  # no EOS stop: equal lengths
        return time.perf_counter() - t0

    def hf() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return time.perf_counter() - t0

    return {"suite": ours, "bare": hf}


# ---------------------------------------------------------------- the benchmark
def alternate(contestants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Run each contestant once untimed (warm-up: first-call allocations, lazy imports), then once
    per round, in turn; collect what each returns (a list or a number)."""
    for run_once in contestants.values():
        run_once()
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for r in range(rounds):
        names = list(contestants) if r % 2 == 0 else list(reversed(contestants))  # neither always goes first
        for name in names:
            got = contestants[name]()
            times[name] += got if isinstance(got, list) else [got]
    return times


def row(phase: str, method: str, times: dict[str, list[float]]) -> dict[str, Any]:
    med = {name: statistics.median(t) for name, t in times.items() if t}
    return {"phase": phase, "method": method, **{f"{k}_s": v for k, v in med.items()},
            "suite/bare": med["suite"] / med["bare"], "trainer/bare": med["trainer"] / med["bare"] if "trainer" in med else None}


def data_cost(overrides: list[str]) -> dict[str, float]:
    """Preparing the task's data: tokenised from the rows (a cache miss) and read back (a hit)."""
    cfg = compose_cfg(overrides)
    plan = validate(cfg)
    tokenizer = models.load_tokenizer(cfg.model)
    off = OmegaConf.merge(cfg, {"cache_data": False})
    cold = prepare_task(off, plan.kind, tokenizer, plan.family, trains=True)[1]
    prepare_task(cfg, plan.kind, tokenizer, plan.family, trains=True)  # make sure an entry exists
    warm = prepare_task(cfg, plan.kind, tokenizer, plan.family, trains=True)[1]
    return {"tokenise_s": cold["prepare_s"], "cached_s": warm["prepare_s"], "examples": cold["train_examples"] + cold["eval_examples"]}


SWITCHES = [  # (name, overrides): each against the default run, on full fine-tuning
    ("default (fp32, auto attention)", []),
    ("gradient checkpointing", ["speed.gradient_checkpointing=true"]),
    ("eager attention", ["speed.attention=eager"]),
    ("sdpa attention", ["speed.attention=sdpa"]),
    ("bf16 autocast", ["speed.precision=bf16"]),
    ("length-grouped batches", ["train.group_by_length=true"]),
]


def switches(model: str, extra: list[str], steps: int, rounds: int, compile_too: bool) -> list[dict[str, Any]]:
    """Each switch as a real run in its own process (the memory peak needs a fresh process), the
    variants taken in turn for `rounds` rounds; medians over rounds of step time and peak memory."""
    from bench.sweep.supervise import run_isolated

    variants = SWITCHES + ([("torch.compile", ["speed.compile=true"])] if compile_too else [])
    seen: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as out:
        for r in range(rounds):
            for name, overrides in (variants if r % 2 == 0 else list(reversed(variants))):
                cfg = compose_cfg([f"model={model}", "method=full", f"train.max_steps={steps}", "train.batch_size=16",
                                   "eval.max_examples=32", "inference.enabled=false", "forgetting.enabled=false",
                                   "keep_artifacts=false", f"results_dir={out}", *extra, *overrides])
                rec = run_isolated(cfg, sweep=None)
                if rec["run"]["status"] == "success":
                    seen[name].append(rec)
                else:
                    print(f"  {name}: {rec['run']['status']} ({rec['run']['error']})", flush=True)
    rows = []
    for name, recs in seen.items():
        if recs:
            rows.append({"switch": name, "step_s": statistics.median(r["speed"]["step_time_median_s"] for r in recs),
                         "peak_bytes": statistics.median(r["memory"]["peak_bytes"] for r in recs),
                         "padding": statistics.median(r["speed"]["padding_fraction"] for r in recs), "runs": len(recs)})
    return rows


def verb(opts: DictConfig, cfg: DictConfig | None, extra: list[str]) -> int:
    """`peft-bench perf` (its keys: conf/perf.yaml; the run's overrides apply to every contestant)."""
    which, steps, rounds, part = opts.models, opts.steps, opts.rounds, opts.part
    compile_too = bool(opts.compile)  # torch.compile among the switches (needs a C++ compiler; slow first steps)
    if part not in ("overhead", "switches", "all"):
        raise ConfigError("part", part, "one of overhead, switches, all")
    if which not in MODELS:
        raise ConfigError("models", which, f"one of {', '.join(MODELS)}")
    for key in ("steps", "rounds"):
        if opts[key] < 1:
            raise ConfigError(key, opts[key], "an integer >= 1")
    classify_model, generate_model = MODELS[which]
    print(f"torch threads: {torch.get_num_threads()}; {steps} steps x {rounds} rounds per contestant", flush=True)
    if part in ("switches", "all"):
        table = switches(classify_model, extra, max(steps, 10), max(1, rounds - 1), compile_too)
        base = next((r for r in table if r["switch"].startswith("default")), None)
        print(f"\n| switch ({classify_model}, full fine-tuning) | step s | x default | peak MiB | x default | padding | runs |")
        print("|---|---|---|---|---|---|---|")
        for r in table:
            rel = (f"{r['step_s'] / base['step_s']:.2f}", f"{r['peak_bytes'] / base['peak_bytes']:.2f}") if base else ("", "")
            print(f"| {r['switch']} | {r['step_s']:.3f} | {rel[0]} | {r['peak_bytes'] / 2**20:,.0f} | {rel[1]} | {r['padding']:.2f} | {r['runs']} |")
        if part == "switches":
            return 0
    rows = []
    for method in METHODS:
        cfg = compose_cfg([f"model={classify_model}", f"method={method}", "train.batch_size=16", *extra])
        model, task = setup(cfg)
        times = alternate({"suite": lambda: suite_train(model, task, cfg, steps), "bare": lambda: bare_train(model, task, cfg, steps),
                           "trainer": lambda: trainer_train(model, task, cfg, steps)}, rounds)
        rows.append(row(f"train step ({classify_model})", method, times))
        times = alternate({"suite": lambda: suite_classify(model, task, cfg), "bare": lambda: bare_classify(model, task, cfg)}, rounds)
        rows.append(row(f"classify pass ({len(task.eval)} examples)", method, times))
        print(f"  {method}: done", flush=True)
    for method in ("full", "lora"):  # generate() is wrong and slow with a soft prompt (bench/run/generate.py): no fair pair
        cfg = compose_cfg([f"model={generate_model}", f"method={method}", "task=embedded-sentiment"])
        tokenizer = models.load_tokenizer(cfg.model)
        model = models.load_model(cfg.model, "causal_lm", 0, tokenizer)
        if method == "lora":
            model = get_method("lora").apply(model, cfg.method, None)
        model.eval()
        rows.append(row(f"generate 4 x 24 tokens ({generate_model})", "none" if method == "full" else method,
                        alternate(generation_pair(model, tokenizer, 24), rounds)))
    data = data_cost([f"model={classify_model}", *extra])

    print("\n| phase | method | bare loop / generate() s | suite s | Trainer s | suite / bare | Trainer / bare |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        trainer = f"{r['trainer_s']:.4f}" if r.get("trainer_s") else ""
        ratio = f"{r['trainer/bare']:.3f}" if r.get("trainer/bare") else ""
        print(f"| {r['phase']} | {r['method']} | {r['bare_s']:.4f} | {r['suite_s']:.4f} | {trainer} | {r['suite/bare']:.3f} | {ratio} |")
    n = 7
    print(f"\ndata preparation ({data['examples']:,} examples): tokenised {data['tokenise_s']:.3f} s, from the cache {data['cached_s']:.3f} s;"
          f" a {n}-point sweep pays {n * data['tokenise_s']:.2f} s without the cache, "
          f"{data['tokenise_s'] + (n - 1) * data['cached_s']:.2f} s with it")
    print(f"overhead ratio max: {max(r['suite/bare'] for r in rows):.2f}")
    return 0
