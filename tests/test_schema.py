"""The run config's schema (bench.config.schema) is the one table of its knobs: conf/config.yaml sets
exactly its keys, each with a comment; every knob refuses a value of the wrong type or range, naming
the field, before torch loads; booleans are read one way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.config.checks import check
from bench.config.schema import SCHEMA, Knob
from bench.errors import ConfigError
from conftest import make_cfg

ROOT = Path(__file__).resolve().parent.parent


def test_config_yaml_sets_exactly_the_schemas_keys_each_with_a_comment():
    default = OmegaConf.load(ROOT / "conf" / "config.yaml")
    for section, knobs in SCHEMA.items():
        node = default if not section else default[section]
        keys = set(node.keys()) - ({"defaults", "hydra"} | set(SCHEMA) if not section else set())
        assert keys == set(knobs), (section, keys ^ set(knobs))
    text = (ROOT / "conf" / "config.yaml").read_text().split("\nhydra:")[0]
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "-")) and not line.rstrip().endswith(":"):
            assert "#" in line or line.strip().startswith(("adam_beta2",)), f"a knob without its comment: {line!r}"


# One bad value per knob kind, and the words of what is valid.
BAD = [("seed=-1", "seed", "an integer >= 0"), ("threads=abc", "threads", "an integer >= 0"), ("device=tpu", "device", "one of auto, cpu, cuda"),
       ("keep_artifacts=yes", "keep_artifacts", "true or false"), ("keep_artifacts=1", "keep_artifacts", "true or false"),
       ("train.adam_beta1=1.0", "train.adam_beta1", "a number in [0.0, 1.0)"), ("train.schedule=step", "train.schedule", "one of linear"),
       ("speed.fused_adamw=maybe", "speed.fused_adamw", "one of auto, true, false"), ("eval.max_examples=0", "eval.max_examples", "null or an integer >= 1"),
       ("tune.trials=1", "tune.trials", "an integer >= 2"), ("tune.lr_span=1", "tune.lr_span", "a number in (1.0, 1000000.0]"),
       ("tune.lrs=[0.1]", "tune.lrs", "at least 2 learning rates"), ("tune.prune=no", "tune.prune", "true or false"),
       ("tune.val_examples=0", "tune.val_examples", "an integer >= 1"), ("forgetting.max_tokens=4", "forgetting.max_tokens", "an integer >= 8"),
       ("inference.repeats=0", "inference.repeats", "an integer >= 1"), ("estimate.seq_len=0", "estimate.seq_len", "null or an integer >= 1")]


@pytest.mark.parametrize("override,field,valid", BAD)
def test_a_bad_value_is_refused_naming_its_field_and_what_is_valid(tmp_path, override, field, valid):
    with pytest.raises(ConfigError) as info:
        check(make_cfg(["model=tiny-bert", f"results_dir={tmp_path}", override]))
    assert info.value.field == field and valid in str(info.value)


def test_training_knobs_do_not_bind_a_method_that_trains_nothing(tmp_path):
    check(make_cfg(["model=tiny-bert", "method=none", f"results_dir={tmp_path}", "train.max_steps=0"]))  # ignored: nothing trains
    with pytest.raises(ConfigError, match="train.max_steps"):
        check(make_cfg(["model=tiny-bert", "method=full", f"results_dir={tmp_path}", "train.max_steps=0"]))


def test_knobs_take_values_exactly_of_their_type():
    assert Knob("bool").accepts(True) and not Knob("bool").accepts("true") and not Knob("bool").accepts(1)
    assert Knob("int", low=1).accepts(3) and not Knob("int", low=1).accepts(3.0) and not Knob("int", low=1).accepts(True)
    number = Knob("number", low=0.0, high=1.0, high_open=True)
    assert number.accepts(0) and number.accepts(0.5) and not number.accepts(1.0) and not number.accepts(float("nan"))
    assert Knob("choice", choices=("auto", True, False)).accepts(False) and not Knob("choice", choices=("auto", True, False)).accepts(0)


@pytest.mark.parametrize("args,field", [(["-m", "tune.trials=1"], "tune.trials"), (["keep_artifacts=yes"], "keep_artifacts")])
def test_the_command_line_refuses_before_torch_loads(tmp_path, args, field):
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'))\n"
            "from bench.cli import main\nsys.argv = ['peft-bench', *sys.argv[1:]]\nmain()")
    proc = subprocess.run([sys.executable, "-c", code, *args, f"results_dir={tmp_path / 'r'}", "model=tiny-bert"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"config error: {field}=") and "torch not loaded" in proc.stdout
    assert not (tmp_path / "r").exists()
