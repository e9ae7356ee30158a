"""The process group as training sees it: this process's rank, the world size, the processes
on this node, and the barrier every rank passes together.

torchrun sets RANK / WORLD_SIZE / LOCAL_WORLD_SIZE for every worker; a process started
without it is rank 0 of a world of 1, and its barrier is a no-op.
"""
from __future__ import annotations

import os


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def procs_per_node() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def barrier() -> None:
    """Wait for every rank (when a process group is up)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank0_value(value: float) -> float:
    """Rank 0's `value` on every rank (when a process group is up): a choice every rank must share,
    such as a save interval timed on each rank's own clock."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
