"""Training over several processes with PyTorch's own engine (torch.distributed + DDP),
started by `torchrun`: gloo on CPUs, NCCL on NVIDIA GPUs.

The global batch is kept: every rank draws the same global P x K batch (same sampler, same
seed) and the same augmentation draws, takes its contiguous share of the rows (whole
identities when P is a multiple of the world size), and the batch-level losses (multibatch,
relational, ...) run on the embeddings all-gathered from every rank, with gradients
(torch.distributed.nn.functional.all_gather sums each rank's gradient back to its rows; DDP
then averages over ranks, which gives exactly the gradient of the one-process loss).

What still differs from one process: BatchNorm statistics are computed over each rank's
rows only. On CUDA the loop converts BatchNorms to SyncBatchNorm (statistics over the
global batch); SyncBatchNorm does not run on CPU, so CPU ranks keep per-rank statistics and
the loss curve matches one process within the tolerance stated in tests/test_train_ddp.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process called init_process_group (and so tears it down)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK), or a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={size} but {key} is not set: start distributed training with torchrun")
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ["LOCAL_RANK"]))


def init(world: World, device: torch.device) -> World:
    """Join the process group (gloo on CPU, NCCL on CUDA) unless already joined."""
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return world
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    world.owns_group = True
    return world


def finish(world: World) -> None:
    import torch.distributed as dist

    if world.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        world.owns_group = False


def shard_rows(n: int, world: World, what: str = "batch") -> slice:
    """The contiguous rows [rank * n / size, (rank + 1) * n / size) of an n-row global batch."""
    if n % world.size:
        raise ValueError(f"the global {what} of {n} rows does not split evenly over {world.size} processes; choose P x K (and --distill-extra) divisible by the world size")
    m = n // world.size
    return slice(world.rank * m, (world.rank + 1) * m)


def gather_rows(x: torch.Tensor, world: World, grad: bool = True) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (with gradients flowing back to each rank's own rows when grad)."""
    if not world.distributed:
        return x
    import torch.distributed as dist

    if grad:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x.contiguous()), 0)
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


def average_(tensors: list[torch.Tensor], world: World) -> None:
    """In-place mean over ranks (for gradients DDP does not own, e.g. loss-module parameters)."""
    if not world.distributed or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world.size
    off = 0
    for t in tensors:
        t.copy_(flat[off : off + t.numel()].view_as(t))
        off += t.numel()


def from_main(values: list[float], world: World, device) -> list[float]:
    """Rank 0's values on every rank (decisions that depend on a clock: stop, LR progress,
    steps per epoch under a time budget), so ranks never disagree and deadlock."""
    if not world.distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return [float(v) for v in t.cpu().numpy()]


def mean_over_ranks(values: np.ndarray, world: World, device) -> np.ndarray:
    if not world.distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / world.size).cpu().numpy()
