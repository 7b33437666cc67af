"""Many processes: ``torchrun --nproc_per_node=N -m training ...`` runs DDP.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. Rank 0 alone writes events, logs to
the run folder and saves checkpoints; every rank trains on its shard of each epoch's index
sequence (:class:`~training.engine.data.EpochSampler` deals indices like ``DistributedSampler``).
Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from model_zoo.device import select_device
from training.engine.context import RunContext


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 is the writer).
        local_rank: rank on this machine (selects the GPU).
        world_size: number of processes.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1


def dist_info_from_env() -> DistInfo:
    """Read torchrun's environment; a single process when it is absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


def setup(prefer: str, info: DistInfo) -> tuple[torch.device, str]:
    """Choose the device and, under torchrun, join the process group.

    Returns:
        ``(device, human note)``.
    """
    if info.world_size <= 1:
        return select_device(prefer)
    device, note = select_device(prefer)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")  # MPS has no DDP backend
        backend = "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return device, f"{note}; DDP rank {info.rank}/{info.world_size} ({backend})"


def sync_run_id(run_id: str, device: torch.device) -> str:
    """Rank 0's run id on every rank (sent as bytes: object collectives would unpickle)."""
    data = run_id.encode("ascii")[:64].ljust(64)
    buffer = torch.tensor(list(data), dtype=torch.uint8, device=device)
    dist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().tolist()).decode("ascii").strip()


def teardown(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def stop_requested(ctx: RunContext) -> bool:
    """Whether to stop at this step boundary; under DDP every rank gets rank 0's answer."""
    if not ctx.distributed:
        return ctx.stop.requested  # no device round trip: this runs at every step
    # Every rank must leave the loop at the same step, so rank 0's flag is shared.
    flag = torch.tensor([1.0 if ctx.stop.requested else 0.0], device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def mean_over_ranks(values: list[float], ctx: RunContext) -> list[float]:
    """``values`` averaged over the DDP ranks (float64); ``values`` itself for one process."""
    total = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(total)
        total /= ctx.world_size
    return [float(v) for v in total.tolist()]


def barrier(ctx: RunContext) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ctx.distributed:
        dist.barrier()


__all__ = [
    "DistInfo",
    "barrier",
    "dist_info_from_env",
    "mean_over_ranks",
    "setup",
    "stop_requested",
    "sync_run_id",
    "teardown",
]
