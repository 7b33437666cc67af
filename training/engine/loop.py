"""The training loop, read top to bottom (nanoGPT style): setup, train_one_epoch, validate, fit.

One function, :func:`fit`, trains any stage (teacher, student, fine-tune): the stage hands it a
:class:`~training.engine.sall.objective.SallObjective` (network + loss) and the datasets. The
loop owns everything else, in this order:

1. setup: seeds (and the determinism switch), device, channels_last, Adam with the config's
   hyperparameters, AMP on CUDA (bf16 where supported, else fp16 with a grad scaler), DDP when
   launched by torchrun, the epoch sampler, and ``--resume`` from the stage's ``state.json``;
2. per epoch: ``train_one_epoch`` (learning rate per step from :func:`lr_at`, progress events,
   a STOP check at every step boundary), ``validate`` (total loss = early-stopping criterion,
   per-head accuracy and QWK), an atomic checkpoint, ``epoch_end`` and ``checkpoint_saved``;
3. early stopping on the validation loss (patience), then the best checkpoint is restored
   (the authors' ``restore_best_weights``).

Cancelling saves a checkpoint at the step boundary and raises :class:`Cancelled`; the caller
emits ``run_cancelled`` and exits 0. ``--resume`` then continues from that exact step: the
sampler's order depends only on (seed, epoch) and the RNG and optimiser states are restored, so
the result equals an uninterrupted run's (bit for bit on CPU with deterministic kernels).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from model_zoo.cards import ModelCard, Provenance
from model_zoo.checkpoints import load_checkpoint
from model_zoo.metrics import accuracy, quadratic_weighted_kappa
from training.engine.context import Cancelled, FitResult, NonFiniteLossError, RunContext
from training.engine.data import EpochSampler, ImageDataset, default_workers, steps_per_epoch
from training.engine.sall.objective import PART_NAMES, SallObjective
from training.engine.state import (
    ResumeError,
    StageState,
    load_train_state,
    prune_leftovers,
    read_state,
    save_stage_checkpoint,
)
from training.protocol.config import OptimConfig, TrainConfig
from training.protocol.events import CheckpointSaved, EpochEnd, Metrics, Progress, StageStarted
from training.protocol.report import EpochRecord

log = logging.getLogger("training")


# ----------------------------------------------------------------------------- setup helpers


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


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _stop_requested(ctx: RunContext) -> bool:
    if not ctx.distributed:
        return ctx.stop.requested  # no device round trip: this runs at every step
    # Every rank must leave the loop at the same step, so rank 0's flag is shared.
    flag = torch.tensor([1.0 if ctx.stop.requested else 0.0], device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


# ----------------------------------------------------------------------------- one epoch


def train_one_epoch(
    *,
    stage: str,
    module: torch.nn.Module,
    loader: DataLoader[tuple[Tensor, int]],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    state: StageState,
    steps: int,
    total_steps: int,
    warmup: int,
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
    last_progress = 0.0
    channels_last = cfg.runtime.channels_last
    for x, idx in loader:
        if _stop_requested(ctx):
            state.sums = sums.tolist()
            return False
        lr = lr_at(state.epoch * steps + state.step, total_steps, warmup, cfg.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = x.to(ctx.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
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
            running = float(sums[0]) / state.step
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
    state.sums = sums.tolist()
    return True


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(
    objective: SallObjective,
    dataset: ImageDataset,
    *,
    cfg: TrainConfig,
    ctx: RunContext,
    batch_size: int,
) -> tuple[dict[str, float], dict[str, Metrics]]:
    """Mean loss components and per-head accuracy/QWK (T = 1) on the validation split.

    Every DDP rank evaluates the whole split, so early-stopping decisions agree without
    communication.
    """
    objective.eval()
    # A private generator: creating a loader iterator must not consume the global RNG, or a
    # resumed run would draw different dropout masks than an uninterrupted one.
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=0, generator=torch.Generator()
    )
    sums = torch.zeros(len(PART_NAMES), dtype=torch.float64, device=ctx.device)
    batches = 0
    preds: dict[str, list[Tensor]] = {name: [] for name in objective.task_names}
    for x, idx in loader:
        x = x.to(ctx.device)
        if cfg.runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        idx = idx.to(ctx.device)
        with autocast_context(cfg, ctx.device):
            _, parts, logits = objective(x, idx, "val")
        # The loss is a per-batch mean over B; weight batches by size for the split mean.
        sums += parts.to(torch.float64) * x.shape[0]
        batches += x.shape[0]
        for name, z in logits.items():
            preds[name].append(z.argmax(dim=1).cpu())
    means = {name: float(sums[i]) / max(1, batches) for i, name in enumerate(PART_NAMES)}
    hard = objective.targets["val"].hard.cpu().numpy()
    metrics: dict[str, Metrics] = {}
    for k, task in enumerate(objective.model.tasks):
        y = hard[:, k]
        p = torch.cat(preds[task.name]).numpy() if preds[task.name] else np.zeros(0, np.int64)
        labelled = int((y >= 0).sum())
        metrics[task.name] = {
            "n": float(labelled),
            "accuracy": _finite_or_none(accuracy(y, p)),
            "qwk": _finite_or_none(quadratic_weighted_kappa(y, p, task.num_classes)),
        }
    return means, metrics


# ----------------------------------------------------------------------------- fit


def fit(
    *,
    stage: str,
    objective: SallObjective,
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
        objective: network + loss; ``objective.targets`` must hold ``train`` (and ``val``).
        train: training images (indices match ``objective.targets["train"]``).
        val: validation images, or None (then every epoch is "best" and nothing stops early).
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
    stage_dir = ctx.run_dir / stage
    device = ctx.device
    objective.to(device)
    objective.move_targets(device)
    if cfg.runtime.channels_last:
        objective.to(memory_format=torch.channels_last)
    params = [p for p in objective.parameters() if p.requires_grad]
    o = cfg.optim
    optimizer = torch.optim.Adam(
        params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay
    )
    if cfg.runtime.amp and device.type != "cuda":
        log.info("runtime.amp applies to CUDA only; training on %s in fp32", device.type)
    use_fp16 = cfg.runtime.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_fp16 else None
    module: torch.nn.Module = objective
    if ctx.distributed:
        module = DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    steps = steps_per_epoch(len(train), o.batch_size, o.steps_per_epoch, ctx.world_size)
    total_steps = steps * max_epochs
    warmup = round(o.warmup_epochs * steps)
    sampler = EpochSampler(
        len(train),
        batch_size=o.batch_size,
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
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(cfg.runtime.seed),  # keeps the global RNG intact
    )
    state = StageState(stage=stage, config_digest=cfg.digest())
    saved = read_state(stage_dir) if resume else None
    if saved is not None:
        if saved.config_digest != state.config_digest:
            raise ResumeError(
                f"stage {stage} was started with another configuration; resume needs the same "
                "config and --set options"
            )
        state = saved
        if state.last:
            resumed, _ = load_checkpoint(stage_dir / state.last, device="cpu")
            objective.model.load_state_dict(resumed.state_dict())
            load_train_state(
                stage_dir / state.last, optimizer=optimizer, extra=objective.adapters, device=device
            )
        log.info("resuming stage %s at epoch %d step %d", stage, state.epoch, state.step)
    elif ctx.rank == 0 and stage_dir.exists():
        prune_leftovers(stage_dir, state)
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

    def checkpoint(
        name: str, *, epoch: int, is_best: bool, metrics: Mapping[str, object]
    ) -> ModelCard:
        template = card.replace(
            provenance=_with_metrics(card, {"stage": stage, "epoch": epoch, **metrics})
        )
        if ctx.rank != 0:
            # Rank 0 writes; the others only track the names to restore the best one at the end.
            state.last = f"ckpt/{name}"
            state.best = state.last if is_best else state.best
            return template
        saved_card = save_stage_checkpoint(
            stage_dir,
            name,
            model=objective.model,
            card=template,
            optimizer=optimizer,
            extra=objective.adapters,
            state=state,
            is_best=is_best,
        )
        ctx.sink.emit(
            CheckpointSaved(
                run_id=ctx.run_id,
                stage=stage,
                epoch=epoch,
                path=f"{stage}/{state.last}",
                weights_sha256=saved_card.id,
                is_best=is_best,
            )
        )
        return saved_card

    # -- epochs --------------------------------------------------------------------------------
    while not state.finished and state.epoch < max_epochs:
        started = time.monotonic()
        sampler.set_epoch(state.epoch, state.step)
        completed = train_one_epoch(
            stage=stage,
            module=module,
            loader=loader,
            optimizer=optimizer,
            scaler=scaler,
            state=state,
            steps=steps,
            total_steps=total_steps,
            warmup=warmup,
            cfg=cfg,
            ctx=ctx,
        )
        if not completed:
            name = f"e{state.epoch:04d}-s{state.step:05d}"
            checkpoint(name, epoch=state.epoch, is_best=False, metrics={"step": state.step})
            _barrier(ctx)
            raise Cancelled(stage, f"{stage}/{state.last}")
        train_means = _epoch_means(state.sums, steps, ctx)
        if not math.isfinite(train_means["loss"]):
            raise NonFiniteLossError(f"the training loss of epoch {state.epoch} is not finite")
        val_means: dict[str, float] = {}
        val_metrics: dict[str, Metrics] = {}
        if val is not None and len(val):
            val_means, val_metrics = validate(
                objective, val, cfg=cfg, ctx=ctx, batch_size=o.batch_size
            )
            criterion = val_means["loss"]
            improved = state.best_val is None or criterion < state.best_val
        else:
            criterion = train_means["loss"]
            improved = True  # no validation split: the latest epoch is the one to keep
        lr = optimizer.param_groups[0]["lr"]
        state.history.append(
            {
                "stage": stage,
                "epoch": state.epoch,
                "train_loss": _finite_or_none(train_means["loss"]),
                "val_loss": _finite_or_none(val_means["loss"]) if val_means else None,
                "lr": lr,
            }
        )
        epoch = state.epoch
        if improved:
            state.best_val, state.best_epoch, state.bad_epochs = criterion, epoch, 0
        else:
            state.bad_epochs += 1
        state.epoch, state.step, state.sums = epoch + 1, 0, [0.0] * len(PART_NAMES)
        state.finished = state.bad_epochs >= o.patience or state.epoch >= max_epochs
        losses: Metrics = {f"train_{k}": _finite_or_none(v) for k, v in train_means.items()}
        losses.update({f"val_{k}": _finite_or_none(v) for k, v in val_means.items()})
        summary = {"val_loss": _finite_or_none(criterion), "val_metrics": val_metrics}
        checkpoint(f"e{epoch:04d}", epoch=epoch, is_best=improved, metrics=summary)
        ctx.sink.emit(
            EpochEnd(
                run_id=ctx.run_id,
                stage=stage,
                epoch=epoch,
                train_loss=_finite_or_none(train_means["loss"]),
                val_loss=_finite_or_none(val_means["loss"]) if val_means else None,
                losses=losses,
                metrics=val_metrics,
                lr=lr,
                is_best=improved,
                seconds=time.monotonic() - started,
            )
        )
        _barrier(ctx)
        if state.bad_epochs >= o.patience:
            log.info(
                "early stop after epoch %d: no better validation loss for %d", epoch, o.patience
            )
        if not state.finished and _stop_requested(ctx):
            raise Cancelled(stage, f"{stage}/{state.last}")

    # -- restore best --------------------------------------------------------------------------
    best_dir = stage_dir / state.best
    best_model, best_card = load_checkpoint(best_dir, device="cpu")
    objective.model.load_state_dict(best_model.state_dict())
    history = tuple(EpochRecord(**h) for h in state.history)
    return FitResult(best_dir=best_dir, card=best_card, history=history)


def _epoch_means(sums: list[float], steps: int, ctx: RunContext) -> dict[str, float]:
    total = torch.tensor(sums, dtype=torch.float64, device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(total)
        total /= ctx.world_size
    return {name: float(total[i]) / steps for i, name in enumerate(PART_NAMES)}


def _barrier(ctx: RunContext) -> None:
    if ctx.distributed:
        dist.barrier()


def _with_metrics(card: ModelCard, metrics: Mapping[str, object]) -> Provenance:
    return dataclasses.replace(card.provenance, metrics={**card.provenance.metrics, **metrics})


__all__ = [
    "Cancelled",
    "FitResult",
    "NonFiniteLossError",
    "RunContext",
    "autocast_context",
    "fit",
    "lr_at",
    "seed_everything",
    "train_one_epoch",
    "validate",
]
