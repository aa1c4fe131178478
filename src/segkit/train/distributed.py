"""DDP under ``torchrun``: set-up from its environment variables, rank helpers, tear-down.

segkit has no launcher of its own: ``torchrun`` starts one process per GPU (or CPU
worker) and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them training
runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (``world == 1`` without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and reports progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group is in use."""
        return self.world > 1


def from_environment() -> Dist:
    """Read torchrun's variables (no process group is started)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


def device_name(requested: str, job: Dist) -> str:
    """Under DDP each process drives the GPU of its local rank."""
    if job.enabled and requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{job.local_rank}"
    return requested


def start(job: Dist, device: torch.device) -> None:
    """Join the process group: NCCL on GPUs, gloo on the CPU."""
    if not job.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop() -> None:
    """Leave the process group (if one was started)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_flag(value: bool) -> bool:
    """Rank 0's ``value`` on every rank (e.g. "stop now" decided from rank 0's clock)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    flag = torch.tensor([int(value)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them at the start of each training forward, so after the last one
    each rank holds its own update; validation must use the weights rank 0 saves.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
