"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021), implemented here because
AdapterHub's `adapters` pins transformers 4.x (docs/architecture.md, facts).

An adapter is a small residual MLP, h + up(act(down(h))), with down: d -> m and up: m -> d, placed
on the output of a frozen sublayer before the model's own residual connection and norm. `up` starts
at zero, so an untrained adapter is the identity and training starts from the base model.
- houlsby: after the attention output projection and after the feed-forward output, in every block
  (T5 decoder blocks have two attentions, so three adapters there);
- pfeiffer: after the feed-forward output only, one adapter per block.

Trainable parameters = number of adapters x (2 * d * m + m + d)
                       + the task head (classifier: hidden * num_labels + num_labels).
Stored per task: the adapters' tensors (and the head), one safetensors file.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from bench.errors import ConfigError
from bench.methods.registry import Probe, head_params, int_at_least, load_trained, one_of, register, save_trained, set_trainable

# Where each architecture's sublayer outputs are: regexes over module names (re.search).
PLACES: dict[str, dict[str, str]] = {
    "bert": {"attention": r"attention\.output\.dense$", "ffn": r"layer\.\d+\.output\.dense$"},
    "roberta": {"attention": r"attention\.output\.dense$", "ffn": r"layer\.\d+\.output\.dense$"},
    "llama": {"attention": r"self_attn\.o_proj$", "ffn": r"mlp\.down_proj$"},
    "mistral": {"attention": r"self_attn\.o_proj$", "ffn": r"mlp\.down_proj$"},
    "qwen2": {"attention": r"self_attn\.o_proj$", "ffn": r"mlp\.down_proj$"},
    "gemma3_text": {"attention": r"self_attn\.o_proj$", "ffn": r"mlp\.down_proj$"},
    "mpnet": {"attention": r"attention\.attn\.o$", "ffn": r"layer\.\d+\.output\.dense$"},
    "t5": {"attention": r"(SelfAttention|EncDecAttention)\.o$", "ffn": r"DenseReluDense\.wo$"},
}
PLACEMENTS = ("houlsby", "pfeiffer")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class Bottleneck(nn.Module):
    """up(act(down(h))); the caller adds it to h."""

    def __init__(self, dim: int, size: int, activation: str):
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, dim)
        nn.init.zeros_(self.up.weight)  # identity at the start
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(hidden)))


def _residual_adapter(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook on the adapted sublayer: its output plus the adapter's correction."""
    return output + module.adapter(output)


def places(method_cfg: DictConfig, model_type: str) -> list[str]:
    """The regexes of the sublayers that get an adapter, from the config or the architecture."""
    defaults = PLACES.get(model_type, {})
    attention = method_cfg.get("attention_modules") or defaults.get("attention")
    ffn = method_cfg.get("ffn_modules") or defaults.get("ffn")
    if ffn is None or (method_cfg.placement == "houlsby" and attention is None):
        raise ConfigError("method.ffn_modules", None, f"a regex over module names: no default placement for model type {model_type!r} (known: {', '.join(PLACES)})")
    return [str(ffn)] if method_cfg.placement == "pfeiffer" else [str(attention), str(ffn)]


def adapted_modules(model: nn.Module, method_cfg: DictConfig) -> list[tuple[str, nn.Linear]]:
    wanted = places(method_cfg, model.config.model_type)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(re.search(p, n) for p in wanted)]


def check(method_cfg: DictConfig, probe: Probe | None) -> None:
    int_at_least(method_cfg, "bottleneck_size", 1, "the adapter's hidden width m")
    one_of(method_cfg, "placement", PLACEMENTS)
    one_of(method_cfg, "activation", tuple(ACTIVATIONS))
    if probe is not None and not adapted_modules(probe.model, method_cfg):
        linears = sorted({n for n, m in probe.model.named_modules() if isinstance(m, nn.Linear)})[:8]
        raise ConfigError("method.ffn_modules", method_cfg.get("ffn_modules"), f"a regex matching this model's linear layers, e.g. {', '.join(linears)}")


def add_adapters(model: nn.Module, method_cfg: DictConfig) -> nn.Module:
    for _, linear in adapted_modules(model, method_cfg):
        if hasattr(linear, "adapter"):
            continue
        linear.add_module("adapter", Bottleneck(linear.out_features, int(method_cfg.bottleneck_size), str(method_cfg.activation)))
        linear.adapter.to(linear.weight.device)
        linear.register_forward_hook(_residual_adapter)
    return model


def load(model: nn.Module, folder: Any, method_cfg: DictConfig, task: Any) -> nn.Module:
    """Add the adapters to a fresh base (once), then load the task's tensors; swapping is the load."""
    return load_trained(add_adapters(model, method_cfg), folder)


def count(base: nn.Module, method_cfg: DictConfig, task: object) -> int:
    m = int(method_cfg.bottleneck_size)
    return sum(2 * linear.out_features * m + m + linear.out_features for _, linear in adapted_modules(base, method_cfg)) + head_params(base)


@register("adapter", save=save_trained, load=load, check=check, formula=count,
          examples=(("method.bottleneck_size=8",), ("method.bottleneck_size=8", "method.placement=pfeiffer")),
          summary="small bottleneck MLPs after attention and/or feed-forward sublayers (+ a new task head)",
          knobs="`placement` (`houlsby`: both; `pfeiffer`: feed-forward only), `bottleneck_size`, `activation` (implemented in `bench/methods/adapter.py`)",
          golden={"tiny-bert": (0.7112741470336914, 0.7885502576828003, 0.7875927686691284),
                  "tiny-llama": (0.6755399107933044, 0.8207855224609375, 0.6683356761932373),
                  "tiny-mpnet": (0.7373590469360352, 0.9006275534629822, 0.8253529667854309),
                  "tiny-gemma3": (0.7199656963348389, 0.10387919098138809, 0.8691409230232239)})
def apply_adapter(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    add_adapters(model, method_cfg)
    set_trainable(model, lambda name: ".adapter." in name or name.startswith("head."))
    return model
