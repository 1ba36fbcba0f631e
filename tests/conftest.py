"""Shared fixtures: compose configs the way the command line does, offline."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing hub model fails at once, not after ~46 s
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SHARED_DATA = (ROOT.parent / "shared" / "datasets").resolve()


def make_cfg(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """The config the command line would compose (bench.config.compose: the one way)."""
    from bench.config.compose import compose

    return compose(overrides, return_hydra_config=return_hydra_config)


@pytest.fixture
def cfg_factory(tmp_path: Path):
    """compose(overrides) with results in a temp folder, a short, fast training budget and no tracker
    (tests of the tracker ask for it)."""

    def factory(*overrides: str) -> DictConfig:
        base = [f"results_dir={tmp_path / 'results'}", "tracking=none", "train.max_steps=3", "train.batch_size=4",
                "eval.max_examples=8", "eval.batch_size=4", "eval.max_new_tokens=4",
                "inference.examples=2", "inference.batch_size=2", "inference.max_new_tokens=2", "forgetting.max_chunks=2"]
        return make_cfg(base + list(overrides))

    return factory


def write_dialogsum_like(root: Path, n: int = 6) -> Path:
    """A tiny DialogSum-shaped dataset (dev with one summary, test with three) in root/dialogsum."""
    import json

    folder = root / "dialogsum"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "dialogsum.dev.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"fname": f"dev_{i}", "dialogue": f"#Person1#: Shall we meet at {i} pm?\n#Person2#: Yes, see you then.",
                                "summary": f"They agree to meet at {i} pm.", "topic": "meeting"}) + "\n")
    with open(folder / "dialogsum.test.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"fname": f"test_{i}", "dialogue": f"#Person1#: Is the shop open at {i}?\n#Person2#: No, it closes early.",
                                "summary1": "The shop is closed.", "summary2": f"The shop closes before {i}.",
                                "summary3": "Person2 says the shop closes early.", "topic1": "shop"}) + "\n")
    return root


def build(cfg: DictConfig, n_train: int = 16):
    """(base model, task, family) for a composed config, prepared as a run prepares them
    (bench.run.prepare) on its first n_train training rows and 8 scored ones, read afresh (no cache);
    the method is left for the test to apply."""
    from omegaconf import OmegaConf

    from bench.config.plan import validate
    from bench.run.prepare import prepare
    from bench.run.pipeline import seed_everything

    # Seeded as a run seeds (bench.run.pipeline), so a test's heads and adapters start from the same draw
    # whatever ran before it: unseeded, 1 draw in ~100 gave tiny-gemma3 an adapter whose 8 ReLU
    # units were all dead at the start, so its tensors could not move (a red CI, not a bug).
    seed_everything(int(cfg.seed))
    few = OmegaConf.merge(cfg, {"task": {"max_train_examples": n_train}, "eval": {"max_examples": 8}, "cache_data": False})
    plan = validate(few)
    ready = prepare(few, plan, apply_method=False)
    return ready.model, ready.task, plan.family


def tiered(values, keep) -> list:
    """Parameters for a parametrized test: those in `keep` run in the default tier, the others in
    the `system` tier (CI runs both), so the default run stays near two minutes."""
    return [v if v in keep else pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=pytest.mark.system) for v in values]


def reference_records():
    """(path, record) for every committed record under results/reference that holds a run config
    (reports' JSON and other files are passed over)."""
    import json

    for path in sorted((ROOT / "results" / "reference").rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("run"), dict) and "config" in data["run"]:
            yield path, data
