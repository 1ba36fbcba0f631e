"""Where a run ran: package versions, the project's git sha and dirty flag, device, threads."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PACKAGES = ("peft-bench", "torch", "transformers", "peft", "hydra-core", "tokenizers", "safetensors",
            "rouge-score", "scikit-learn", "numpy", "gguf", "wandb", "bitsandbytes")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """The installed version of each package (None where it is not installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def describe(device: torch.device) -> dict:
    import torch  # here, not at the top: the plain checks read versions() before torch loads

    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "packages": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": None if dirty is None else bool(dirty),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "slurm_job": slurm_job(),
    }


def slurm_job() -> str | None:
    """The SLURM job this process runs in: `<array job>_<task>` for a sweep point (squeue's and
    scancel's name for it), the job id for a single job, None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
