"""Data-parallel training: one process per device, each training on its own slice of every global
batch, their gradients averaged by torch's DistributedDataParallel (gloo on the CPU, NCCL on CUDA:
the same code path). torchrun starts the processes (`python -m torch.distributed.run --standalone
--nproc_per_node N -m bench ...`), or `train.world_size=N`, with which the `run` verb starts
torchrun itself (bench.run.app). As in nanoGPT, a process is one rank of a data-parallel run when
torchrun set RANK; otherwise it is the whole run and every helper here changes nothing.

Rank 0 does what happens once per run: it evaluates (with the unwrapped model), measures, writes
the record and mirrors it to W&B; the other ranks train and write nothing.

Torch-free at import: the `run` verb reads the launch from here before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from bench.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bench.models.heads import Head


def launched() -> bool:
    """torchrun started this process (it sets RANK, LOCAL_RANK and WORLD_SIZE for each one)."""
    return int(os.environ.get("RANK", -1)) != -1


def rank() -> int:
    """This process's rank among the run's processes; 0 writes the record."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    """This process's rank on its machine: the GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    """How many processes train the run together (1: a plain run)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return rank() == 0


def adopt_launch(cfg: DictConfig) -> None:
    """Under torchrun, train.world_size becomes the number of processes torchrun started, so the
    record's config (and its hash, the run's identity) is the same whichever way the run was
    launched. The default, 1, takes torchrun's count; any other value must equal it."""
    if not launched():
        return
    wanted = cfg.train.get("world_size", 1)
    if wanted not in (1, world_size()):
        raise ConfigError("train.world_size", wanted, f"{world_size()} or 1 under torchrun, which started {world_size()} processes")
    cfg.train.world_size = world_size()


def check_launch(cfg: DictConfig) -> None:
    """A run of train.world_size > 1 must be one of that many torchrun processes. A sweep's point
    (one process each, bench.sweep.supervise) or a plain call of the pipeline is not: refused, naming
    the way that works."""
    wanted = int(cfg.train.get("world_size", 1))
    if wanted > 1 and world_size() != wanted:
        raise ConfigError("train.world_size", wanted, f"1 here: this process is not one of {wanted} torchrun processes (a sweep runs "
                          f"each point in one process; run a data-parallel point on its own: python -m bench ... train.world_size={wanted})")


def relaunch(processes: int, args: list[str]) -> int:
    """Run this very command again under torch's elastic launcher (torchrun) with `processes`
    processes on this machine, and return its exit code. This process only waits: the children find
    RANK set and train. --standalone: a private rendezvous on a free local port."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "bench", "run", *args]
    print(f"data-parallel: {processes} processes: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    return subprocess.run(command).returncode


def threads_per_process() -> int:
    """CPU threads for each of this machine's processes: the cores this process may use, shared
    out (torchrun sets OMP_NUM_THREADS=1, which would leave cores idle on a larger machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def init(device: torch.device) -> torch.device:
    """Join the run's process group and return this rank's device (on CUDA: its own GPU,
    cuda:LOCAL_RANK). NCCL on CUDA, gloo on the CPU. A plain run: the device unchanged."""
    if not launched():
        return device
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def finish() -> None:
    """Leave the process group (a plain run: nothing)."""
    if not launched():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device, find_unused: bool) -> nn.Module:
    """The model DistributedDataParallel-wrapped for training (a plain run: the model itself). The
    wrapper copies rank 0's weights to every rank, then averages the gradients in the backward pass.
    find_unused: a step may leave trainable parameters out of the loss (the method declares it:
    Method.skips_parameters); DDP then walks the autograd graph every step to find them, where
    without it DDP stops at the next step waiting for their gradients. Off otherwise: the walk costs
    time, and torch warns when it finds nothing."""
    if not launched():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused)


def shard(batch: dict[str, Any]) -> dict[str, Any]:
    """This rank's slice of a global batch: rows rank x n to (rank + 1) x n, n = batch / world size
    (the checks made the batch divide). Slicing the collated batch keeps its padding, so the ranks
    together compute exactly what one process computes on the whole batch."""
    if not launched():
        return batch
    n = next(iter(batch.values())).shape[0] // world_size()
    return {k: v[rank() * n : (rank() + 1) * n] for k, v in batch.items()}


def loss_weight(whole: dict[str, Any], head: Head) -> float:
    """The factor on this rank's mean loss that makes DDP's average of the ranks' gradients the
    gradient of the whole batch's mean loss: world size x n / N, where this rank's slice scores n of
    the batch's N label positions. 1 for a classifier (every slice scores as many examples); an LM
    loss averages over tokens, and slices hold different numbers of them. A plain run: 1."""
    labels = whole.get("labels")
    if not launched() or labels is None:
        return 1.0
    per_example = head.scored_per_example(labels)
    n = int(shard({"labels": per_example})["labels"].sum())
    total = int(per_example.sum())
    return world_size() * n / total if total else 1.0


def mean(value: float, device: torch.device) -> float:
    """The mean of a number over the ranks (each rank's loss on its equal slice: the global batch's
    mean loss). gloo has no AVG reduction, so SUM / world size."""
    if not launched():
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return float(total) / world_size()


def total(values: list[int], device: torch.device) -> list[int]:
    """Each count summed over the ranks (tokens and samples trained)."""
    if not launched():
        return values
    import torch
    import torch.distributed as dist

    summed = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return [int(x) for x in summed.tolist()]


def gather(value: Any) -> list[Any]:
    """Every rank's value, in rank order, on every rank (a plain run: [value])."""
    if not launched():
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values
