"""The points sweeper: a list of points (each with its own comma lists) crossed with shared params."""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

from hydra_plugins.peft_bench_sweeper import PointsSweeper


def test_hydra_finds_the_sweeper():
    assert "PointsSweeper" in [p.__name__ for p in Plugins.instance().discover(Sweeper)]


def test_points_expand_cross_params_and_the_command_line_wins():
    sweeper = PointsSweeper(points=["method=full", "method=lora method.r=1,4"], params={"seed": "0,1"})
    jobs = sweeper.jobs(["train.max_steps=5"], OverridesParser.create())
    assert jobs == [
        ["seed=0", "method=full", "train.max_steps=5"], ["seed=1", "method=full", "train.max_steps=5"],
        ["seed=0", "method=lora", "method.r=1", "train.max_steps=5"], ["seed=0", "method=lora", "method.r=4", "train.max_steps=5"],
        ["seed=1", "method=lora", "method.r=1", "train.max_steps=5"], ["seed=1", "method=lora", "method.r=4", "train.max_steps=5"],
    ]
    only_seed_2 = sweeper.jobs(["seed=2"], OverridesParser.create())  # the command line replaces the params' seeds
    assert only_seed_2 == [["seed=2", "method=full"], ["seed=2", "method=lora", "method.r=1"], ["seed=2", "method=lora", "method.r=4"]]


def test_a_job_two_points_share_runs_once():
    sweeper = PointsSweeper(points=["method=lora method.r=1,2", "method=lora method.r=2,4"])
    assert sweeper.jobs([], OverridesParser.create()) == [["method=lora", "method.r=1"], ["method=lora", "method.r=2"],
                                                          ["method=lora", "method.r=4"]]
