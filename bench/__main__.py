"""`python -m bench [group=option ...] [key=value ...]` runs one run; add `-m` for a sweep.
The console script `peft-bench` is the same entry point."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench.errors import ConfigError
from bench.report import markdown_table


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig) -> None:
    from bench.run import run, run_isolated  # torch and transformers load after Hydra parsed the command line

    hydra_cfg = HydraConfig.get()
    sweep = str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    try:
        record = run(cfg) if sweep is None else run_isolated(cfg, sweep)  # sweeps: one fresh process per run
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    status = record["run"]["status"]
    print(f"\n{record['run']['id']}: {status}" + (f" ({record['run']['error']})" if record["run"]["error"] else ""))
    if sweep is None:
        print(markdown_table([record]))
        print(f"record: {record['run'].get('path')}")
        if status != "success":
            sys.exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
