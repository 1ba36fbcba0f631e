"""Hold the memory estimator against PEFT's published GPU measurements (its method comparison on
MetaMathQA: Llama-3.2-3B, bf16, batch 4, up to 768 tokens, one NVIDIA L40S).

Each result file is mapped to the estimator's inputs: the model is conf/model/llama3.2-3b-config.yaml
(built on the meta device), the method is ours with PEFT's settings, batch, precision and gradient
checkpointing are read from the run's train_config. The method, in this order:

- a method YAML (conf/method/<name>.yaml, bench/methods/peft_types.py) that declares the run's
  peft_type, with `method.config` = the run's peft_config (the fields peft's config class accepts,
  less what names the run rather than the method: task_type, base model, versions; and AdaLoRA's
  rank_pattern, the budget the run wrote back after training). Where several YAMLs declare the
  type (LoRA's variants: dora, lorafa, pissa...), the one whose optimizer matches the run's
  (PEFT's `lora-fa` = our `optimizer.kind: lorafa`, `lora+` = loraplus) and whose every boolean
  and string setting agrees with the run's (use_dora, init_lora_weights) is the one; a type that a
  hand-written method also covers (LoRA, IA3, prompt and prefix tuning, LN tuning) needs that
  agreement even with one YAML, so plain LoRA stays `lora`;
- else the hand-written method with PEFT's settings (full fine-tuning, LoRA with rsLoRA/DoRA,
  IA3, prompt tuning, prefix tuning, LN tuning as our layernorm);
- else the run is listed with the reason, as is a run whose method peft cannot apply on the meta
  device (an init that computes on the weights: an SVD, a clustering, a random sparse mask).

The trainable count is checked twice: the meta model's (peft's own) and the method's formula
(its YAML's `trainable` expressions, or the hand-written method's), both against PEFT's
num_trainable_params. What PEFT measured and what we compare it with:

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
import functools
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
    record_meta: dict[str, Any] = field(default_factory=dict)  # PEFT's meta_info (package versions, machine)


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


# PEFT's optimizer_type -> our YAML's optimizer.kind (None: AdamW, the loop's own)
OPTIMIZER_KINDS: dict[str, str | None] = {"AdamW": None, "adamw": None, "lora-fa": "lorafa", "lora+": "loraplus"}
# A peft config's fields that name the run, not the method (never carried into method.config)
RUN_FIELDS = ("peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping", "peft_version")
# Fields a run writes back after training (AdaLoRA's final rank budget), not what it started with
WRITTEN_BACK = {"ADALORA": ("rank_pattern",)}
# Where the peft installed here computes a type differently from the one PEFT ran (its files' meta_info):
# said in the row's note when the versions differ (the estimate is of what this peft does)
VERSION_NOTES = {
    "ADALORA": "peft 0.21's cast of adapters to fp32 on a bf16 model re-creates AdaLoRA's ranknum as a trainable "
               "parameter; our apply freezes it again (bench/methods/peft_types.py), as the version PEFT ran had it",
    "OSF": "peft 0.21's OSF keeps other frozen factors as buffers (copies of the initial low-rank U, S, V) than the "
           "version PEFT ran",
}
# Types a hand-written method of ours covers (map_method's table): a YAML of the type must agree on every setting
HAND_WRITTEN = ("LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING", "LN_TUNING")


def peft_yamls() -> dict[str, list[tuple[str, Any]]]:
    """peft_type -> [(method name, its YAML)], for every registered method a YAML with peft_type declares."""
    from bench.methods import METHODS

    return _peft_yamls(tuple((name, METHODS[name].source) for name in sorted(METHODS) if METHODS[name].source.endswith(".yaml")))


@functools.lru_cache(maxsize=4)
def _peft_yamls(sources: tuple[tuple[str, str], ...]) -> dict[str, list[tuple[str, Any]]]:
    from omegaconf import OmegaConf

    out: dict[str, list[tuple[str, Any]]] = {}
    for name, source in sources:
        spec = OmegaConf.load(source)
        if spec.get("peft_type"):
            out.setdefault(str(spec.peft_type), []).append((name, spec))
    return out


def _config_fields(kind: str) -> dict[str, Any]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    cls = PEFT_TYPE_TO_CONFIG_MAPPING.get(kind)
    return dict(cls.__dataclass_fields__) if cls is not None else {}


def _default(field: Any) -> Any:
    from dataclasses import MISSING

    if field.default is not MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not MISSING else None


def _agrees(spec: Any, peft: dict[str, Any], fields: dict[str, Any]) -> int | None:
    """How many boolean and string settings of the YAML's config agree with the run's (peft's
    default where the run leaves one out), or None where one disagrees."""
    from omegaconf import OmegaConf

    agreed = 0
    config = OmegaConf.to_container(spec.config, resolve=False) if spec.get("config") else {}
    for key, value in config.items():  # unresolved: an interpolation (${train.max_steps}) is no setting of its own
        if not isinstance(value, (bool, str)) or "${" in str(value) or key == "target_modules" or key not in fields:
            continue
        if peft.get(key, _default(fields[key])) != value:
            return None
        agreed += 1
    return agreed


def yaml_method(peft: dict[str, Any], train: dict[str, Any], run: str = "") -> tuple[str, dict[str, Any], str] | None:
    """(method, {"config": the run's peft config}, note) from the YAML that declares the run's
    peft_type (see the module's docstring for the choice among several), or None."""
    kind = str(peft.get("peft_type"))
    optimizer = OPTIMIZER_KINDS.get(str(train.get("optimizer_type", "AdamW")), "?")
    fields = _config_fields(kind)
    found = []
    declared = peft_yamls().get(kind, [])
    for name, spec in declared:
        if (spec.get("optimizer") or {}).get("kind") != optimizer:
            continue
        agreed = _agrees(spec, peft, fields)
        if agreed is None and (kind in HAND_WRITTEN or len(declared) > 1):
            continue
        found.append((name == run.split("--")[0], agreed or 0, name))
    if not found:
        return None
    name = max(found)[2]  # named as PEFT's experiment folder, else the most settings in agreement
    dropped = [k for k in WRITTEN_BACK.get(kind, ()) if peft.get(k)]
    config = {k: v for k, v in peft.items() if k in fields and k not in RUN_FIELDS and k not in dropped}
    note = f"{', '.join(dropped)} left out: written back after training" if dropped else ""
    return name, {"config": config}, note


def map_method(peft: dict[str, Any] | None, train: dict[str, Any], run: str = "") -> tuple[str, dict[str, Any], str]:
    """(our method, its settings, note) for a PEFT config, or raise ValueError with the reason it does not map."""
    optimizer = str(train.get("optimizer_type", "AdamW"))
    if optimizer not in OPTIMIZER_KINDS:
        raise ValueError(f"optimizer {optimizer!r}: the estimator counts AdamW's state (or a variant a method YAML declares)")
    if not peft:
        if OPTIMIZER_KINDS[optimizer] is not None:
            raise ValueError(f"full fine-tuning with optimizer {optimizer!r}")
        return "full", {}, ""
    found = yaml_method(peft, train, run)
    if found is not None:
        return found
    kind = str(peft.get("peft_type"))
    if OPTIMIZER_KINDS[optimizer] is not None:
        raise ValueError(f"{kind} with optimizer {optimizer!r}: no method YAML of ours declares that type with optimizer.kind "
                         f"{OPTIMIZER_KINDS[optimizer]}")
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
    raise ValueError(f"{kind}: no method of ours computes it (no conf/method YAML declares peft_type {kind})")


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
    method, settings, note = map_method(peft, train, name)
    return Mapped(name, str(peft.get("peft_type")) if peft else "FULL", method, settings, note, train, info, record.get("meta_info") or {})


def _config(mapped: Mapped) -> Any:
    from bench.config.compose import compose

    overrides = [f"model={MODEL}", f"method={mapped.method}", "task=dialogsum", f"train.batch_size={int(mapped.train['batch_size'])}",
                 f"model.dtype={mapped.train['dtype']}"]
    cfg = compose(overrides)
    for key, value in mapped.settings.items():
        cfg.method[key] = value
    return cfg


def _prepared(mapped: Mapped) -> tuple[Any, str]:
    """Our method applied to the meta Llama-3.2-3B with the run's settings: (model, head)."""
    from bench.measure.estimate import prepare_meta

    return prepare_meta(_config(mapped))


def formula_count(mapped: Mapped) -> int | None:
    """The method's own trainable count (its YAML's expressions, or the hand-written formula) on
    the meta base with the run's settings; None for a method without one."""
    from types import SimpleNamespace

    from bench.methods import get_method
    from bench.models import sources

    cfg = _config(mapped)
    method = get_method(str(cfg.method.name))
    if method.formula is None:
        return None
    base = sources.meta_model(cfg.model, "causal_lm")
    return int(method.formula(base, cfg.method, SimpleNamespace(head="causal_lm", label_names=[], tokenizer=None, num_labels=2)))


def _installed_peft() -> str:
    import peft

    return str(peft.__version__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def compare(mapped: Mapped, seq_len: int | None = None) -> dict[str, Any]:
    """Predicted against measured for one mapped run (bytes, and their ratio). A method peft cannot
    apply on the meta device raises ValueError with the reason."""
    from bench.measure.estimate import predict

    try:
        model, head = _prepared(mapped)
    except ConfigError as exc:
        raise ValueError(f"{mapped.method}: our checks refuse PEFT's settings: {_first_line(exc)}") from None
    except (NotImplementedError, RuntimeError) as exc:  # an init that computes on the weights: the meta device has none
        raise ValueError(f"{mapped.method}: not estimated: peft's init computes on the weights, which the meta device does not hold "
                         f"({type(exc).__name__}: {_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 (a method's own error, e.g. in its YAML's expressions: listed, not fatal)
        raise ValueError(f"{mapped.method}: applying it on the meta model fails ({type(exc).__name__}: {_first_line(exc)})") from None
    train, info = mapped.train, mapped.info
    attention = "eager" if train.get("attn_implementation") == "eager" else "sdpa"  # None: transformers' default for Llama, SDPA
    est = predict(model, head, int(train["batch_size"]), int(seq_len or train["max_seq_length"]), attention=attention,
                  keeps_logits=True, gradient_checkpointing=bool(train.get("use_gc")))
    ours = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad)
    note = mapped.note
    ran = str(((mapped.record_meta or {}).get("package_info") or {}).get("peft-version", ""))
    if mapped.peft_type in VERSION_NOTES and ran and not ran.startswith(_installed_peft()):
        note = "; ".join(filter(None, [note, f"{VERSION_NOTES[mapped.peft_type]} (PEFT ran {ran}, here {_installed_peft()})"]))
    try:
        formula = formula_count(mapped)
    except Exception as exc:  # noqa: BLE001 (a formula that fails is a mismatch, said in the note)
        formula, note = -1, "; ".join(filter(None, [note, f"its formula fails: {type(exc).__name__}: {_first_line(exc)}"]))
    theirs = int(info["num_trainable_params"])
    measured = int(info["accelerator_memory_max"])
    return {
        "run": mapped.name, "peft_type": mapped.peft_type, "method": mapped.method, "note": note,
        "seq_len": est["inputs"]["seq_len"], "use_gc": bool(train.get("use_gc")),
        "predicted_bytes": est["total_bytes"], "measured_reserved_peak_bytes": measured,
        "ratio": est["total_bytes"] / measured,
        "reserved_99th_bytes": int(info["accelerator_memory_reserved_99th"]),
        "weights_bytes": est["weights_bytes"], "gradients_bytes": est["gradients_bytes"],
        "optimizer_state_bytes": est["optimizer_state_bytes"], "activations_bytes": est["activations_bytes"],
        "buffers_bytes": est.get("buffers_bytes", 0), "adapter_activations_bytes": est.get("adapter_activations_bytes", 0),
        "trainable_ours": ours, "trainable_formula": formula, "trainable_peft": theirs,
        "trainable_match": ours == theirs and formula in (None, theirs),
    }


def run_all(directory: str | Path, seq_len: int | None = None) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(a comparison row per mapped run, (run, reason) for each run that does not map)."""
    rows, skipped = [], []
    for name, record in load_results(directory):
        try:
            mapped = map_run(name, record)
            rows.append(compare(mapped, seq_len))
        except ValueError as exc:
            skipped.append((name, str(exc)))
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
           "weights_gib", "buffers_gib", "gradients_gib", "optimizer_gib", "activations_gib", "adapter_kept_gib",
           "trainable_ours", "trainable_formula", "trainable_peft", "trainable_match", "note")


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"run": r["run"], "peft_type": r["peft_type"], "method": r["method"], "seq_len": r["seq_len"],
            "predicted_gib": _gib(r["predicted_bytes"]), "measured_gib": _gib(r["measured_reserved_peak_bytes"]),
            "ratio": f"{r['ratio']:.3f}", "reserved_99th_gib": _gib(r["reserved_99th_bytes"]),
            "weights_gib": _gib(r["weights_bytes"]), "buffers_gib": _gib(r.get("buffers_bytes", 0)),
            "gradients_gib": _gib(r["gradients_bytes"]), "optimizer_gib": _gib(r["optimizer_state_bytes"]),
            "activations_gib": _gib(r["activations_bytes"]), "adapter_kept_gib": _gib(r.get("adapter_activations_bytes", 0)),
            "trainable_ours": r["trainable_ours"],
            "trainable_formula": "" if r.get("trainable_formula") is None else r["trainable_formula"], "trainable_peft": r["trainable_peft"],
            "trainable_match": "yes" if r["trainable_match"] else "NO", "note": r["note"]}


def markdown(rows: list[dict[str, Any]], skipped: list[tuple[str, str]], directory: str | Path) -> str:
    shown = "../shared/peft-method-comparison" if Path(directory).resolve() == DEFAULT_DIR.resolve() else directory
    lines = [f"# The memory estimator against PEFT's measurements ({SOURCE})", "",
             f"`peft-bench peft-runs peft_dir={shown}`: predicted = our estimate of the allocated peak (attention SDPA, the loop "
             "holds the logits, fp32 loss); measured = PEFT's `accelerator_memory_max`, the caching allocator's *reserved* peak "
             "over the run (weights included); reserved_99th: the 99th percentile of the reserve sampled after each step. "
             "ratio = predicted / measured; worst = the ratio furthest from 1. Parts in GiB are the estimate's: buffers "
             "(a method's frozen tensors) are within weights, adapter_kept (what peft's adapter layers keep for the backward "
             "pass, measured on the meta device) within activations. trainable_ours: the meta model's count (peft's); "
             "trainable_formula: the method's own formula; trainable_match: both equal PEFT's.", "",
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
              "- What a method's adapter layers keep (adapter_kept) is measured per layer on the meta device (the saved "
              "tensors its forward leaves to the backward pass, beyond its frozen layer's); transients (a layer's dense delta "
              "while it is built, the backward's temporaries) are not, and the meta device runs this installed peft, not the "
              "version PEFT ran (see meta_info in its files; the notes say where that changes a method).",
              "- Not explained from the code: LoRA-FA (A frozen) measured as much as LoRA although autograd keeps no copy of "
              "a frozen A's input (so the estimate is LoRA's less that copy); BOFT reads above its measurement by about "
              "its fp32 permutation buffers."]
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
