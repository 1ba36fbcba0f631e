"""Every bad input is refused before a model loads, naming the field: the plain checks in
bench.config.checks (torch-free, so a bad value answers in about a second), then the checks that need
the model's architecture in bench.config.plan.validate. Data files are small broken copies written
into tmp_path and read through data_root, the way a user's own files are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import checks as preflight
from bench.config.plan import validate
from bench.errors import ConfigError
from bench.tasks.data import read_rows
from conftest import CONF, ROOT, make_cfg, tiered, write_dialogsum_like

GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("model", "task", "method", "experiment")}


def _refused(cfg, check=preflight.check) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check(cfg)
    return info.value


# ---------------------------------------------------------------- plain values
@pytest.mark.parametrize("override,field", [
    ("threads=abc", "threads"),
    ("threads=-4", "threads"),
    ("train.timing_warmup_steps=abc", "train.timing_warmup_steps"),
    ("train.timing_warmup_steps=-1", "train.timing_warmup_steps"),
    ("train.adam_beta1=2", "train.adam_beta1"),
    ("train.adam_beta2=1.0", "train.adam_beta2"),
    ("train.adam_beta1=-0.1", "train.adam_beta1"),
    ("train.log_every=0", "train.log_every"),
    ("method.alpha=nan", "method.alpha"),
    ("method.alpha=inf", "method.alpha"),
    ("method.dropout=-inf", "method.dropout"),
    ("task.max_train_examples=-150", "task.max_train_examples"),
    ("task.max_train_examples=0", "task.max_train_examples"),
    ("keep_artifacts=abc", "keep_artifacts"),
    ("cache_data=abc", "cache_data"),
    ("force=maybe", "force"),
    ("inference.enabled=maybe", "inference.enabled"),
    ("forgetting.enabled=maybe", "forgetting.enabled"),
    ("estimate.seq_len=0", "estimate.seq_len"),
    ("device=tpu", "device"),
])
def test_plain_bad_value_is_refused_naming_the_field(cfg_factory, override: str, field: str):
    err = _refused(cfg_factory(override))
    assert err.field == field
    assert str(err).startswith(f"{field}=") and "is not valid" in str(err)


def test_adam_betas_accept_the_half_open_unit_interval(cfg_factory):
    preflight.check(cfg_factory("train.adam_beta1=0.0", "train.adam_beta2=0.999999"))
    assert "[0.0, 1.0)" in str(_refused(cfg_factory("train.adam_beta2=1")))


def test_nan_is_refused_wherever_it_is(cfg_factory):
    err = _refused(cfg_factory("train.max_grad_norm=nan"))
    assert err.field == "train.max_grad_norm" and "finite" in str(err)


def test_nan_in_a_tuned_runs_selection_report_is_not_a_bad_knob(cfg_factory):
    preflight.check(cfg_factory("selection={metric: accuracy, scores: [0.5, nan], chosen_lr: 0.001}"))


# ---------------------------------------------------------------- unknown keys
@pytest.mark.parametrize("override,field", [
    ("+foo=bar", "foo"),
    ("+train.lr_typo=1", "train.lr_typo"),
    ("+eval.max_exampels=3", "eval.max_exampels"),
    ("+inference.enable=false", "inference.enable"),
    ("+model.revision=main", "model.revision"),
    ("+task.max_len=64", "task.max_len"),
    ("+method.rank=4", "method.rank"),
])
def test_unknown_key_is_refused_listing_the_known_ones(cfg_factory, override: str, field: str):
    err = _refused(cfg_factory(override))
    assert err.field == field and "a known key" in str(err)
    if field == "foo":
        assert "results_dir" in str(err) and "threads" in str(err)


@pytest.mark.parametrize("args,field,listed", [
    (["method.rr=8"], "method.rr", "num_virtual_tokens"),                  # no method chosen: any method's keys are listed
    (["method=lora", "method.rr=8"], "method.rr", "alpha, bias, dropout"),  # the chosen method's own keys
    (["method=full", "method.r=4"], "method.r", "method full has: lr, name"),
    (["task.text_field=[x]"], "task.text_field", "text_fields"),
    (["-m", "train.lr_typo=1,2"], "train.lr_typo", "warmup_ratio"),
    (["model.revison=main"], "model.revison", "tokenizer"),
])
def test_a_misspelt_override_without_plus_names_the_key_and_the_valid_ones(args: list[str], field: str, listed: str):
    """Without +, Hydra itself would stop at such a key ("Key 'rr' is not in struct") naming no valid one."""
    with pytest.raises(ConfigError) as info:
        preflight.check_overrides(args)
    assert info.value.field == field and "a known key" in str(info.value) and listed in str(info.value)


def test_overrides_of_known_keys_and_other_arguments_pass_the_override_check():
    preflight.check_overrides(["-m", "--config-dir", "/my/conf", "method=lora", "method.r=4,8", "method.use_dora=true",
                               "task=sst2", "task.max_length=64", "model.size.hidden_size=32", "+foo=bar", "++method.zz=1",
                               "~method.bias", "hydra.job.chdir=true", "tracking.project=p", "eval.keep_predictions=2", "seed=0,1"])
    preflight.check_overrides(["method=full,lora", "method.r=4"])  # a sweep over methods: any of theirs passes here


def test_every_method_has_the_shared_keys_and_its_own_yamls():
    for path in sorted((CONF / "method").glob("*.yaml")):
        keys = preflight.method_keys(path.stem)
        assert keys is not None and preflight.METHOD_SHARED_KEYS <= keys, path.stem
        assert keys == set(make_cfg([f"method={path.stem}"]).method.keys()) | preflight.METHOD_SHARED_KEYS, path.stem
    assert preflight.method_keys("nope") is None


@pytest.mark.parametrize("typo,field", [("text_fields", "task.text_field"), ("labels", "task.label"), ("kind", "task.knd")])
def test_a_typo_in_a_users_own_task_yaml_is_named_with_the_valid_keys(tmp_path: Path, typo: str, field: str):
    """conf/task/<name>.yaml in the user's --config-dir, one key misspelt (even `kind`, whose keys
    are then checked against every kind's): the key is named, not silently ignored."""
    (tmp_path / "task").mkdir()
    text = (CONF / "task" / "sst2.yaml").read_text().replace("name: sst2", "name: mytask")
    (tmp_path / "task" / "mytask.yaml").write_text(text.replace(f"\n{typo}:", f"\n{field.split('.')[1]}:"))
    cfg = make_cfg([f"hydra.searchpath=[file://{tmp_path}]", "task=mytask", "tracking=none"])
    err = _refused(cfg)
    assert err.field == field and "a known key" in str(err) and "text_fields" in str(err) and "max_length" in str(err)


def test_known_keys_equal_the_composed_default_config():
    """The keys the checks know (the schema's) are the composed default config's, so the two cannot drift."""
    cfg = make_cfg([])
    known = preflight.known_keys()
    assert known[""] == set(cfg.keys())
    assert {"seed", "threads", "train", "model", "task", "method", "tracking", "max_attempts"} <= known[""]
    for section in preflight.SECTIONS:
        assert known[section] == set(cfg[section].keys()), section
    assert {"adam_beta1", "timing_warmup_steps"} <= known["train"] and "keep_predictions" in known["eval"]


def test_hydras_own_settings_are_not_an_unknown_key():
    """The tuning stage composes its points with Hydra's settings in them."""
    preflight.check(make_cfg(["model=tiny-bert", "tracking=none"], return_hydra_config=True))


def test_optional_knobs_of_other_parts_are_accepted(cfg_factory):
    """Set whether or not conf/ sets them yet (open_dict: `+key=` fails once the default has the key)."""
    from omegaconf import open_dict

    cfg = cfg_factory()
    with open_dict(cfg):
        cfg.max_attempts, cfg.eval.keep_predictions = 3, 10
        cfg.task.eval_fraction, cfg.task.split_seed, cfg.task.train_rows, cfg.task.eval_rows = 0.2, 0, [0, 100], [100, 200]
    preflight.check_keys(cfg)


# every method and task in the default tier; of the models and presets, the ones CI's other tiers do not compose anyway
FAST_MODELS = ("minilm-l6", "tiny-bert", "tiny-llama", "tiny-t5", "llama3-8b-config", "mpnet-base", "gemma3-270m", "flan-t5-xl")
FAST_PRESETS = ("quickstart", "tune_quick", "cost_curve", "gpu", "prompt_tuning_ladder", "merge_fidelity")


@pytest.mark.parametrize("group,option", tiered([(g, o) for g, opts in GROUPS.items() for o in opts],
                                                keep=[(g, o) for g, opts in GROUPS.items() for o in opts
                                                      if g in ("task", "method") or o in FAST_MODELS + FAST_PRESETS]))
def test_every_shipped_config_has_only_known_keys(group: str, option: str):
    preflight.check_keys(make_cfg([f"{group}={option}"]))


def test_declared_vocabulary_matches_the_registries():
    """preflight's torch-free tables say the same as the code they stand in for."""
    from bench.methods import METHODS

    assert set(preflight.NOT_TRAINING) == {name for name, m in METHODS.items() if not m.trains}
    assert {p.stem for p in (CONF / "method").glob("*.yaml")} == set(METHODS)


# ---------------------------------------------------------------- model and device
def test_float16_on_cpu_is_refused_before_torch(cfg_factory):
    err = _refused(cfg_factory("model=tiny-bert", "model.dtype=float16", "device=cpu"))
    assert err.field == "model.dtype" and err.value == "float16" and "bfloat16" in str(err)
    preflight.check(cfg_factory("model=tiny-bert", "model.dtype=bfloat16", "device=cpu"))


def test_bfloat16_that_the_error_offers_trains_a_classifier_on_cpu(cfg_factory):
    """The new head takes the weights' dtype (it stayed float32: "mat1 and mat2 must have the same dtype")."""
    import torch

    from bench.models import sources as models

    cfg = cfg_factory("model=tiny-bert", "model.dtype=bfloat16", "device=cpu")
    tokenizer = models.load_tokenizer(cfg.model)
    model = models.load_model(cfg.model, "classifier", 2, tokenizer)
    batch = tokenizer(["a fine film", "a dull one"], return_tensors="pt", padding=True)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=torch.tensor([1, 0]))
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16 and model.head.weight.grad is not None and torch.isfinite(out.loss)


def test_float16_with_device_auto_is_refused_where_auto_means_cpu(cfg_factory):
    import torch

    if torch.cuda.is_available():
        pytest.skip("auto means CUDA here")
    assert _refused(cfg_factory("model=tiny-bert", "model.dtype=float16"), validate).field == "model.dtype"


def test_missing_tokenizer_path_is_refused(cfg_factory):
    err = _refused(cfg_factory("model=tiny-bert", "model.tokenizer=/nonexistent"))
    assert err.field == "model.tokenizer" and err.value == "/nonexistent" and "minilm-l6" in str(err)


def test_existing_tokenizer_folder_is_accepted(cfg_factory, tmp_path: Path):
    preflight.check_tokenizer(cfg_factory("model=tiny-bert", f"model.tokenizer={tmp_path}").model)


def test_hub_model_not_in_the_cache_offline_is_one_clear_error(cfg_factory, tmp_path: Path, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("google/flan-t5-small", "config.json"), str):
        pytest.skip("google/flan-t5-small is in this machine's Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _refused(cfg_factory("model=flan-t5-small", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}"))
    assert err.field == "model.path" and err.value == "google/flan-t5-small"
    assert "offline" in str(err) and "\n" not in str(err)


def test_max_length_above_the_models_positions_is_refused(cfg_factory):
    """tiny-bert has 512 positions: 512 fits, 513 is refused before the model loads."""
    assert validate(cfg_factory("model=tiny-bert", "task.max_length=512")).family == "encoder"
    err = _refused(cfg_factory("model=tiny-bert", "task.max_length=513"), validate)
    assert err.field == "task.max_length" and err.value == 513 and "512" in str(err)


def test_decoder_prompt_and_summary_must_fit_the_positions(cfg_factory, tmp_path: Path):
    root = write_dialogsum_like(tmp_path)
    base = ("model=tiny-llama", "task=dialogsum", f"data_root={root}", "task.max_target_tokens=24")  # 1024 positions
    # 999 + the 24 summary tokens + EOS = 1024 (the check once forgot EOS, and let 1000 through)
    assert validate(cfg_factory(*base, "task.max_source_tokens=999")).family == "decoder"
    err = _refused(cfg_factory(*base, "task.max_source_tokens=1000"), validate)
    assert err.field == "task.max_source_tokens" and "at most 999" in str(err)


def test_validate_returns_what_it_decided(cfg_factory, tmp_path: Path):
    """The plan names the method, kind, family, head and device, so no later stage works them out again."""
    root = write_dialogsum_like(tmp_path)
    plan = validate(cfg_factory("model=tiny-t5", "task=dialogsum", f"data_root={root}", "method=ia3", "device=cpu"))
    assert (plan.method.name, plan.kind.name, plan.family, plan.head, plan.device.type) == \
        ("ia3", "summarization", "encoder-decoder", "seq2seq_lm", "cpu")
    plan = validate(cfg_factory("model=tiny-t5", "method=none", "device=cpu"))  # the same model on a classification task
    assert (plan.method.trains, plan.kind.name, plan.family, plan.head) == (False, "classification", "encoder-decoder", "classifier")


def test_lora_rank_above_the_hidden_size_is_refused(cfg_factory):
    assert validate(cfg_factory("model=tiny-bert", "method=lora", "method.r=32")).family == "encoder"
    err = _refused(cfg_factory("model=tiny-bert", "method=lora", "method.r=100000"), validate)
    assert err.field == "method.r" and err.value == 100000 and "[1, 32]" in str(err)


# ---------------------------------------------------------------- task YAML against its data
def _sst2(root: Path, train: bytes, dev: bytes = b"sentence\tlabel\ngood\t1\nbad\t0\n") -> Path:
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_bytes(train)
    (folder / "dev.tsv").write_bytes(dev)
    return root


def _rte_jsonl(root: Path, rows: list[dict] | bytes) -> Path:
    folder = root / "superglue" / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    data = rows if isinstance(rows, bytes) else "".join(json.dumps(r) + "\n" for r in rows).encode()
    (folder / "train.jsonl").write_bytes(data)
    (folder / "val.jsonl").write_bytes(data)
    return root


GOOD_TSV = b"sentence\tlabel\na fine film\t1\na dull film\t0\n"


def _data_error(cfg, split: str = "train") -> ConfigError:
    """The error preflight raises, which must be the one a run reading the rows raises too."""
    err = _refused(cfg)
    if err.field.startswith("task.") and err.field.endswith("_split"):
        with pytest.raises(ConfigError) as run_info:
            read_rows(cfg.task, cfg.data_root, split)
        assert str(run_info.value) == str(err)
    return err


def test_good_local_files_pass(cfg_factory, tmp_path: Path):
    preflight.check(cfg_factory("task=sst2", f"data_root={_sst2(tmp_path, GOOD_TSV)}"))


@pytest.mark.parametrize("train,line,what", [
    (GOOD_TSV + b"a film cut sho", 4, "has 1"),             # truncated mid-line: no tab, no label
    (b"sentence\tlabel\nno tab here 1\ngood\t1\n", 2, "has 1"),
    (b"sentence\tlabel\ngood\t1\nextra\ttab\t1\n", 3, "has 3"),
])
def test_tsv_row_with_the_wrong_number_of_fields_names_file_and_line(cfg_factory, tmp_path: Path, train: bytes, line: int, what: str):
    err = _data_error(cfg_factory("task=sst2", f"data_root={_sst2(tmp_path, train)}"))
    assert err.field == "task.train_split" and err.value.endswith("glue/SST-2/train.tsv")
    assert f"line {line} {what}" in str(err)


def test_invalid_utf8_names_file_and_line(cfg_factory, tmp_path: Path):
    root = _sst2(tmp_path, GOOD_TSV + b"caf\xe9 au lait\t1\n")  # Latin-1 bytes
    err = _data_error(cfg_factory("task=sst2", f"data_root={root}"))
    assert err.field == "task.train_split" and err.value.endswith("train.tsv") and "line 4" in str(err) and "UTF-8" in str(err)


def test_truncated_jsonl_line_names_file_and_line(cfg_factory, tmp_path: Path):
    good = json.dumps({"premise": "p", "hypothesis": "h", "label": "entailment"}).encode()
    root = _rte_jsonl(tmp_path, good + b"\n" + good + b"\n" + good[:20] + b"\n")
    err = _data_error(cfg_factory("task=superglue-rte", f"data_root={root}"))
    assert err.field == "task.train_split" and err.value.endswith("superglue/RTE/train.jsonl") and "line 3" in str(err)


def test_header_only_train_file_is_refused(cfg_factory, tmp_path: Path):
    root = _sst2(tmp_path, b"sentence\tlabel\n")
    err = _data_error(cfg_factory("task=sst2", f"data_root={root}"))
    assert err.field == "task.train_split" and err.value.endswith("train.tsv") and "it has none" in str(err)


def test_header_only_eval_file_is_refused(cfg_factory, tmp_path: Path):
    root = _sst2(tmp_path, GOOD_TSV, dev=b"sentence\tlabel\n")
    err = _data_error(cfg_factory("task=sst2", f"data_root={root}"), split="eval")
    assert err.field == "task.eval_split" and err.value.endswith("glue/SST-2/dev.tsv")


def test_label_outside_task_labels_names_file_and_line(cfg_factory, tmp_path: Path):
    root = _sst2(tmp_path, GOOD_TSV + b"meh\t2\n")
    err = _refused(cfg_factory("task=sst2", f"data_root={root}"))
    assert err.field == "task.labels" and err.value == ["0", "1"] and "train.tsv line 4 has '2'" in str(err)


def test_labels_against_json_booleans_match_as_the_run_matches_them(cfg_factory, tmp_path: Path):
    """Validation and the run agree (data.label_key): any spelling of true/false matches a JSON
    boolean; labels that are not booleans are refused with a hint."""
    rows = [{"premise": "p", "hypothesis": "h", "label": i % 2 == 0} for i in range(4)]
    root = _rte_jsonl(tmp_path, rows)
    for labels in ("[false,true]", "['false','true']", "['False','True']"):
        preflight.check(cfg_factory("task=superglue-rte", f"data_root={root}", f"task.labels={labels}"))
    err = _refused(cfg_factory("task=superglue-rte", f"data_root={root}", "task.labels=['no','yes']"))
    assert err.field == "task.labels" and "line 1 has True" in str(err) and "labels: [false, true]" in str(err)


def test_missing_field_names_the_task_key_and_line(cfg_factory, tmp_path: Path):
    rows = [{"premise": "p", "hypothesis": "h", "label": "entailment"}, {"premise": "p", "label": "entailment"}]
    err = _refused(cfg_factory("task=superglue-rte", f"data_root={_rte_jsonl(tmp_path, rows)}"))
    assert err.field == "task.text_fields" and err.value == "hypothesis" and "line 2" in str(err)


def test_validation_split_larger_than_train_is_refused(cfg_factory, tmp_path: Path):
    err = _refused(cfg_factory("task=sst2", f"data_root={_sst2(tmp_path, GOOD_TSV)}", "validation.examples=2"))
    assert err.field == "validation.examples" and "2 rows" in str(err)


@pytest.mark.parametrize("template,needle", [
    ("Summarize: {dialogue}", "it has {dialogue}"),
    ("Summarize the dialogue.", "containing {source}"),
    ("Summarize {source", "literal brace"),
])
def test_prompt_template_placeholders_match_what_the_kind_fills_in(cfg_factory, tmp_path: Path, template: str, needle: str):
    cfg = cfg_factory("model=tiny-llama", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}")
    cfg.task.prompt_template = template
    err = _refused(cfg)
    assert err.field == "task.prompt_template" and needle in str(err)


def test_prompt_template_with_literal_braces_is_accepted(cfg_factory, tmp_path: Path):
    cfg = cfg_factory("model=tiny-llama", "task=dialogsum", f"data_root={write_dialogsum_like(tmp_path)}")
    cfg.task.prompt_template = "Reply as JSON {{\"summary\": ...}}.\n\n{source}"
    preflight.check(cfg)


# ---------------------------------------------------------------- speed and the command line
def test_preflight_imports_no_torch():
    code = "import bench.config.checks, sys; heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not heavy, heavy"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args,field", [
    (["threads=abc"], "threads"),
    (["model=tiny-bert", "model.dtype=float16", "device=cpu"], "model.dtype"),
    (["method.rr=8"], "method.rr"),
    (["method=full", "method.r=4"], "method.r"),
])
def test_cli_refuses_with_exit_2_one_line_and_nothing_written(tmp_path: Path, args: list[str], field: str):
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", *args, "tracking=wandb", f"results_dir={results}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(f"config error: {field}=")
    assert proc.stdout == "" and not results.exists()  # no record, no W&B folder


@pytest.mark.parametrize("value", ["0", "abc", "true"])
def test_max_attempts_is_checked_with_the_plain_values(cfg_factory, value: str):
    err = _refused(cfg_factory(f"max_attempts={value}"))
    assert err.field == "max_attempts"


def test_a_local_model_whose_config_json_cannot_be_read_names_model_path(tmp_path: Path):
    from omegaconf import OmegaConf

    from bench.config.plan import architecture

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as err:
        architecture(OmegaConf.create({"name": "x", "source": "local", "path": str(tmp_path)}))
    assert err.value.field == "model.path"
