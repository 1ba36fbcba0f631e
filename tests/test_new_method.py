"""Adding a method is one Python file plus one YAML file (issue 17), proved in copies of the
repository where those two files are added and nothing else is touched:
- a throwaway method `scale_only` is picked up everywhere: the command line runs it, the method
  tests check its formula, freezing and save/load, the report lists its record, the golden-loss test
  says exactly what to add to its file, and the docs generator gives it its row;
- a renamed copy of ia3 (bench/methods/ia3.py and conf/method/ia3.yaml, its golden losses kept:
  it is the same method) passes the whole default test suite, its own parametrised cases included.
Both are `system` tests: the second runs the default suite (minutes) inside."""

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

from bench.methods.registry import head_params, load_trained, register, save_trained, set_trainable


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
TWIN = "ia3_twin"  # the renamed copy of ia3
# What a copy of the repository holds when git cannot list it: everything the tests read.
REPOSITORY = ("bench", "conf", "tests", "hydra_plugins", "docs", "results/reference", ".ci",
              "pyproject.toml", "README.md", "constraints.txt", "mkdocs.yml")
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info", "artifacts", "wandb", ".claims")


def copy_repository(dest: Path) -> Path:
    """The repository as a clone of it holds it, into dest: git's tracked files and new unignored
    ones, as they are in the working tree (uncommitted edits included; build output, caches and
    a user's results left out), or, without git, the folders and files in REPOSITORY. The datasets
    folder beside the checkout (../shared) is linked beside the copy, as the tests look for it there."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True) if (ROOT / ".git").exists() and shutil.which("git") else None
    if listed is not None and listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.split("\0"):
            source = ROOT / name
            if name and (source.is_file() or source.is_symlink()):  # a tracked file deleted in the working tree is gone
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / name, follow_symlinks=False)
    else:
        for name in REPOSITORY:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, dest / name, ignore=IGNORED, symlinks=True)
            elif source.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / name)
    if (ROOT.parent / "shared").is_dir() and not (dest.parent / "shared").exists():
        (dest.parent / "shared").symlink_to(ROOT.parent / "shared", target_is_directory=True)
    return dest


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.system
def test_a_new_method_is_one_python_file_plus_one_yaml_file(tmp_path: Path):
    copy = copy_repository(tmp_path / "suite")
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

    # (d) it declares no golden losses: the golden test fails, saying what to add to which file
    golden = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_golden.py", "-k", "scale_only"], copy)
    assert golden.returncode == 1, golden.stdout[-3000:]
    for model in ("tiny-bert", "tiny-llama"):
        assert f'no golden losses for scale_only on {model}: add "{model}": (' in golden.stdout, golden.stdout[-3000:]
    assert 'to golden={...} in the register("scale_only", ...) call in bench/methods/scale_only.py' in golden.stdout

    # (e) the docs: the committed page lacks its row (a warning, not a failure); the generator adds it
    stale = _run(["-m", "bench", "docs", "check=true"], copy)
    assert stale.returncode == 1 and "docs/methods.md is not what `peft-bench docs` generates" in stale.stderr, stale.stderr[-2000:]
    wrote = _run(["-m", "bench", "docs"], copy)
    assert wrote.returncode == 0, wrote.stderr[-2000:]
    page = (copy / "docs" / "methods.md").read_text()
    assert "| `scale_only` | the normalisation layers' scales only (+ a new task head) | | |" in page
    assert page.replace("| `scale_only` | the normalisation layers' scales only (+ a new task head) | | |\n", "") == (ROOT / "docs" / "methods.md").read_text()
    assert _run(["-m", "bench", "docs", "check=true"], copy).returncode == 0


@pytest.mark.system
def test_a_renamed_copy_of_a_method_passes_the_whole_default_suite(tmp_path: Path):
    """bench/methods/ia3.py and conf/method/ia3.yaml copied under a new name (only the registered
    name and the config's name changed; its golden losses stay, it is the same method), nothing
    else touched: the whole default suite passes in that copy of the repository, and the tests
    parametrised over the methods ran for the new one (the copy's code ran, not the installed one)."""
    copy = copy_repository(tmp_path / "suite")
    method = (ROOT / "bench" / "methods" / "ia3.py").read_text()
    assert method.count('@register("ia3",') == 1
    (copy / "bench" / "methods" / f"{TWIN}.py").write_text(method.replace('@register("ia3",', f'@register("{TWIN}",'))
    config = (ROOT / "conf" / "method" / "ia3.yaml").read_text()
    assert config.count("\nname: ia3\n") == 1
    (copy / "conf" / "method" / f"{TWIN}.yaml").write_text(config.replace("\nname: ia3\n", f"\nname: {TWIN}\n"))

    # The copy's packages first on sys.path (the editable install points at the checkout), no cache
    # shared with the checkout; the default tier, as pyproject.toml's addopts give it, with every test named.
    env = {k: v for k, v in ENV.items() if k not in ("PEFT_BENCH_PIN_GOLDEN", "PYTEST_ADDOPTS")}
    env.update(WANDB_MODE="offline", PYTHONPATH=os.pathsep.join([str(copy), *filter(None, [os.environ.get("PYTHONPATH")])]))
    log = tmp_path / "suite.log"
    with log.open("w") as out:
        suite = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"], cwd=copy, env=env,
                               stdout=out, stderr=subprocess.STDOUT, text=True, timeout=2400)
    text = log.read_text()
    assert suite.returncode == 0, text[-6000:]
    ran = [line for line in text.splitlines() if "::" in line and TWIN in line]  # its parametrised cases
    passed = [line for line in ran if " PASSED" in line]
    for check in ("test_trainable_params_equal_the_formula", "test_frozen_stay_bit_identical_and_trained_move",
                  "test_save_load_reproduces_and_tasks_swap_on_one_base", "test_first_losses_match_the_pinned_ones[tiny-bert-",
                  "test_first_losses_match_the_pinned_ones[tiny-llama-"):
        assert any(check in line for line in passed), (check, ran[:40], text[-3000:])
    assert f"docs/methods.md has no row yet for ['{TWIN}']" in text, text[-3000:]  # the page needs no hand edit
