"""Process-level sharding for ``torchrun`` / ``accelerate launch``: each rank generates for its deterministic shard
(``samples[rank::world_size]``) and writes its own file; rank 0 merges. Only barriers and one broadcast go over the
process group, so ``gloo`` serves CPU and GPU runs alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

# Ranks wait for the slowest shard at the merge barrier: allow long generations.
BARRIER_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: list[T]) -> list[T]:
        return items[self.rank :: self.world_size]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed() -> DistContext:
    """The launcher's rank / world size from the environment; joins the process group when there are peers."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for_rank(requested: str | None, context: DistContext) -> str | None:
    """An explicit ``--device`` wins; otherwise each rank of a multi-GPU launch takes ``cuda:<local_rank>`` (ranks
    share GPUs round-robin when there are more processes than devices)."""
    if requested is not None or not context.distributed:
        return requested
    import torch

    return f"cuda:{context.local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else None


__all__ = ["DistContext", "device_for_rank", "init_distributed", "shutdown_distributed"]
