"""IA3 (through peft; Liu et al., 2022): learned vectors that rescale the keys, values and the
feed-forward activations of a frozen model. A vector per targeted linear: it scales the output
(out features) of attention modules and the input (in features) of feed-forward modules.

Trainable parameters = sum over targeted linears of (in if feed-forward else out)
                       + the task head (classifier: hidden * num_labels + num_labels).
Stored per task: the vectors (and the head), via peft's save_pretrained. Merges into W.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.methods.registry import Probe, head_modules, head_params, load_peft, matches, own_linears, register, save_peft
from bench.methods.lora import check_targets, default_targets


def _names(method_cfg: DictConfig, key: str, model_type: str, mapping: str) -> list[str]:
    value = method_cfg.get(key)
    if value is None:
        return default_targets(model_type, mapping)
    return [value] if isinstance(value, str) else [str(v) for v in OmegaConf.to_container(value)]


def check(method_cfg: DictConfig, probe: Probe | None) -> None:
    if probe is not None:
        check_targets(method_cfg, probe)


def count(base: nn.Module, method_cfg: DictConfig, task: object) -> int:
    model_type = base.config.model_type
    targets = _names(method_cfg, "target_modules", model_type, "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING")
    feedforward = _names(method_cfg, "feedforward_modules", model_type, "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING")
    return sum((m.in_features if matches(n, feedforward) else m.out_features)
               for n, m in own_linears(base) if matches(n, targets)) + head_params(base)


@register("ia3", save=save_peft, load=load_peft, can_merge=True, check=check, formula=count,
          summary="a scaling vector on keys, values and feed-forward inputs (+ a new task head)",
          knobs="`target_modules`, `feedforward_modules`",
          golden={"tiny-bert": (0.6513245105743408, 0.793768048286438, 0.7901844382286072),
                  "tiny-llama": (0.6210731267929077, 0.46351033449172974, 0.5248939990997314),
                  "tiny-mpnet": (0.6881929636001587, 0.9016909599304199, 0.7859640121459961),
                  "tiny-gemma3": (0.7152441740036011, 1.1051979064941406, 0.9321885704994202)})
def apply_ia3(model: nn.Module, method_cfg: DictConfig, task: object) -> nn.Module:
    from peft import IA3Config, get_peft_model

    model_type = model.config.model_type
    targets = _names(method_cfg, "target_modules", model_type, "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING")
    feedforward = _names(method_cfg, "feedforward_modules", model_type, "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING")
    config = IA3Config(target_modules=targets, feedforward_modules=[f for f in feedforward if f in targets],
                       modules_to_save=head_modules(task))
    return get_peft_model(model, config)
