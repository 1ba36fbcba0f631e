"""Adding a method is one Python file plus one YAML file (issue 17): in a copy of the suite, a
throwaway method `scale_only` is added as bench/methods/scale_only.py and conf/method/scale_only.yaml,
nothing else is touched, and it is picked up everywhere: the command line runs it, the method tests
check its formula, freezing and save/load, and the report lists its record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

METHOD_FILE = '''
"""scale_only (throwaway, for tests/test_new_method.py): the normalisation layers' scales (weights),
not their biases. Trainable = sum over norm layers of their weight size (+ the task head).
Stored per task: exactly the trainable tensors, in one safetensors file."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from torch import nn

from bench.methods import head_params, load_trained, register, save_trained, set_trainable


def scale_names(model: nn.Module) -> set[str]:
    return {f"{name}.weight" for name, module in model.named_modules()
            if "norm" in type(module).__name__.lower() and getattr(module, "weight", None) is not None and not name.startswith("head")}


def count(base: nn.Module, method_cfg: DictConfig, task: Any) -> int:
    names = scale_names(base)
    return sum(p.numel() for n, p in base.named_parameters() if n in names) + head_params(base)


def load(model: nn.Module, folder: Any, method_cfg: DictConfig, task: Any) -> nn.Module:
    return load_trained(model, folder)


@register("scale_only", save=save_trained, load=load, formula=count,
          summary="the normalisation layers' scales only (+ a new task head)")
def apply_scale_only(model: nn.Module, method_cfg: DictConfig, task: Any) -> nn.Module:
    names = scale_names(model)
    set_trainable(model, lambda name: name in names or name.startswith("head."))
    return model
'''

METHOD_CONFIG = """\
# Throwaway method for tests/test_new_method.py: the normalisation layers' scales only.
name: scale_only
lr: 1.0e-3           # default peak lr (train.lr overrides)
"""


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.system
def test_a_new_method_is_one_python_file_plus_one_yaml_file(tmp_path: Path):
    copy = tmp_path / "suite"
    for name in ("bench", "conf", "tests", "hydra_plugins"):  # hydra_plugins: the sweeper the config names
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / "bench" / "methods" / "scale_only.py").write_text(textwrap.dedent(METHOD_FILE).lstrip())
    (copy / "conf" / "method" / "scale_only.yaml").write_text(METHOD_CONFIG)

    # (b) the copied method tests check it, though no test names it (started first: it runs beside (a) and (c))
    tests = subprocess.Popen([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/test_all_methods.py", "-k", "scale_only"],
                             cwd=copy, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    try:
        # (a) the command line runs it (the copy's bench package: cwd comes first on sys.path; the
        # installed one would not know the method)
        results = tmp_path / "results"
        cli = _run(["-m", "bench", "model=tiny-bert", "method=scale_only", "tracking=none", "train.max_steps=2",
                    "train.batch_size=4", "eval.max_examples=8", "inference.examples=2", "forgetting.max_chunks=2",
                    "keep_artifacts=false", f"results_dir={results}", f"hydra.run.dir={tmp_path / 'hydra'}"], copy)
        assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-3000:]
        (path,) = results.glob("*.json")
        record = json.loads(path.read_text())
        assert record["run"]["status"] == "success" and record["run"]["method"] == "scale_only", record["run"].get("error")
        assert record["params"]["what_trains"] == "the normalisation layers' scales only (+ a new task head)"
        # tiny-bert: LayerNorm weights, embeddings + 2 per block (32 each), + the head 32 x 2 + 2
        assert record["params"]["trainable"] == 5 * 32 + 66

        # (c) the report lists its record
        report = _run(["-m", "bench.report", f"results_dir={results}"], copy)
        assert report.returncode == 0, report.stderr[-3000:]
        assert "| scale_only |" in report.stdout, report.stdout[-3000:]
        out, _ = tests.communicate(timeout=300)
    finally:
        if tests.poll() is None:  # a failure above: stop the tests it started
            tests.kill()
            tests.wait()
    assert tests.returncode == 0, out[-4000:]
    passed = [line for line in out.splitlines() if "scale_only" in line and " PASSED" in line]
    for check in ("test_trainable_params_equal_the_formula", "test_formula_on_encoder_decoder_generation",
                  "test_frozen_stay_bit_identical_and_trained_move", "test_save_load_reproduces_and_tasks_swap_on_one_base"):
        assert any(check in line for line in passed), (check, out[-3000:])
