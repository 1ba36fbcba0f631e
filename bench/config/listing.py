"""`peft-bench ls`: what a user can choose, read from conf/ itself (each option's header comment says
what it is), so a new YAML is listed the moment it exists. Torch-free: it answers at once."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

from bench.config.compose import CONF
from bench.errors import ConfigError

GROUPS = {"models": "model", "tasks": "task", "methods": "method", "presets": "experiment"}
# A measured duration in a preset's header: "about 2-3 minutes", "~12 min", "66 min", "3.2 h", "(seconds".
DURATION = re.compile(r"(?:~|about |About )?\d[\d.,]*(?:\s?(?:-|to)\s?\d[\d.,]*)?\s?(?:minutes|minute|min|hours|h)\b|\babout a minute\b|\bseconds\b")


def header(path: Path) -> str:
    """The file's leading comment, as one line of text."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def summary(path: Path) -> str:
    """The first sentence of the header (commands in it left out), cut to one terminal line."""
    text = header(path)
    text = re.split(r"\s+(?:python -m|peft-bench) ", text)[0]
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(":").strip()
    return (first if len(first) <= 110 else first[:109].rstrip() + "…") or "(no description)"


def duration(path: Path) -> str:
    """The first measured time its header states, or a word that none is stated."""
    found = DURATION.search(header(path))
    return found.group(0).strip() if found else "time not stated"


def lines(group: str) -> list[str]:
    folder = CONF / GROUPS[group]
    paths = sorted(folder.glob("*.yaml"))
    width = max((len(p.stem) for p in paths), default=0)
    if group == "presets":
        return [f"  {p.stem:<{width}}  [{duration(p)}]  {summary(p)}" for p in paths]
    return [f"  {p.stem:<{width}}  {summary(p)}" for p in paths]


def verb(opts: DictConfig, cfg: DictConfig | None = None, overrides: list[str] | None = None) -> int:
    """`peft-bench ls [models|tasks|methods|presets]`."""
    wanted = list(GROUPS) if opts.what == "all" else [opts.what]
    if opts.what != "all" and opts.what not in GROUPS:
        raise ConfigError("what", opts.what, f"all or one of {', '.join(GROUPS)}")
    for group in wanted:
        option = GROUPS[group]
        print(f"{group} ({option}=NAME{'; -m experiment=NAME runs a preset' if group == 'presets' else ''}):")
        print("\n".join(lines(group)))
    return 0
