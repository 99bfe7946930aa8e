"""Distributed data parallel under ``torchrun`` (PyTorch's own launcher): gloo on CPU, NCCL on GPU.

``torchrun --nproc_per_node=N -m resnetlab.cli train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR; a plain
``resnetlab train`` is one process and never touches torch.distributed.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ResNetLabError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                   int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def init_distributed(device: torch.device, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group started by torchrun (no-op for a single process)."""
    info = DistInfo.from_env()
    if not info.enabled or dist.is_initialized():
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as exc:
        reason = str(exc).strip().rstrip(".")
        raise ResNetLabError(
            f"could not join the process group ({backend}, rank {info.rank} of {info.world_size}) at "
            f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}: {reason}. Check that every "
            "node runs the same torchrun command with the same --rdzv_endpoint and that the port is reachable"
        ) from None
    return info


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BN running statistics). DDP here does not broadcast buffers, so each rank's
    statistics follow its own share of the batches; evaluating after this scores the model rank 0 checkpoints, and
    a resumed run (which loads rank 0's buffers everywhere) evaluates exactly as the uninterrupted one."""
    if info.enabled:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
