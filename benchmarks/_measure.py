"""Timing and peak memory of a repeated step, shared by the benchmarks (run as scripts from this folder)."""

from __future__ import annotations

from collections.abc import Callable


def timed_steps(step: Callable[[], None], device: str, steps: int) -> float:
    """Run ``step`` ``steps`` times (synchronising CUDA after each); returns the fastest time in seconds."""
    import time

    import torch

    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_mib(device: str) -> float:
    """Peak memory so far: ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on CPU."""
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
