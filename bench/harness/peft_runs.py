"""Hold the memory estimator against PEFT's published GPU measurements (its method comparison on
MetaMathQA: Llama-3.2-3B, bf16, batch 4, up to 768 tokens, one NVIDIA L40S).

Each result file is mapped to the estimator's inputs: the model is conf/model/llama3.2-3b-config.yaml
(built on the meta device), the method is ours with PEFT's settings (full fine-tuning, LoRA with
rsLoRA/DoRA, IA3, prompt tuning, prefix tuning, LN tuning), batch, precision and gradient
checkpointing are read from the run's train_config. Runs no method of ours computes are listed with
the reason. What PEFT measured and what we compare it with:

- accelerator_memory_max is torch's max_memory_reserved() at the end of the run minus the reserve
  before the model loaded (PEFT's utils.log_results): the peak of the caching allocator's
  *reserve* over the whole run (training and evaluation), weights included. It is not the peak of
  allocated memory (PEFT does not record that). Our estimate is of allocated memory, so
  predicted / measured < 1 by the allocator's slack (fragmentation across batches of varying
  length; PEFT empties the cache every 10 steps).
- accelerator_memory_reserved_99th: the 99th percentile of memory_reserved() sampled after each
  optimizer step: shown for context.
- The peak belongs to the longest batch. PEFT truncates at max_seq_length (768) and keeps examples
  whose query + response are at most 1,300 characters; the records give the mean (train total
  tokens / train samples, about 210), not the longest. Batches are bucketed by length (groups of 80
  sorted, then cut into batches of 4), so the longest batch is about 4 x its longest example.
  We predict at max_seq_length (the only length the config states: an upper bound); seq_len=N
  predicts at another length.

    peft-bench peft-runs [peft_dir=DIR] [seq_len=N] [output_dir=results/reference/peft-method-comparison]
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT.parent / "shared" / "peft-method-comparison"  # ../shared relative to the project
MODEL = "llama3.2-3b-config"  # the config-only model with Llama-3.2-3B's shape
MODEL_IDS = ("meta-llama/Llama-3.2-3B",)
SOURCE = "huggingface/peft method_comparison/MetaMathQA"  # how rows from this loader are marked


@dataclass
class Mapped:
    """One PEFT run as our estimator's inputs."""

    name: str                   # the result file's stem
    peft_type: str              # PEFT's peft_type, or FULL for full fine-tuning
    method: str                 # our method (conf/method/<method>.yaml)
    settings: dict[str, Any]    # values set on cfg.method
    note: str = ""              # how the mapping was made, when it is not one to one
    train: dict[str, Any] = field(default_factory=dict)  # PEFT's train_config
    info: dict[str, Any] = field(default_factory=dict)   # PEFT's train_info


def load_results(directory: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(file stem, record) for every results/*.json under a copy of PEFT's MetaMathQA folder."""
    path = Path(directory)
    files = sorted((path / "results").glob("*.json")) if path.is_dir() else []
    if not files:
        raise ConfigError("peft_dir", str(directory), "a copy of PEFT's method_comparison/MetaMathQA folder (it holds results/*.json); "
                          f"the default is {DEFAULT_DIR}")
    out = []
    for f in files:
        try:
            record = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError("peft_dir", str(f), f"a JSON result file ({exc})") from exc
        if not isinstance(record, dict) or "run_info" not in record or "train_info" not in record:
            raise ConfigError("peft_dir", str(f), "a PEFT result file with run_info and train_info")
        out.append((f.stem, record))
    return out


def _targets(value: Any) -> list[str] | str:
    return value if isinstance(value, str) else sorted(str(v) for v in value)


def map_method(peft: dict[str, Any] | None, train: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(our method, its settings, note) for a PEFT config, or raise ValueError with the reason it does not map."""
    if train.get("optimizer_type", "AdamW") not in ("AdamW", "adamw"):
        raise ValueError(f"optimizer {train['optimizer_type']!r}: the estimator counts AdamW's state")
    if not peft:
        return "full", {}, ""
    kind = str(peft.get("peft_type"))
    if kind == "LORA":
        init = peft.get("init_lora_weights", True)
        if init not in (True, "gaussian"):
            raise ValueError(f"init_lora_weights={init!r} changes which parameters train (the counts differ from plain LoRA)")
        for key in ("use_bdlora", "layer_replication", "alora_invocation_tokens", "trainable_token_indices", "target_parameters",
                    "rank_pattern", "alpha_pattern", "use_qalora", "lora_bias", "modules_to_save", "layers_to_transform"):
            if peft.get(key):
                raise ValueError(f"LoRA with {key}: not plain LoRA")
        settings = {"r": int(peft["r"]), "alpha": float(peft["lora_alpha"]), "dropout": float(peft.get("lora_dropout") or 0.0),
                    "target_modules": _targets(peft["target_modules"]), "bias": str(peft.get("bias", "none")),
                    "use_rslora": bool(peft.get("use_rslora")), "use_dora": bool(peft.get("use_dora"))}
        note = "rsLoRA: only the scale differs, the same tensors" if settings["use_rslora"] else ""
        return "lora", settings, "DoRA (our use_dora)" if settings["use_dora"] else note
    if kind == "IA3":
        if peft.get("modules_to_save"):
            raise ValueError("IA3 with modules_to_save")
        return "ia3", {"target_modules": _targets(peft["target_modules"]),
                       "feedforward_modules": _targets(peft.get("feedforward_modules") or [])}, ""
    if kind == "PROMPT_TUNING":
        return "prompt_tuning", {"num_virtual_tokens": int(peft["num_virtual_tokens"]), "init": "random"}, \
            f"init {peft.get('prompt_tuning_init')}: the initial values do not change memory"
    if kind == "PREFIX_TUNING":
        projection = bool(peft.get("prefix_projection"))
        settings = {"num_virtual_tokens": int(peft["num_virtual_tokens"]), "projection": projection}
        if projection:
            settings["projection_size"] = int(peft["encoder_hidden_size"])
        return "prefix_tuning", settings, ""
    if kind == "LN_TUNING":
        wanted = set(_targets(peft.get("target_modules") or []))
        if wanted != {"input_layernorm", "post_attention_layernorm", "norm"}:
            raise ValueError(f"LN tuning of {sorted(wanted)}: ours trains every norm")
        return "layernorm", {}, "every RMSNorm weight trains (our layernorm method)"
    raise ValueError(f"{kind}: no method of ours computes it")


def map_run(name: str, record: dict[str, Any]) -> Mapped:
    """The estimator's inputs for one PEFT result, or ValueError with why it does not map."""
    run, info = record["run_info"], record["train_info"]
    train = run.get("train_config") or {}
    if info.get("status") != "success":
        raise ValueError(f"status {info.get('status')!r}")
    if train.get("model_id") not in MODEL_IDS:
        raise ValueError(f"model {train.get('model_id')!r}: only {', '.join(MODEL_IDS)} has a config-only model here")
    if train.get("dtype") not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"dtype {train.get('dtype')!r}: quantised base weights are outside the estimator")
    if train.get("compile"):
        raise ValueError("torch.compile: its fused kernels keep other activations")
    if train.get("use_amp"):
        raise ValueError("autocast (use_amp): activations in another dtype than the weights")
    peft = run.get("peft_config")
    method, settings, note = map_method(peft, train)
    return Mapped(name, str(peft.get("peft_type")) if peft else "FULL", method, settings, note, train, info)


def _prepared(mapped: Mapped) -> tuple[Any, str]:
    """Our method applied to the meta Llama-3.2-3B with the run's settings: (model, head)."""
    from bench.config.compose import compose
    from bench.measure.estimate import prepare_meta

    overrides = [f"model={MODEL}", f"method={mapped.method}", "task=dialogsum", f"train.batch_size={int(mapped.train['batch_size'])}",
                 f"model.dtype={mapped.train['dtype']}"]
    cfg = compose(overrides)
    for key, value in mapped.settings.items():
        cfg.method[key] = value
    return prepare_meta(cfg)


def compare(mapped: Mapped, seq_len: int | None = None) -> dict[str, Any]:
    """Predicted against measured for one mapped run (bytes, and their ratio)."""
    from bench.measure.estimate import predict

    model, head = _prepared(mapped)
    train, info = mapped.train, mapped.info
    attention = "eager" if train.get("attn_implementation") == "eager" else "sdpa"  # None: transformers' default for Llama, SDPA
    est = predict(model, head, int(train["batch_size"]), int(seq_len or train["max_seq_length"]), attention=attention,
                  keeps_logits=True, gradient_checkpointing=bool(train.get("use_gc")))
    ours = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad)
    theirs = int(info["num_trainable_params"])
    measured = int(info["accelerator_memory_max"])
    return {
        "run": mapped.name, "peft_type": mapped.peft_type, "method": mapped.method, "note": mapped.note,
        "seq_len": est["inputs"]["seq_len"], "use_gc": bool(train.get("use_gc")),
        "predicted_bytes": est["total_bytes"], "measured_reserved_peak_bytes": measured,
        "ratio": est["total_bytes"] / measured,
        "reserved_99th_bytes": int(info["accelerator_memory_reserved_99th"]),
        "weights_bytes": est["weights_bytes"], "gradients_bytes": est["gradients_bytes"],
        "optimizer_state_bytes": est["optimizer_state_bytes"], "activations_bytes": est["activations_bytes"],
        "trainable_ours": ours, "trainable_peft": theirs, "trainable_match": ours == theirs,
    }


def run_all(directory: str | Path, seq_len: int | None = None) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(a comparison row per mapped run, (run, reason) for each run that does not map)."""
    rows, skipped = [], []
    for name, record in load_results(directory):
        try:
            mapped = map_run(name, record)
        except ValueError as exc:
            skipped.append((name, str(exc)))
            continue
        rows.append(compare(mapped, seq_len))
    return rows, skipped


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: runs, median ratio, and the worst one (furthest from 1)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        ratios = [r["ratio"] for r in rows if r["method"] == method]
        out.append({"method": method, "runs": len(ratios), "median": statistics.median(ratios),
                    "worst": max(ratios, key=lambda x: abs(x - 1))})
    return out


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


COLUMNS = ("run", "peft_type", "method", "seq_len", "predicted_gib", "measured_gib", "ratio", "reserved_99th_gib",
           "weights_gib", "gradients_gib", "optimizer_gib", "activations_gib", "trainable_ours", "trainable_peft", "trainable_match", "note")


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"run": r["run"], "peft_type": r["peft_type"], "method": r["method"], "seq_len": r["seq_len"],
            "predicted_gib": _gib(r["predicted_bytes"]), "measured_gib": _gib(r["measured_reserved_peak_bytes"]),
            "ratio": f"{r['ratio']:.3f}", "reserved_99th_gib": _gib(r["reserved_99th_bytes"]),
            "weights_gib": _gib(r["weights_bytes"]), "gradients_gib": _gib(r["gradients_bytes"]),
            "optimizer_gib": _gib(r["optimizer_state_bytes"]), "activations_gib": _gib(r["activations_bytes"]),
            "trainable_ours": r["trainable_ours"], "trainable_peft": r["trainable_peft"],
            "trainable_match": "yes" if r["trainable_match"] else "NO", "note": r["note"]}


def markdown(rows: list[dict[str, Any]], skipped: list[tuple[str, str]], directory: str | Path) -> str:
    shown = "../shared/peft-method-comparison" if Path(directory).resolve() == DEFAULT_DIR.resolve() else directory
    lines = [f"# The memory estimator against PEFT's measurements ({SOURCE})", "",
             f"`peft-bench peft-runs {shown}`: predicted = our estimate of the allocated peak (attention SDPA, the loop "
             "holds the logits, fp32 loss); measured = PEFT's `accelerator_memory_max`, the caching allocator's *reserved* peak "
             "over the run (weights included); reserved_99th: the 99th percentile of the reserve sampled after each step. "
             "ratio = predicted / measured; worst = the ratio furthest from 1. Parts in GiB are the estimate's.", "",
             "| method | runs | median ratio | worst ratio |", "|---|---|---|---|"]
    lines += [f"| {s['method']} | {s['runs']} | {s['median']:.3f} | {s['worst']:.3f} |" for s in summary(rows)]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(v) for v in _row(r).values()) + " |" for r in rows]
    lines += ["", "Read with care:", "",
              "- Length: predicted at each run's max_seq_length, an upper bound: PEFT's records give the mean length "
              "(train total tokens / samples), not the longest batch, where the peak is.",
              "- Reserved, not allocated: the allocator's slack is outside the estimate, so a perfect estimate of the "
              "allocated peak reads below 1.",
              "- The total adds gradients to the activations; the loop frees gradients before each forward pass "
              "(zero_grad sets them to None), so for full fine-tuning the sum is above the allocated peak by up to the "
              "gradients. The two errors partly cancel.",
              "- DoRA's extra activations (the weight norm's path) and LoRA dropout masks are not modelled."]
    lines += ["", f"Not mapped ({len(skipped)}):", ""] + [f"- {name}: {reason}" for name, reason in skipped]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(_row(r) for r in rows)


def external_records(directory: str | Path = DEFAULT_DIR) -> list[dict[str, Any]]:
    """PEFT's runs as record-shaped dicts that bench.report.frames.runs_frame can show beside ours,
    marked as an external source (run.source, an id and a model name of their own). Every successful
    run is kept; its method is ours where it maps, else PEFT's type in lower case. The peak is PEFT's
    reserved peak (see the module's docstring), the score GSM8K test accuracy, storage the saved adapter."""
    out = []
    for name, record in load_results(directory):
        run, info = record["run_info"], record["train_info"]
        train, peft = run.get("train_config") or {}, run.get("peft_config")
        if info.get("status") != "success":
            continue
        try:
            mapped = map_run(name, record)
            method, settings = mapped.method, mapped.settings
        except ValueError:
            method, settings = str((peft or {}).get("peft_type", "full")).lower(), {}
        final = next((m for m in reversed(info.get("metrics") or []) if "test accuracy" in m), {})
        trainable, total = info.get("num_trainable_params"), info.get("num_total_params")
        out.append({
            "run": {"id": f"peft:{name}", "source": f"external: {SOURCE}", "model": f"{train.get('model_id', '?')} (PEFT, external)",
                    "task": "metamathqa-gsm8k", "method": method, "seed": train.get("seed"), "status": "success",
                    "random_weights": False, "started_at": run.get("created_at"),
                    "config": {"method": {"name": method, **settings},
                               "train": {"lr": (train.get("optimizer_kwargs") or {}).get("lr"), "max_steps": train.get("max_steps"),
                                         "batch_size": train.get("batch_size")}}},
            "params": {"trainable": trainable, "total": total,
                       "percent": 100 * trainable / total if trainable and total else None},
            "memory": {"peak_bytes": info.get("accelerator_memory_max"), "peak_is": "reserved (PEFT's accelerator_memory_max)"},
            "quality": {"main_metric": "accuracy", "accuracy": final.get("test accuracy")},
            "storage": {"bytes": info.get("file_size")},
        })
    return out


def verb(opts: Any, cfg: Any = None, overrides: list[str] | None = None) -> int:
    """`peft-bench peft-runs` (its keys: conf/peft-runs.yaml)."""
    if opts.seq_len is not None and (not isinstance(opts.seq_len, int) or isinstance(opts.seq_len, bool) or opts.seq_len < 1):
        raise ConfigError("seq_len", opts.seq_len, "an integer >= 1 (tokens per example), or null")
    folder = Path(opts.peft_dir)
    if not folder.is_absolute() and not folder.exists():
        folder = ROOT / folder  # relative to the project, as the default is
    rows, skipped = run_all(str(folder), opts.seq_len)
    text = markdown(rows, skipped, str(folder))
    print(text, end="")
    if opts.output_dir:
        out = Path(opts.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(text)
        write_csv(rows, out / "table.csv")
    return 0
