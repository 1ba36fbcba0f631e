"""Selective fine-tuning: train a chosen subset of the model's own parameters, freeze the rest.

- `bitfit`: every bias term (Ben Zaken et al., 2021).
  Trainable = sum of the sizes of all `*.bias` parameters (+ the task head).
- `last_layers`: the top `method.num_layers` transformer blocks of the stack nearest the output
  (the decoder of an encoder-decoder; the encoder when classifying with an encoder).
  Trainable = num_layers x (parameters of one block) (+ the task head).
- `layernorm`: the weights and biases of every normalisation layer (LayerNorm, RMSNorm).
  Trainable = sum over norm layers of their weight (and bias) sizes (+ the task head).
- `selective`: parameter names matching any `method.include` regex and no `method.exclude` regex.

A classification head is new, so it always trains (named `head.*`; `params.head_trainable` says so).
Stored per task: exactly the trainable tensors, in one safetensors file.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.errors import ConfigError
from bench.methods.registry import Probe, head_params, int_at_least, load_trained, register, save_trained, set_trainable

BLOCK_LIST_NAMES = ("layer", "layers", "block", "blocks", "h")  # what transformers calls its block lists


def is_head(name: str) -> bool:
    return name.startswith("head.")


def bias_names(model: nn.Module, method_cfg: DictConfig) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.endswith(".bias") and not is_head(n)}


def norm_names(model: nn.Module, method_cfg: DictConfig) -> set[str]:
    names = set()
    for mname, module in model.named_modules():
        if "norm" in type(module).__name__.lower() and not is_head(mname + "."):
            names |= {f"{mname}.{p}" for p, _ in module.named_parameters(recurse=False)}
    return names


def block_stacks(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """The outermost lists of transformer blocks, in forward order (T5: encoder.block, decoder.block)."""
    lists = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) > 0 and n.rsplit(".", 1)[-1] in BLOCK_LIST_NAMES]
    return [(n, m) for n, m in lists if not any(n.startswith(o + ".") for o, _ in lists)]


def top_block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The outermost block list nearest the output (decoder.block for T5, layers for Llama)."""
    outer = block_stacks(model)
    if not outer:
        raise ConfigError("method.name", "last_layers", "a model with a list of transformer blocks; this one has none")
    return outer[-1]


def last_layer_names(model: nn.Module, method_cfg: DictConfig) -> set[str]:
    list_name, blocks = top_block_list(model)
    n = int(method_cfg.num_layers)
    prefixes = tuple(f"{list_name}.{i}." for i in range(len(blocks) - n, len(blocks)))
    return {p for p, _ in model.named_parameters() if p.startswith(prefixes)}


def _patterns(method_cfg: DictConfig, key: str) -> list[str]:
    value = method_cfg.get(key)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(OmegaConf.to_container(value))
    for item in items:
        try:
            re.compile(str(item))
        except re.error as exc:
            raise ConfigError(f"method.{key}", item, f"a regular expression over parameter names ({exc})") from None
    return [str(i) for i in items]


def pattern_names(model: nn.Module, method_cfg: DictConfig) -> set[str]:
    include, exclude = _patterns(method_cfg, "include"), _patterns(method_cfg, "exclude")
    return {n for n, _ in model.named_parameters() if not is_head(n)
            and any(re.search(p, n) for p in include) and not any(re.search(p, n) for p in exclude)}


def _train_only(model: nn.Module, chosen: set[str], name: str) -> nn.Module:
    """Freeze everything but the chosen parameters and the task head."""
    if not chosen:
        raise ConfigError("method", name, "a method that selects at least one parameter of this model; it selects none")
    set_trainable(model, lambda name: name in chosen or is_head(name))
    return model


def _must_select(select: Callable[[nn.Module, DictConfig], set[str]], method_cfg: DictConfig, probe: Probe, lacks: str) -> None:
    if not select(probe.model, method_cfg):
        raise ConfigError("method", method_cfg.name, f"a method that trains something in {probe.cfg.model.name}: it has {lacks}, so {method_cfg.name} would train nothing")


def check_bitfit(method_cfg: DictConfig, probe: Probe | None) -> None:
    if probe is not None:
        _must_select(bias_names, method_cfg, probe, "no bias terms")


def check_layernorm(method_cfg: DictConfig, probe: Probe | None) -> None:
    if probe is not None:
        _must_select(norm_names, method_cfg, probe, "no normalisation layers")


def check_last_layers(method_cfg: DictConfig, probe: Probe | None) -> None:
    int_at_least(method_cfg, "num_layers", 1, "how many top transformer blocks train")
    if probe is not None:
        list_name, blocks = top_block_list(probe.model)
        if int(method_cfg.num_layers) > len(blocks):
            raise ConfigError("method.num_layers", method_cfg.num_layers, f"at most {len(blocks)} (the blocks in {list_name})")


def check_selective(method_cfg: DictConfig, probe: Probe | None) -> None:
    if not _patterns(method_cfg, "include"):
        raise ConfigError("method.include", method_cfg.get("include"), "one or more regexes over parameter names, e.g. ['attention']")
    _patterns(method_cfg, "exclude")
    if probe is not None and not pattern_names(probe.model, method_cfg):
        sample = ", ".join(n for n, _ in list(probe.model.named_parameters())[:5])
        raise ConfigError("method.include", OmegaConf.to_container(method_cfg.include),
                          f"regexes that match at least one parameter name of {probe.cfg.model.name}, whose names look like: {sample}, ...")


def _load(model: nn.Module, folder: Any, method_cfg: DictConfig, task: Any) -> nn.Module:
    return load_trained(model, folder)


def _sizes(model: nn.Module, names: set[str]) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n in names)


def count_bitfit(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    return _sizes(base, bias_names(base, method_cfg)) + head_params(base)


def count_last_layers(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    _, blocks = top_block_list(base)
    return int(method_cfg.num_layers) * sum(p.numel() for p in blocks[-1].parameters()) + head_params(base)


def count_layernorm(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    return _sizes(base, norm_names(base, method_cfg)) + head_params(base)


def count_selective(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    return _sizes(base, pattern_names(base, method_cfg)) + head_params(base)


@register("bitfit", save=save_trained, load=_load, check=check_bitfit, formula=count_bitfit,
          examples=(("+model.size.attention_bias=true",), ()),  # the first gives tiny-llama biases (Qwen2-style); T5 has none
          refuses=("no bias terms",), summary="the bias terms only (+ a new task head)",
          golden={"tiny-bert": (0.6874780654907227, 0.7845796942710876, 0.8043078184127808),
                  "tiny-llama": (1.0965054035186768, 0.9965540766716003, 0.8721444010734558),
                  "tiny-mpnet": (0.7216660976409912, 0.8486628532409668, 0.8346229195594788),
                  "tiny-gemma3": (0.6151553392410278, 0.7610498070716858, 0.44928550720214844)})
def apply_bitfit(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    return _train_only(model, bias_names(model, method_cfg), "bitfit")


@register("last_layers", save=save_trained, load=_load, check=check_last_layers, formula=count_last_layers,
          examples=(("method.num_layers=1",), ("method.num_layers=2",)),
          summary="the top `num_layers` transformer blocks (+ a new task head)",
          knobs="`num_layers` (of the stack nearest the output: the decoder, for encoder-decoders)",
          golden={"tiny-bert": (0.6874780654907227, 0.7882156372070312, 0.8114323616027832),
                  "tiny-llama": (0.7202910780906677, 0.4560324549674988, 0.5732502937316895),
                  "tiny-mpnet": (0.7216660976409912, 0.8600941896438599, 0.8456693291664124),
                  "tiny-gemma3": (0.7760723829269409, 1.1144814491271973, 0.7442786693572998)})
def apply_last_layers(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    return _train_only(model, last_layer_names(model, method_cfg), "last_layers")


@register("layernorm", save=save_trained, load=_load, check=check_layernorm, formula=count_layernorm,
          summary="the normalisation layers' weights and biases (+ a new task head)",
          golden={"tiny-bert": (0.6874780654907227, 0.7856813669204712, 0.8051794767379761),
                  "tiny-llama": (0.7202910780906677, 0.4617100954055786, 0.5781352519989014),
                  "tiny-mpnet": (0.7216660976409912, 0.8524816036224365, 0.8376017212867737),
                  "tiny-gemma3": (0.7760723829269409, 1.1580016613006592, 0.8046743869781494)})
def apply_layernorm(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    return _train_only(model, norm_names(model, method_cfg), "layernorm")


@register("selective", save=save_trained, load=_load, check=check_selective, formula=count_selective,
          examples=((), ("method.include=[query,q_proj,attn.q.]", "method.exclude=[bias]")),  # BERT, Llama/Gemma, MPNet names
          summary="parameters whose names match `include` and not `exclude` regexes (+ a new task head)",
          knobs="`include`, `exclude`",
          golden={"tiny-bert": (0.6874780654907227, 0.7881974577903748, 0.811378002166748),
                  "tiny-llama": (0.7202910780906677, 0.45483148097991943, 0.5712568759918213),
                  "tiny-mpnet": (0.7216660976409912, 0.8601226806640625, 0.8457021713256836),
                  "tiny-gemma3": (0.7760723829269409, 1.0697330236434937, 0.6829785704612732)})
def apply_selective(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    return _train_only(model, pattern_names(model, method_cfg), "selective")
