"""The GPU benchmark: full fine-tuning, LoRA and prompt tuning on models built from config at real
sizes (random weights: speed and memory only), trained by the suite's own loop with bf16 autocast
and fused AdamW. Per cell: step time, tokens/s, model FLOPs utilisation against the card's bf16
peak measured here, and the peak memory with its breakdown beside the estimator's prediction.

    python -m bench.gpu out=results/gpu           # on a CUDA machine: ~5 min on an H100
    python -m bench.gpu smoke=true                # tiny shapes on the CPU: the same code, CUDA parts skipped

A machine without network gets the missing packages as wheels: `bash bench/gpu_wheels.sh` here
(downloads them into .whl/), then there: `pip install --no-index --target /tmp/site .whl/*.whl`
and `PYTHONPATH=/tmp/site python -m bench.gpu out=$OUT`. Hydra is not needed: the configs are
read with OmegaConf alone.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench import estimate, measure
from bench.methods import get_method
from bench.tasks import Task
from bench.train import train

CONF = Path(__file__).resolve().parent.parent / "conf"
METHODS = ("full", "lora", "prompt_tuning")
# name -> (transformers model type, config overrides, head): the published shapes
MODELS: dict[str, tuple[str, dict[str, Any], str]] = {
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                                   num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True), "causal_lm"),
    "smollm2-360m": ("llama", dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                                   num_key_value_heads=5, vocab_size=49152, tie_word_embeddings=True), "causal_lm"),
    "llama-1b": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True), "causal_lm"),
    "t5-base": ("t5", dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12,
                           vocab_size=32128), "seq2seq_lm"),
    "t5-large": ("t5", dict(d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16,
                            vocab_size=32128), "seq2seq_lm"),
}
SMOKE = {  # the same architectures at toy sizes, for the CPU
    "tiny-llama": ("llama", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=True), "causal_lm"),
    "tiny-t5": ("t5", dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, vocab_size=1000), "seq2seq_lm"),
}


def base_cfg(method: str, overrides: dict[str, Any]) -> DictConfig:
    """conf/config.yaml with the method's YAML, without Hydra (not installed on the GPU machine)."""
    cfg = OmegaConf.load(CONF / "config.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key)
    cfg.method = OmegaConf.load(CONF / "method" / f"{method}.yaml")
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in overrides.items()]))


def bf16_peak_tflops(device: torch.device) -> float | None:
    """The card's bf16 matmul rate as measured here (8192^3 products, mean of 10 after 3 warm-ups)."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12


def synthetic_task(head: str, vocab: int, batch: int, seq_len: int, target_len: int) -> Task:
    """Random tokens of fixed length: a decoder trains on all of them, an encoder-decoder encodes
    seq_len and decodes target_len. Speed and memory depend on shapes, not on the words."""
    gen = torch.Generator().manual_seed(0)
    feats = []
    for _ in range(batch * 4):
        ids = torch.randint(3, vocab, (seq_len,), generator=gen).tolist()
        target = ids if head == "causal_lm" else torch.randint(3, vocab, (target_len,), generator=gen).tolist()
        feats.append({"input_ids": ids, "labels": target})

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([r["input_ids"] for r in rows])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([r["labels"] for r in rows])}

    return Task(name="synthetic", kind="synthetic", head=head, train=feats, eval=[], collate=collate,
                evaluate=lambda *a, **k: {}, main_metric="none")


def build(arch: str, size: dict[str, Any], head: str, device: torch.device) -> nn.Module:
    """Random weights straight on the device (initialising a 1B model on the CPU takes longer than training it)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = AutoConfig.for_model(arch, **size)
    if getattr(config, "is_encoder_decoder", False):
        config.pad_token_id = config.decoder_start_token_id = 0  # T5's own choice; labels are shifted right from it
    auto = AutoModelForCausalLM if head == "causal_lm" else AutoModelForSeq2SeqLM
    with torch.device(device):
        return auto.from_config(config, dtype=torch.float32, attn_implementation="sdpa")


def step_flops(model: nn.Module, task: Task, cfg: DictConfig, device: torch.device) -> float:
    """FLOPs of one training step's forward and backward, counted by torch (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench import speed

    batch = {k: v.to(device) for k, v in task.collate(task.train[: int(cfg.train.batch_size)]).items()}
    model.train()
    with FlopCounterMode(display=False) as counter:
        with speed.autocast(cfg, device):
            loss = model(**batch).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def cell(name: str, spec: tuple[str, dict[str, Any], str], method: str, device: torch.device, batch: int, seq_len: int,
         steps: int, peak_tflops: float | None) -> dict[str, Any]:
    arch, size, head = spec
    overrides: dict[str, Any] = {"train.batch_size": batch, "train.max_steps": steps, "train.log_every": 10**9,
                                 "train.warmup_ratio": 0.0, "speed.precision": "bf16" if device.type == "cuda" else "fp32"}
    if method == "prompt_tuning":
        overrides["method.init"] = "random"  # random weights: no vocabulary worth starting from
    cfg = base_cfg(method, overrides)
    task = synthetic_task(head, size["vocab_size"], batch, seq_len, max(8, seq_len // 4))
    model = get_method(method).apply(build(arch, size, head, device), cfg.method, task).to(device)
    flops = step_flops(model, task, cfg, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    result = train(model, task, cfg, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    timed = result.step_times_s[3:] or result.step_times_s  # the first steps allocate and tune kernels
    step_s = statistics.median(timed)
    tokens = batch * (seq_len + (max(8, seq_len // 4) if head == "seq2seq_lm" else 0))
    counts = measure.param_counts(model)
    row: dict[str, Any] = {"model": name, "method": method, "params": counts["total"], "trainable": counts["trainable"],
                           "batch": batch, "seq_len": seq_len, "step_s": step_s, "tokens_per_s": tokens / step_s,
                           "tflops_per_s": flops / step_s / 1e12, "mfu": flops / step_s / 1e12 / peak_tflops if peak_tflops else None}
    if peak is not None:
        row["peak_bytes"] = peak
        row["breakdown"] = measure.breakdown(model, result.optimizer, peak)
        row["estimate"] = estimate.predict(model, head, batch, seq_len)
    del model, result
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _gib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**30:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | method | params | trainable | batch x seq | step ms | tokens/s | TFLOP/s | MFU | peak GiB (pred) | weights / grads / optim / act+other GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['method']} | failed: {r['error'][:150]} |")
            continue
        b = r.get("breakdown") or {}
        parts = " / ".join(_gib(b.get(k)) for k in ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_and_other_bytes")) if b else ""
        pred = f" ({_gib(r['estimate']['total_bytes'])})" if r.get("estimate") else ""
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else ""
        lines.append(f"| {r['model']} | {r['method']} | {r['params'] / 1e6:,.2f}M | {r['trainable'] / 1e6:,.3f}M | {r['batch']} x {r['seq_len']} | "
                     f"{1e3 * r['step_s']:,.1f} | {r['tokens_per_s']:,.0f} | {r['tflops_per_s']:,.1f} | {mfu} | {_gib(r.get('peak_bytes'))}{pred} | {parts} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    smoke = args.get("smoke", "false") == "true"
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    if device.type != "cuda" and not smoke:
        print("no CUDA device: run `python -m bench.gpu smoke=true` to check the script on the CPU", file=sys.stderr)
        return 2
    models = SMOKE if smoke else MODELS
    batch, seq_len, steps = (2, 32, 5) if smoke else (int(args.get("batch", 8)), int(args.get("seq_len", 512)), int(args.get("steps", 13)))
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke: shapes only)"
    peak = bf16_peak_tflops(device)
    print(f"device: {card}; bf16 matmul peak measured: {f'{peak:.0f} TFLOP/s' if peak else 'n/a'}; torch {torch.__version__}", flush=True)
    rows = []
    start = time.perf_counter()
    for name, spec in models.items():
        for method in METHODS:
            try:
                rows.append(cell(name, spec, method, device, batch, seq_len, steps, peak))
            except Exception as exc:  # noqa: BLE001 - one failed cell (e.g. out of memory) is a row; the table goes on
                rows.append({"model": name, "method": method, "error": f"{type(exc).__name__}: {exc}"})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(f"  {name} {method}: {time.perf_counter() - start:.0f} s", flush=True)
    text = (f"# GPU benchmark: {card}, {datetime.now(timezone.utc):%Y-%m-%d}\n\nbf16 matmul peak measured here: "
            f"{f'{peak:.0f} TFLOP/s' if peak else 'n/a'}; torch {torch.__version__}; bf16 autocast over fp32 weights; "
            f"random weights (speed and memory only); MFU = counted FLOPs per step / step time / that peak.\n\n{table(rows)}\n")
    print("\n" + text)
    if "out" in args:
        out = Path(args["out"])
        out.mkdir(parents=True, exist_ok=True)
        stem = f"gpu-{datetime.now(timezone.utc):%Y%m%d}-{card.replace(' ', '_').replace('(', '').replace(')', '').replace(':', '')}"
        (out / f"{stem}.md").write_text(text)
        (out / f"{stem}.json").write_text(json.dumps({"device": card, "peak_tflops": peak, "rows": rows}, indent=1, default=str))
        print(f"written: {out / stem}.md and .json")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
