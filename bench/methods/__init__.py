"""The method registry. A method differs from another only here: `apply(model, method_cfg, task)`
freezes, unfreezes or wraps the model; the loop, evaluation and measurement never branch on the
method's name. What they need to know, the method declares (does it train? can it merge? how does
it save what must be kept per task?).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig
from torch import nn

from bench.errors import ConfigError


def _no_check(method_cfg: DictConfig, module_names: list[str] | None) -> None:
    return None


@dataclass(frozen=True)
class Method:
    name: str
    apply: Callable[[nn.Module, DictConfig, object], nn.Module]
    save: Callable[[nn.Module, Path], None]  # writes exactly what a task needs into a folder
    trains: bool = True  # False: evaluate the model as it is
    can_merge: bool = False  # True: adapters fold into the base weights for inference
    check: Callable[[DictConfig, list[str] | None], None] = _no_check  # config checks, before loading
    needs_module_names: bool = False  # check() wants the model's module names (meta device)


METHODS: dict[str, Method] = {}


def register(name: str, *, save: Callable[[nn.Module, Path], None], **declared: object):
    """Decorator: register `apply` under its config name with what the method declares."""

    def wrap(apply: Callable[[nn.Module, DictConfig, object], nn.Module]):
        METHODS[name] = Method(name=name, apply=apply, save=save, **declared)  # type: ignore[arg-type]
        return apply

    return wrap


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError("method.name", name, f"one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def set_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> None:
    """requires_grad = predicate(parameter name), for every parameter."""
    for pname, param in model.named_parameters():
        param.requires_grad_(predicate(pname))


from bench.methods import full, lora  # noqa: E402,F401  (each registers itself)
