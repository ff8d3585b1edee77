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
    """Tear down the process group if this process created it (after a barrier); otherwise do nothing."""
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
    """Element-wise mean of `values` over all ranks (all-reduce in float64); the values themselves when not distributed."""
    if not world.distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / world.size).cpu().numpy()


class CrossRankBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are taken over the global batch of all ranks, for
    CPUs (torch's SyncBatchNorm runs on GPUs only). Same parameters, buffers and state-dict
    keys as the BatchNorm it replaces, so checkpoints do not change.

    In a training forward pass that builds a graph, each rank all-reduces its per-channel
    count and sum, then its sum of squared deviations from the global mean (autograd-aware, so gradients flow through the global
    statistics exactly as in one process); without gradients (evaluation, BatchNorm
    re-estimation on rank 0 alone) it is a plain BatchNorm on the local batch."""

    def _check_input_dim(self, input):
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected 2-D to 5-D input, got {input.dim()}-D")

    @classmethod
    def convert(cls, module: torch.nn.Module) -> torch.nn.Module:
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean, new.running_var, new.num_batches_tracked = module.running_mean, module.running_var, module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and torch.is_grad_enabled() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        count = torch.full((1,), float(x.numel() // c), dtype=xf.dtype, device=x.device)
        # Two passes (global mean, then global sum of squared deviations), as a one-process
        # BatchNorm computes them: E[x^2] - E[x]^2 in float32 lost up to 5 % of some gradients.
        stats = all_reduce(torch.cat([xf.sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        shape = [1, c] + [1] * (x.dim() - 2)
        centred = xf - mean.view(shape)
        var = all_reduce(centred.pow(2).sum(dims)) / n  # biased, as BatchNorm normalises with
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean.detach().to(self.running_mean.dtype))
                self.running_var.mul_(1 - f).add_(f * (var.detach() * n / (n - 1).clamp_min(1)).to(self.running_var.dtype))
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)
