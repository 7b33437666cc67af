"""What :func:`training.engine.loop.fit` prepares before the first step, one function each.

Seeds (and the determinism switch), the learning-rate schedule, autocast, Adam with the config's
hyperparameters, the fp16 grad scaler, the DDP wrapper, the epoch sampler and its loader, and
the stage's starting state (fresh, or ``--resume`` from its ``state.json``). Nothing here knows
which objective is trained: the network and the extra modules come in as plain torch modules.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from model_zoo.checkpoints import load_checkpoint
from training.engine.context import RunContext
from training.engine.data import EpochSampler, ImageDataset, default_workers
from training.engine.state import (
    ResumeError,
    StageState,
    load_train_state,
    prune_leftovers,
    read_state,
)
from training.protocol.config import OptimConfig, TrainConfig

log = logging.getLogger("training")


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed Python, numpy and torch; optionally force deterministic kernels (slower)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=False)


def lr_at(it: int, total: int, warmup: int, optim: OptimConfig) -> float:
    """Learning rate of global step ``it``: linear warm-up, then constant or cosine decay."""
    if it < warmup:
        return optim.lr * (it + 1) / warmup
    if optim.schedule == "constant":
        return optim.lr
    # The last step (it = total - 1) reaches the floor exactly.
    progress = min(1.0, (it - warmup) / max(1, total - 1 - warmup))
    floor = optim.lr * optim.min_lr_ratio
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (optim.lr - floor)


def autocast_context(
    cfg: TrainConfig, device: torch.device
) -> contextlib.AbstractContextManager[None]:
    """bf16 (or fp16) autocast on CUDA when ``runtime.amp``; a no-op otherwise."""
    if not (cfg.runtime.amp and device.type == "cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def make_optimizer(params: Iterable[nn.Parameter], optim: OptimConfig) -> torch.optim.Optimizer:
    """Adam over the trainable ``params`` with the config's hyperparameters."""
    trainable = [p for p in params if p.requires_grad]
    return torch.optim.Adam(
        trainable,
        lr=optim.lr,
        betas=(optim.beta1, optim.beta2),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )


def make_grad_scaler(cfg: TrainConfig, device: torch.device) -> torch.amp.GradScaler | None:
    """A grad scaler for fp16 autocast (CUDA without bf16); None when none is needed."""
    if cfg.runtime.amp and device.type != "cuda":
        log.info("runtime.amp applies to CUDA only; training on %s in fp32", device.type)
    use_fp16 = cfg.runtime.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda") if use_fp16 else None


def wrap_ddp(objective: object, ctx: RunContext) -> nn.Module:
    """The module the training steps call: ``objective`` itself, or DDP's wrapper of it."""
    if not isinstance(objective, nn.Module):
        raise TypeError(f"the objective must be a torch module, got {type(objective).__name__}")
    if not ctx.distributed:
        return objective
    device = ctx.device
    return DistributedDataParallel(
        objective, device_ids=[device.index] if device.type == "cuda" else None
    )


def make_train_loader(
    train: ImageDataset,
    sampling_weights: np.ndarray | None,
    *,
    steps: int,
    cfg: TrainConfig,
    ctx: RunContext,
) -> tuple[EpochSampler, DataLoader[tuple[Tensor, int]]]:
    """The epoch sampler (order = f(seed, epoch), sharded across ranks) and its loader."""
    sampler = EpochSampler(
        len(train),
        batch_size=cfg.optim.batch_size,
        steps=steps,
        seed=cfg.runtime.seed,
        weights=sampling_weights,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    workers = default_workers(cfg.runtime.num_workers)
    loader = DataLoader(
        train,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(cfg.runtime.seed),  # keeps the global RNG intact
    )
    return sampler, loader


def start_state(
    stage_dir: Path,
    fresh: StageState,
    *,
    resume: bool,
    model: nn.Module,
    extra: nn.Module,
    optimizer: torch.optim.Optimizer,
    ctx: RunContext,
) -> StageState:
    """``fresh``, or with ``resume`` the saved state, its weights, optimiser and RNG restored.

    Raises:
        ResumeError: the saved state belongs to another configuration, or is damaged.
    """
    saved = read_state(stage_dir) if resume else None
    if saved is None:
        if ctx.rank == 0 and stage_dir.exists():
            prune_leftovers(stage_dir, fresh)
        return fresh
    if saved.config_digest != fresh.config_digest:
        raise ResumeError(
            f"stage {fresh.stage} was started with another configuration; resume needs the same "
            "config and --set options"
        )
    if saved.last:
        folder = stage_dir / saved.last
        resumed, _ = load_checkpoint(folder, device="cpu")
        model.load_state_dict(resumed.state_dict())
        load_train_state(folder, optimizer=optimizer, extra=extra, device=ctx.device)
    log.info("resuming stage %s at epoch %d step %d", fresh.stage, saved.epoch, saved.step)
    return saved


__all__ = [
    "autocast_context",
    "lr_at",
    "make_grad_scaler",
    "make_optimizer",
    "make_train_loader",
    "seed_everything",
    "start_state",
    "wrap_ddp",
]
