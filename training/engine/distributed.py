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


__all__ = ["DistInfo", "dist_info_from_env", "setup", "sync_run_id", "teardown"]
