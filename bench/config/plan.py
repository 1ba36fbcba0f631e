"""Validate the whole resolved config before any model weights load: a bad value fails with the
field, the value and what would be valid. The plain checks (types, ranges, choices, unknown keys,
the data files and their rows) are bench.config.checks's, torch-free and run first; what follows needs
torch or the model's architecture read without weights: CUDA and bf16 support, the architecture,
the family, the position table against the task's lengths, and each method's checks against the
model built on the meta device. What it decides on the way (method, task kind, family, head,
device) it returns as a Plan, so that no later stage works it out again."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import CONFIG_MAPPING, PretrainedConfig

from bench.models import sources as models

from bench.config import checks as preflight
from bench.errors import AssetError, ConfigError
from bench.methods import Method, Probe, get_method
from bench.tasks import Kind, get_kind


@dataclass(frozen=True)
class Speed:
    """The speed switches (config `speed.*`) as this run applies them, resolved once for its device."""

    attention: str  # auto | sdpa | eager
    precision: str  # fp32 | bf16
    compile: bool
    gradient_checkpointing: bool
    fused_adamw: bool  # `auto` resolved: the fused kernel on CUDA, torch's default elsewhere
    count_flops: bool


def resolve_speed(cfg: DictConfig, device: torch.device) -> Speed:
    from bench.run import speed

    switches = speed.settings(cfg)  # the one reader of cfg.speed (it knows the defaults of records made before a switch existed)
    fused = switches["fused_adamw"]
    return Speed(attention=str(switches["attention"]), precision=str(switches["precision"]), compile=bool(switches["compile"]),
                 gradient_checkpointing=bool(switches["gradient_checkpointing"]),
                 fused_adamw=device.type == "cuda" if fused == "auto" else bool(fused),
                 count_flops=bool((cfg.get("speed") or {}).get("count_flops", True)))


@dataclass(frozen=True)
class Plan:
    """What validation decided about a run; bench.run.prepare and bench.run.pipeline read it instead of the config."""

    method: Method  # the registry's entry for cfg.method.name
    kind: Kind  # the task kind for cfg.task.kind
    family: str  # encoder | decoder | encoder-decoder
    head: str  # classifier | causal_lm | seq2seq_lm: what the kind puts on this family
    device: torch.device  # cfg.device resolved (auto: cuda when torch sees one, else cpu)
    speed: Speed  # the speed switches, resolved for that device


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(cfg: DictConfig) -> None:
    """What only torch can tell: whether CUDA is there, bf16 support, and float16 weights on the
    CPU when device=auto could not be decided without torch."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda", "auto or cpu: torch sees no CUDA device here")
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    preflight.check_dtype(cfg.model, on_cpu)
    if (cfg.get("speed") or {}).get("precision") == "bf16" and not on_cpu and not torch.cuda.is_bf16_supported():
        raise ConfigError("speed.precision", "bf16", f"fp32: {torch.cuda.get_device_name()} has no bf16 support")


def architecture(mcfg: DictConfig) -> PretrainedConfig:
    """The model's config (no weights). A model whose config cannot be read (not on the hub, not in
    the cache offline, a folder without config.json, bad size fields) is a ConfigError, not a traceback."""
    if mcfg.source == "config" and mcfg.get("arch") not in CONFIG_MAPPING:
        raise ConfigError("model.arch", mcfg.get("arch"), "a transformers model type such as bert, llama, t5")
    try:
        return models.load_config(mcfg)
    except AssetError as exc:  # an asset that could not be fetched or built: the reason says what to do
        raise ConfigError("model.path", mcfg.get("path"), f"an offline asset that can be prepared ({exc})") from None
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("model.path", mcfg.get("path"), f"a model whose config can be read ({reason})") from None
    except (TypeError, ValueError) as exc:
        if mcfg.source != "config":  # a hub or local model's config.json that transformers cannot read
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError("model.path", mcfg.get("path"), f"a model whose config can be read ({reason})") from None
        raise ConfigError("model.size", mcfg.get("size"), f"config fields of a {mcfg.get('arch')} model ({exc})") from None


def model_family(mcfg: DictConfig, config: PretrainedConfig | None = None) -> str:
    """The declared family, or the one read from the architecture's config (no weights)."""
    family = mcfg.get("family")
    if family in models.FAMILIES:
        return str(family)
    return models.family_of(config or architecture(mcfg))


def positions(config: PretrainedConfig) -> int | None:
    """The model's position table size; None for relative positions (T5), which have no table."""
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_lengths(cfg: DictConfig, config: PretrainedConfig, family: str, kind: Kind) -> None:
    """The task's longest input (its kind says how long) fits the model's positions (otherwise a
    run fails mid-way, often after training, at the first example that long)."""
    limit = positions(config)
    if limit is None:  # T5's relative positions have no limit
        return
    longest, made_of, key = kind.input_tokens(cfg, family)
    if longest <= limit:
        return
    value = OmegaConf.select(cfg, key)
    if made_of == key:
        raise ConfigError(key, value, f"at most {limit}: {cfg.model.name} has {limit} positions")
    raise ConfigError(key, value, f"at most {value - (longest - limit)}: {made_of} ({longest} tokens) must fit "
                      f"{cfg.model.name}'s {limit} positions")


def check_vocab(cfg: DictConfig, config: PretrainedConfig) -> None:
    """A synthetic task's token ids must exist in a tokenizer-less model's own vocabulary (a model
    with a tokenizer gets the tokenizer's, which no synthetic vocabulary of ours exceeds)."""
    wanted, vocab = cfg.task.get("vocab_size"), getattr(config, "vocab_size", None)
    if cfg.model.get("tokenizer") is None and isinstance(wanted, int) and isinstance(vocab, int) and wanted > vocab:
        raise ConfigError("task.vocab_size", wanted, f"at most {vocab}: {cfg.model.name}'s vocabulary")


def check_quantized_frozen(cfg: DictConfig, method: Method, meta: torch.nn.Module, head: str) -> None:
    """A quantized base (model.quantize) is frozen: bitsandbytes' 4- and 8-bit weights take no
    gradient and no optimizer step. The method is applied to the meta model (bitsandbytes layers,
    nothing quantized; milliseconds) and refused when it would train one of them (full,
    last_layers, selective over linear layers ...); what it trains beside them (adapters, soft
    prompts, biases, norms, the task head) is allowed. Any method, with no list of names."""
    quantize = cfg.model.get("quantize")
    if not quantize or not method.trains:
        return
    from types import SimpleNamespace

    quantized = {id(p): n for n, p in meta.named_parameters() if type(p).__name__ in ("Params4bit", "Int8Params")}
    labels = [str(x) for x in (cfg.task.get("labels") or [0, 1])]
    method_cfg = OmegaConf.create(OmegaConf.to_container(cfg.method, resolve=True))
    if "init" in method_cfg:
        method_cfg.init = "random"  # a soft prompt's starting values need the tokenizer, and do not matter here
    task = SimpleNamespace(head=head, label_names=labels, tokenizer=None, num_labels=len(labels))
    try:
        applied = method.apply(meta, method_cfg, task)
    except ConfigError:
        raise
    except Exception:  # an init that computes on weights cannot run on the meta device: left to the real apply, where torch refuses a gradient on an integer (quantized) weight
        return
    trained = sorted(quantized[id(p)] for p in applied.parameters() if p.requires_grad and id(p) in quantized)
    if trained:
        raise ConfigError("model.quantize", quantize, f"null for method {method.name}: it trains {len(trained)} weights that "
                          f"{quantize} stores frozen in {4 if quantize != 'int8' else 8} bits (such as {trained[0]}); a quantized "
                          "base takes adapters, soft prompts, biases, norms or a task head (lora, ia3, adapter, prompt_tuning, ...)")


def check_data_parallel(cfg: DictConfig, method: Method) -> None:
    """train.world_size > 1 needs training to split (a method that trains nothing has none) and,
    on CUDA, a GPU for each process. Every method that trains was tried data-parallel (2 processes
    on tiny-llama: the same curve as one process); one that cannot refuses in its own `check`."""
    world = int(cfg.train.get("world_size", 1))
    if world == 1:
        return
    if not method.trains:
        raise ConfigError("train.world_size", world, f"1 for method {method.name}: it trains nothing, so there is no training to split across processes")
    gpus = torch.cuda.device_count()
    if pick_device(cfg.device).type == "cuda" and gpus < world:
        raise ConfigError("train.world_size", world, f"at most {gpus}: each process trains on a GPU of its own, and torch sees {gpus} here")


def validate(cfg: DictConfig, checked: bool = False) -> Plan:
    """Check everything checkable without weights; returns what was decided on the way.
    `checked`: the plain checks (bench.config.checks) already passed for this very config."""
    if not checked:
        preflight.check(cfg)
    check_device(cfg)
    method = get_method(cfg.method.name)
    method.check(cfg.method, None)  # the method's own fields first
    check_data_parallel(cfg, method)
    kind = get_kind(cfg.task.kind)
    config = architecture(cfg.model)
    family = model_family(cfg.model, config)
    if family not in kind.families:
        raise ConfigError("model", cfg.model.name, f"a {' or '.join(kind.families)} model for {kind.name} tasks; {cfg.model.name} is {family}")
    check_lengths(cfg, config, family, kind)
    check_vocab(cfg, config)
    head = kind.head_for(family)
    meta = models.meta_model(cfg.model, head, num_labels=len(cfg.task.get("labels") or [0, 1]))
    method.check(cfg.method, Probe(model=meta, family=family, head=head, cfg=cfg))  # against the model's names and shapes
    check_quantized_frozen(cfg, method, meta, head)
    device = pick_device(cfg.device)
    return Plan(method=method, kind=kind, family=family, head=head, device=device, speed=resolve_speed(cfg, device))


def verb(opts: DictConfig, cfg: DictConfig | None, overrides: list[str]) -> int:
    """`peft-bench validate`: every check of `validate`, and what the run would be."""
    assert cfg is not None
    plan = validate(cfg)
    from bench.records.store import config_hash

    print(f"config ok: model={cfg.model.name} task={cfg.task.name} method={cfg.method.name} seed={cfg.seed} "
          f"({plan.family} {plan.head}, {plan.kind.name} task, on {plan.device}); config hash {config_hash(cfg)}; "
          f"records go to {cfg.results_dir}")
    return 0
