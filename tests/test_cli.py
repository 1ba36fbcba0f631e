"""One command: `peft-bench <verb>` lists its verbs, each verb lists its keys, a config error is one
line and exit 2 in every verb, and the generated docs pages are what the code generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import VERBS, invoke, own_keys, usage, verb_help

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_lists_every_verb_and_each_verbs_help_lists_its_keys():
    text = usage()
    for name in VERBS:
        assert f"  {name} " in text
    for verb in VERBS.values():
        shown = verb_help(verb)
        assert f"peft-bench {verb.name}:" in shown
        for key in own_keys(verb):  # every key of the verb's primary config, with its comment
            line = next(line for line in shown.splitlines() if line.startswith(f"{key}:"))
            assert "#" in line, line
    assert "train:" in verb_help(VERBS["run"]) and "max_steps:" in verb_help(VERBS["run"])  # run lists the run config's keys


def test_the_command_line_help_and_an_unknown_verb():
    assert _cli("--help").returncode == 0 and "verbs:" in _cli("--help").stdout
    shown = _cli("report", "--help")
    assert shown.returncode == 0 and "output_dir:" in shown.stdout
    bad = _cli("reprot")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "verb=reprot" in bad.stderr


@pytest.mark.parametrize("argv,field", [(["report", "results_dir=/nonexistent"], "results_dir"), (["report", "wandb=yes"], "wandb"),
                                        (["ls", "what=everything"], "what"), (["assets", "fetch", "nope"], "names"),
                                        (["perf", "steps=0"], "steps"), (["cost", "quick=1"], "quick"), (["badinput", "repeats=0"], "repeats"),
                                        (["peft-runs", "seq_len=0"], "seq_len"), (["estimate", "model=nope"], "model"),
                                        (["validate", "train.batch_size=0"], "train.batch_size"), (["advise", "memory_gib=-1"], "memory_gib"),
                                        (["docs", "docs_dir=/nonexistent"], "docs_dir"), (["report", "--out", "x"], "argument")])
def test_every_verb_refuses_a_bad_value_with_one_line_naming_it(argv, field, capsys):
    assert invoke(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"config error: {field}="), err


def test_ls_lists_each_group_and_presets_with_their_time(capsys):
    assert invoke(["ls"]) == 0
    out = capsys.readouterr().out
    for header in ("models (model=NAME", "tasks (task=NAME", "methods (method=NAME", "presets (experiment=NAME"):
        assert header in out
    quick = next(line for line in out.splitlines() if line.strip().startswith("quickstart "))
    assert "[About 2-3 minutes]" in quick and "main job" in quick
    assert invoke(["ls", "methods"]) == 0 and "lora" in capsys.readouterr().out


def test_validate_checks_everything_and_loads_no_weights(tmp_path, capsys):
    assert invoke(["validate", "model=tiny-bert", "method=lora", "method.r=4", f"results_dir={tmp_path / 'r'}"]) == 0
    assert "config ok: model=tiny-bert" in capsys.readouterr().out and not (tmp_path / "r").exists()
    assert invoke(["validate", "model=tiny-bert", "method=lora", "method.r=100000", f"results_dir={tmp_path / 'r'}"]) == 2  # the method's refusal
    assert "method.r=100000" in capsys.readouterr().err


def test_the_generated_catalog_page_is_current():
    """docs/catalog.md is generated from conf/ (`peft-bench docs`): a new model, task or preset YAML needs the page regenerated."""
    from bench.report.docs import render_catalog

    assert (ROOT / "docs" / "catalog.md").read_text() == render_catalog(), "run `peft-bench docs`"
