"""`none` evaluates the base model as it is; `full` trains every parameter.

Trainable parameters: none = 0; full = every parameter of the model (the task head included).
Stored per task: none = nothing; full = the whole model's weights (one safetensors file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from safetensors.torch import load_model, save_model
from torch import nn

from bench.methods.registry import register, set_trainable


def save_nothing(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def load_nothing(model: nn.Module, folder: Path, method_cfg: DictConfig, task: Any) -> nn.Module:
    return model


def save_all_weights(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))  # tied weights stored once


def load_all_weights(model: nn.Module, folder: Path, method_cfg: DictConfig, task: Any) -> nn.Module:
    load_model(model, str(Path(folder) / "model.safetensors"))
    return model


def count_none(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    return 0


def count_full(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    return sum(p.numel() for p in base.parameters())  # parameters() yields a tied weight once


@register("none", save=save_nothing, load=load_nothing, formula=count_none, trains=False,
          summary="nothing: evaluates the base model (zero-shot generation, or an untrained head)")
def apply_none(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    set_trainable(model, lambda name: False)
    return model


@register("full", save=save_all_weights, load=load_all_weights, formula=count_full, summary="every parameter of the model",
          golden={"tiny-bert": (0.6874780654907227, 0.7884426712989807, 0.8098687529563904),
                  "tiny-llama": (0.7202910780906677, 0.45779892802238464, 0.57157301902771),
                  "tiny-mpnet": (0.7216660976409912, 0.8584732413291931, 0.8423924446105957),
                  "tiny-gemma3": (0.7760723829269409, 1.0983903408050537, 0.703436017036438)})
def apply_full(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    set_trainable(model, lambda name: True)
    return model
