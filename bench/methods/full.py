"""`none` evaluates the base model as it is; `full` trains every parameter.

Trainable parameters: none = 0; full = every parameter of the model (the task head included).
Stored per task: none = nothing; full = the whole model's weights (one safetensors file).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from safetensors.torch import save_model
from torch import nn

from bench.methods import register, set_trainable


def save_nothing(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def save_all_weights(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))  # tied weights stored once


@register("none", save=save_nothing, trains=False)
def apply_none(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    set_trainable(model, lambda name: False)
    return model


@register("full", save=save_all_weights)
def apply_full(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    set_trainable(model, lambda name: True)
    return model
