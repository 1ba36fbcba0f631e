"""How fast a bad input is refused: `peft-bench badinput` runs the command line on each bad
input below (one fresh process each, as a user would), checks that it exits 2 with one line
`config error: <field>=...` and writes nothing, and prints the time of each and the median.
Target: a median under 0.5 s (the plain checks and the schema run before torch loads; the few
that need the model's architecture, such as a LoRA rank too large for its layers, pay for importing torch). A benchmark, not a test: the time depends on the
machine and its load.

    peft-bench badinput [repeats=N]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TARGET_S = 0.5


def write_data(root: Path) -> None:
    """Small broken copies of a TSV, a JSONL and a summarization task under root (a data_root)."""
    def put(relative: str, data: bytes) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)

    good_tsv = b"sentence\tlabel\na fine film\t1\na dull film\t0\n"
    put("no_tab/glue/SST-2/train.tsv", good_tsv + b"a film cut sho")
    put("no_tab/glue/SST-2/dev.tsv", good_tsv)
    put("latin1/glue/SST-2/train.tsv", good_tsv + b"caf\xe9 au lait\t1\n")
    put("latin1/glue/SST-2/dev.tsv", good_tsv)
    put("header_only/glue/SST-2/train.tsv", good_tsv)
    put("header_only/glue/SST-2/dev.tsv", b"sentence\tlabel\n")
    put("bad_label/glue/SST-2/train.tsv", good_tsv + b"so-so\t2\n")
    put("bad_label/glue/SST-2/dev.tsv", good_tsv)
    row = json.dumps({"premise": "p", "hypothesis": "h", "label": "entailment"}).encode()
    put("truncated/superglue/RTE/train.jsonl", row + b"\n" + row[:20] + b"\n")
    put("truncated/superglue/RTE/val.jsonl", row + b"\n")
    booleans = b"".join(json.dumps({"premise": "p", "hypothesis": "h", "label": i % 2 == 0}).encode() + b"\n" for i in range(4))
    put("booleans/superglue/RTE/train.jsonl", booleans)
    put("booleans/superglue/RTE/val.jsonl", booleans)
    dialogue = {"dialogue": "#Person1#: Hi.\n#Person2#: Hello.", "summary": "They greet.",
                "summary1": "They greet.", "summary2": "Greetings.", "summary3": "Hi and hello."}
    put("dialogsum/dialogsum/dialogsum.dev.jsonl", json.dumps(dialogue).encode() + b"\n")
    put("dialogsum/dialogsum/dialogsum.test.jsonl", json.dumps(dialogue).encode() + b"\n")


def cases(data: Path) -> list[tuple[list[str], str]]:
    """(command-line overrides, the field the error must name)."""
    return [
        (["threads=abc"], "threads"),
        (["threads=-4"], "threads"),
        (["train.timing_warmup_steps=abc"], "train.timing_warmup_steps"),
        (["train.adam_beta1=2"], "train.adam_beta1"),
        (["method.alpha=nan"], "method.alpha"),
        (["+foo=bar"], "foo"),
        (["keep_artifacts=abc"], "keep_artifacts"),
        (["inference.enabled=maybe"], "inference.enabled"),
        (["task.max_train_examples=-150"], "task.max_train_examples"),
        (["model=tiny-bert", "model.dtype=float16"], "model.dtype"),
        (["model=tiny-bert", "model.tokenizer=/nonexistent"], "model.tokenizer"),
        (["model=flan-t5-small", "task=dialogsum", f"data_root={data / 'dialogsum'}"], "model.path"),
        (["model=tiny-bert", "task=sst2", "task.max_length=1000", f"data_root={data / 'no_tab'}"], "task.train_split"),
        (["model=tiny-bert", "task=embedded-sentiment", "task.max_length=1000"], "task.max_length"),
        (["model=tiny-bert", "method.r=100000"], "method.r"),
        (["task=sst2", f"data_root={data / 'latin1'}"], "task.train_split"),
        (["task=sst2", f"data_root={data / 'header_only'}"], "task.eval_split"),
        (["task=sst2", f"data_root={data / 'bad_label'}"], "task.labels"),
        (["task=superglue-rte", f"data_root={data / 'truncated'}"], "task.train_split"),
        (["task=superglue-rte", "task.labels=['no','yes']", f"data_root={data / 'booleans'}"], "task.labels"),
        (["model=tiny-llama", "task=dialogsum", "task.prompt_template='Summarize: {dialogue}'", f"data_root={data / 'dialogsum'}"],
         "task.prompt_template"),
        # Each of these once loaded torch (3 to 6 s) or failed another way before the schema and the plain method checks:
        (["tune.trials=1"], "tune.trials"),
        (["tune.lr_span=0.5"], "tune.lr_span"),
        (["tune.val_examples=0"], "tune.val_examples"),
        (["tune.mode=random"], "tune.mode"),
        (["tune.prune=yes"], "tune.prune"),
        (["-m", "tune.enabled=true", "tune.val_examples=10000000", "model=tiny-bert", "method=lora"], "validation.examples"),
        (["tune.enabled=true"], "tune.enabled"),
        (["validation.examples=5000"], "validation.examples"),
        (["method=lora", "method.r=abc"], "method.r"),
        (["method=lora", "method.target_modules=5"], "method.target_modules"),
        (["method=lora", "method.use_dora=1"], "method.use_dora"),
        (["model=tiny-bert", "model.size.hidden_size=-32"], "model.size.hidden_size"),
        (["model=tiny-bert", "model.source=local", f"+model.path={data}"], "model.path"),
        (["model=nonexistent"], "model"),
        (["-m", "method=none,fulll"], "method"),
        (["+hydra.foo=bar"], "hydra.foo"),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "method=none,full"], "hydra.launcher.n_jobs"),
        (["results_dir=/proc/peft-bench-cannot-write-here"], "results_dir"),
        (["keep_artifacts=yes"], "keep_artifacts"),
        (["train.world_size=0"], "train.world_size"),
        (["train.world_size=3", "train.batch_size=16"], "train.batch_size"),  # each process takes an equal slice of the batch
        (["model=tiny-bert", "method=none", "train.world_size=2"], "train.world_size"),  # refused before torchrun starts
    ]


def run_case(overrides: list[str], field: str, results: Path) -> tuple[float, str | None]:
    """(seconds, None if refused as promised, else what went wrong)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}
    start = time.perf_counter()
    flags = [o for o in overrides if o.startswith("-")]  # Hydra's flags (-m) before the overrides; a case's own results_dir wins
    args = [*flags, f"results_dir={results}", *(o for o in overrides if not o.startswith("-"))]
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 2:
        return seconds, f"exit {proc.returncode}: {lines[-1] if lines else ''}"
    if len(lines) != 1 or not lines[0].startswith(f"config error: {field}="):
        return seconds, f"expected one line naming {field}, got: {' | '.join(lines[:3])}"
    if results.exists():
        return seconds, f"wrote into results_dir: {sorted(p.name for p in results.iterdir())}"
    return seconds, None


def verb(opts: Any, cfg: Any = None, overrides: list[str] | None = None) -> int:
    """`peft-bench badinput` (its keys: conf/badinput.yaml)."""
    from bench.errors import ConfigError

    if opts.repeats < 1:
        raise ConfigError("repeats", opts.repeats, "an integer >= 1")
    failures, times = 0, []
    with tempfile.TemporaryDirectory(prefix="peft-bench-badinput-") as tmp:
        data = Path(tmp) / "data"
        write_data(data)
        for overrides, field in cases(data):
            shown = " ".join(o.replace(str(data) + "/", "") for o in overrides)
            runs = [run_case(overrides, field, Path(tmp) / "results") for _ in range(opts.repeats)]
            seconds = statistics.median(s for s, _ in runs)
            problem = next((p for _, p in runs if p), None)
            failures += problem is not None
            times.append(seconds)
            print(f"{seconds:6.2f} s  {'ok  ' if problem is None else 'FAIL'}  {field:<26} {shown}" + (f"\n         {problem}" if problem else ""), flush=True)
    median = statistics.median(times)
    print(f"\n{len(times)} bad inputs, {failures} not refused as promised; median {median:.2f} s "
          f"(target < {TARGET_S:.1f} s: {'met' if median < TARGET_S else 'missed'}), max {max(times):.2f} s")
    return 1 if failures else 0
