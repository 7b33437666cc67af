"""The training loop, read top to bottom (nanoGPT style): fit, then one epoch, then validation.

:func:`fit` trains any stage. The stage hands it an :class:`Objective` (a torch module whose
forward returns the loss of a batch, :mod:`training.engine.objective`; SALL's is
:class:`training.engine.sall.objective.SallObjective`) and the datasets; the loop knows nothing
of the method and owns everything else, in this order:

1. setup (:mod:`training.engine.loop_setup`): device and channels_last, Adam with the config's
   hyperparameters, AMP on CUDA (bf16 where supported, else fp16 with a grad scaler), DDP when
   launched by torchrun, the epoch sampler, and ``--resume`` from the stage's ``state.json``;
2. per epoch: :func:`train_one_epoch` (learning rate per step, progress events, a STOP check at
   every step boundary), :func:`validate` (total loss = early-stopping criterion, and the
   objective's own metrics), bookkeeping and early stopping on the validation loss (patience),
   an atomic checkpoint, then ``epoch_end``;
3. the best checkpoint is restored (the authors' ``restore_best_weights``).

Cancelling saves a checkpoint at the step boundary and raises :class:`Cancelled`; the caller
emits ``run_cancelled`` and exits 0. ``--resume`` then continues from that exact step: the
sampler's order depends only on (seed, epoch) and the RNG and optimiser states are restored, so
the result equals an uninterrupted run's (bit for bit on CPU with deterministic kernels).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from model_zoo.cards import ModelCard
from training.engine.context import Cancelled, FitResult, NonFiniteLossError, RunContext
from training.engine.data import ImageDataset, steps_per_epoch
from training.engine.distributed import barrier, mean_over_ranks, stop_requested
from training.engine.loop_setup import (
    autocast_context,
    lr_at,
    make_grad_scaler,
    make_optimizer,
    make_train_loader,
    seed_everything,
    start_state,
    wrap_ddp,
)
from training.engine.objective import Objective
from training.engine.state import StageCheckpoints, StageState
from training.protocol.config import TrainConfig
from training.protocol.events import EpochEnd, Metrics, Progress, StageStarted

log = logging.getLogger("training")


# ----------------------------------------------------------------------------- fit


def fit(
    *,
    stage: str,
    objective: Objective,
    train: ImageDataset,
    val: ImageDataset | None,
    sampling_weights: np.ndarray | None,
    card: ModelCard,
    cfg: TrainConfig,
    ctx: RunContext,
    max_epochs: int,
    resume: bool,
    stage_index: int = 0,
    stage_total: int = 1,
) -> FitResult:
    """Train one stage to completion (or cancellation) and restore its best checkpoint.

    Args:
        stage: stage name; also the stage folder under the run folder.
        objective: network + loss; it holds the supervision of ``train`` (and ``val``).
        train: training images (split ``"train"`` of the objective).
        val: validation images (split ``"val"``), or None (then every epoch is "best" and
            nothing stops early).
        sampling_weights: per-training-image weights, None for uniform.
        card: card template of the network (empty id); metrics are added per checkpoint.
        cfg: run configuration.
        ctx: run context.
        max_epochs: epoch limit of this stage.
        resume: continue from the stage's ``state.json`` when there is one.
        stage_index: position of the stage in the command (for ``stage_started``).
        stage_total: number of stages in the command.

    Raises:
        Cancelled: on a stop request, after saving a checkpoint.
        NonFiniteLossError: the loss diverged.
        ResumeError: the saved state belongs to another configuration.
    """
    # -- setup ---------------------------------------------------------------------------------
    o = cfg.optim
    stage_dir = ctx.run_dir / stage
    objective.place(ctx.device, channels_last=cfg.runtime.channels_last)
    optimizer = make_optimizer(objective.parameters(), o)
    scaler = make_grad_scaler(cfg, ctx.device)
    module = wrap_ddp(objective, ctx)
    steps = steps_per_epoch(len(train), o.batch_size, o.steps_per_epoch, ctx.world_size)
    schedule = Schedule(steps, total=steps * max_epochs, warmup=round(o.warmup_epochs * steps))
    sampler, loader = make_train_loader(train, sampling_weights, steps=steps, cfg=cfg, ctx=ctx)
    zeros = [0.0] * len(objective.part_names)
    fresh = StageState(stage=stage, config_digest=cfg.digest(), sums=zeros)
    state = start_state(
        stage_dir,
        fresh,
        resume=resume,
        model=objective.model,
        extra=objective.extra,
        optimizer=optimizer,
        ctx=ctx,
    )
    checkpoints = StageCheckpoints(
        stage,
        stage_dir,
        model=objective.model,
        extra=objective.extra,
        optimizer=optimizer,
        card=card,
        state=state,
        ctx=ctx,
    )
    ctx.sink.emit(
        StageStarted(
            run_id=ctx.run_id,
            stage=stage,
            index=stage_index,
            total=stage_total,
            train_images=len(train),
            val_images=len(val) if val is not None else 0,
        )
    )

    # -- epochs --------------------------------------------------------------------------------
    while not state.finished and state.epoch < max_epochs:
        started = time.monotonic()
        sampler.set_epoch(state.epoch, state.step)
        # train steps (False: a stop was requested at a step boundary)
        if not train_one_epoch(
            stage=stage,
            module=module,
            loader=loader,
            optimizer=optimizer,
            scaler=scaler,
            state=state,
            schedule=schedule,
            cfg=cfg,
            ctx=ctx,
        ):
            name = f"e{state.epoch:04d}-s{state.step:05d}"
            checkpoints.save(name, epoch=state.epoch, is_best=False, metrics={"step": state.step})
            barrier(ctx)
            raise Cancelled(stage, f"{stage}/{state.last}")
        train_means = _named(objective.part_names, mean_over_ranks(state.sums, ctx), steps)
        if not math.isfinite(train_means["loss"]):
            raise NonFiniteLossError(f"the training loss of epoch {state.epoch} is not finite")
        # validate
        val_means: dict[str, float] = {}
        val_metrics: dict[str, Metrics] = {}
        if val is not None and len(val):
            val_means, val_metrics = validate(
                objective, val, cfg=cfg, ctx=ctx, batch_size=o.batch_size
            )
        # early stopping, checkpoint, event
        epoch, lr = state.epoch, optimizer.param_groups[0]["lr"]
        val_loss = val_means.get("loss")
        improved = state.end_epoch(
            train_means["loss"], val_loss, lr=lr, patience=o.patience, max_epochs=max_epochs
        )
        criterion = train_means["loss"] if val_loss is None else val_loss
        summary = {"val_loss": _finite_or_none(criterion), "val_metrics": val_metrics}
        checkpoints.save(f"e{epoch:04d}", epoch=epoch, is_best=improved, metrics=summary)
        losses: Metrics = {f"train_{k}": _finite_or_none(v) for k, v in train_means.items()}
        losses.update({f"val_{k}": _finite_or_none(v) for k, v in val_means.items()})
        ctx.sink.emit(
            EpochEnd(
                run_id=ctx.run_id,
                stage=stage,
                epoch=epoch,
                train_loss=_finite_or_none(train_means["loss"]),
                val_loss=None if val_loss is None else _finite_or_none(val_loss),
                losses=losses,
                metrics=val_metrics,
                lr=lr,
                is_best=improved,
                seconds=time.monotonic() - started,
            )
        )
        barrier(ctx)
        if state.bad_epochs >= o.patience:
            log.info(
                "early stop after epoch %d: no better validation loss for %d", epoch, o.patience
            )
        if not state.finished and stop_requested(ctx):
            raise Cancelled(stage, f"{stage}/{state.last}")

    # -- restore best --------------------------------------------------------------------------
    return checkpoints.restore_best()


# ----------------------------------------------------------------------------- one epoch


@dataclass(frozen=True)
class Schedule:
    """Steps per epoch, steps of the stage and warm-up steps (for :func:`lr_at`)."""

    steps: int
    total: int
    warmup: int


def train_one_epoch(
    *,
    stage: str,
    module: nn.Module,
    loader: DataLoader[tuple[Tensor, int]],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    state: StageState,
    schedule: Schedule,
    cfg: TrainConfig,
    ctx: RunContext,
) -> bool:
    """Run the remaining steps of ``state.epoch``; update ``state.sums``/``state.step``.

    Returns:
        True when the epoch completed, False when a stop was requested at a step boundary.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite.
    """
    module.train()
    sums = torch.tensor(state.sums, dtype=torch.float64, device=ctx.device)
    steps = schedule.steps
    last_progress = 0.0
    for x, idx in loader:
        if stop_requested(ctx):
            state.sums = sums.tolist()
            return False
        lr = lr_at(state.epoch * steps + state.step, schedule.total, schedule.warmup, cfg.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = _images_to(x, ctx.device, cfg, non_blocking=True)
        idx = idx.to(ctx.device, non_blocking=True)
        with autocast_context(cfg, ctx.device):
            loss, parts, _ = module(x, idx, "train")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        sums += parts.to(torch.float64)
        state.step += 1
        now = time.monotonic()
        if now - last_progress >= cfg.runtime.progress_interval_s or state.step == steps:
            last_progress = now
            _progress(stage, float(sums[0]) / state.step, state, steps, ctx)
    state.sums = sums.tolist()
    return True


def _images_to(x: Tensor, device: torch.device, cfg: TrainConfig, *, non_blocking: bool) -> Tensor:
    x = x.to(device, non_blocking=non_blocking)
    if cfg.runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _progress(stage: str, running: float, state: StageState, steps: int, ctx: RunContext) -> None:
    """Emit ``progress`` with the epoch's running mean loss; refuse a diverged one."""
    if not math.isfinite(running):
        raise NonFiniteLossError(
            f"the training loss became {running} in epoch {state.epoch}, step "
            f"{state.step}; lower optim.lr or check the data"
        )
    ctx.sink.emit(
        Progress(
            run_id=ctx.run_id,
            stage=stage,
            epoch=state.epoch,
            step=state.step,
            steps_per_epoch=steps,
            loss=running,
        )
    )


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(
    objective: Objective,
    dataset: ImageDataset,
    *,
    cfg: TrainConfig,
    ctx: RunContext,
    batch_size: int,
) -> tuple[dict[str, float], dict[str, Metrics]]:
    """Mean loss components and the objective's per-head metrics on the validation split.

    Every DDP rank evaluates the whole split, so early-stopping decisions agree without
    communication. NaN and infinite metrics become None (JSON has no NaN).
    """
    objective.eval()
    # A private generator: creating a loader iterator must not consume the global RNG, or a
    # resumed run would draw different dropout masks than an uninterrupted one.
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=0, generator=torch.Generator()
    )
    sums = torch.zeros(len(objective.part_names), dtype=torch.float64, device=ctx.device)
    images = 0
    preds: dict[str, list[Tensor]] = {}
    for x, idx in loader:
        x = _images_to(x, ctx.device, cfg, non_blocking=False)
        idx = idx.to(ctx.device)
        with autocast_context(cfg, ctx.device):
            _, parts, logits = objective(x, idx, "val")
        # The loss is a per-batch mean over B; weight batches by size for the split mean.
        sums += parts.to(torch.float64) * x.shape[0]
        images += x.shape[0]
        for name, z in logits.items():
            preds.setdefault(name, []).append(z.argmax(dim=1).cpu())
    means = _named(objective.part_names, sums.tolist(), max(1, images))
    predicted = {name: torch.cat(p).numpy() for name, p in preds.items()}
    metrics = {
        head: {k: _finite_or_none(v) for k, v in figures.items()}
        for head, figures in objective.metrics("val", predicted).items()
    }
    return means, metrics


# ----------------------------------------------------------------------------- helpers


def _named(names: Sequence[str], sums: Sequence[float], count: int) -> dict[str, float]:
    """``sums / count`` keyed by component name."""
    return {name: float(sums[i]) / count for i, name in enumerate(names)}


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


__all__ = [
    "Cancelled",
    "FitResult",
    "NonFiniteLossError",
    "Objective",
    "RunContext",
    "autocast_context",
    "fit",
    "lr_at",
    "seed_everything",
    "train_one_epoch",
    "validate",
]
