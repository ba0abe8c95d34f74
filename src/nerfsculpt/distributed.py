"""Data parallelism under ``torchrun``: the few collective operations nerfsculpt's training loops use.

Every helper is a no-op in a single process, so a loop written with them runs unchanged with or
without ``torch.distributed``. Gradients are averaged by hand after each backward pass (what
DistributedDataParallel does, without its hooks), as EG3D's training loop does: the losses call
sub-networks (a reward head, the generator's mapping) directly, which DDP's wrapper cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group, or (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(values: Tensor) -> Tensor:
    """Sum over ranks, in place (a no-op in a single process). Returns ``values``.

    CPU tensors are fine under NCCL too: they travel through the current CUDA device and back.
    """
    import torch.distributed as dist

    if world()[1] > 1:
        if dist.get_backend() == "nccl" and not values.is_cuda:
            on_device = values.cuda()
            dist.all_reduce(on_device)
            values.copy_(on_device)
        else:
            dist.all_reduce(values)
    return values


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over ranks, in one flat all-reduce."""
    n_ranks = world()[1]
    if n_ranks == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]  # one flat all-reduce for all of them
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        all_reduce_sum(flat).div_(n_ranks)
        for g, chunk in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(chunk.view_as(g))


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()
