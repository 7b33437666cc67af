"""Checkpoints and resumable training state of one stage.

Layout of a stage folder::

    <run_dir>/<stage>/state.json               progress pointer, written atomically LAST
    <run_dir>/<stage>/ckpt/e0003/              end of epoch 3 (epochs are 0-based)
        train_state.safetensors                optimiser moments, adapters, RNG states
        weights.safetensors + card.json        model_zoo.checkpoints.save_checkpoint (card last)
    <run_dir>/<stage>/ckpt/e0004-s00012/       cancelled after step 12 of epoch 4

``state.json`` only ever names complete checkpoint folders, so a crash at any point leaves the
previous consistent state; folders it does not name are leftovers and are deleted. Only the
latest and the best checkpoints are kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors
from torch import Tensor, nn

from model_zoo.cards import ModelCard
from model_zoo.checkpoints import load_checkpoint, save_checkpoint
from model_zoo.fileio import atomic_write_bytes, atomic_write_text
from training.engine.context import FitResult, RunContext
from training.protocol.events import CheckpointSaved
from training.protocol.report import EpochRecord

STATE_FILENAME = "state.json"
TRAIN_STATE_FILENAME = "train_state.safetensors"
STATE_SCHEMA = 1


class ResumeError(RuntimeError):
    """A run cannot be resumed (no state, another configuration, damaged checkpoint)."""


@dataclass
class StageState:
    """Mutable progress of a stage (the loop owns it; persisted in ``state.json``).

    Attributes:
        stage: stage name.
        config_digest: digest of the config the stage was started with.
        epoch: epoch to run next (0-based).
        step: step inside ``epoch`` to run next (non-zero after a mid-epoch cancel).
        sums: running sums of the loss components over the steps of ``epoch`` done so far.
        best_val: best validation loss so far (``None`` before the first epoch).
        best_epoch: its epoch (-1 before the first epoch).
        bad_epochs: epochs since the last improvement.
        history: learning-curve points (dicts of ``EpochRecord`` fields).
        last: latest checkpoint folder, relative to the stage folder.
        best: best checkpoint folder, relative to the stage folder.
        finished: the stage completed (early stop or epoch limit).
    """

    stage: str
    config_digest: str
    epoch: int = 0
    step: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0] * 5)
    best_val: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    last: str = ""
    best: str = ""
    finished: bool = False

    def end_epoch(
        self,
        train_loss: float,
        val_loss: float | None,
        *,
        lr: float,
        patience: int,
        max_epochs: int,
    ) -> bool:
        """Record the epoch just trained and move on to the next one.

        Appends the learning-curve point, keeps the best criterion (the validation loss, or
        without a validation split the latest epoch), counts epochs without improvement and
        marks the stage finished at ``patience`` of them or at ``max_epochs``.

        Returns:
            Whether the epoch is the best so far.
        """
        epoch = self.epoch
        if val_loss is None:
            criterion, improved = train_loss, True  # no validation split: keep the latest
        else:
            criterion = val_loss
            improved = self.best_val is None or criterion < self.best_val
        self.history.append(
            {
                "stage": self.stage,
                "epoch": epoch,
                "train_loss": _finite_or_none(train_loss),
                "val_loss": None if val_loss is None else _finite_or_none(val_loss),
                "lr": lr,
            }
        )
        if improved:
            self.best_val, self.best_epoch, self.bad_epochs = criterion, epoch, 0
        else:
            self.bad_epochs += 1
        self.epoch, self.step, self.sums = epoch + 1, 0, [0.0] * len(self.sums)
        self.finished = self.bad_epochs >= patience or self.epoch >= max_epochs
        return improved

    def to_json(self) -> str:
        """``state.json`` text."""
        return json.dumps({"schema": STATE_SCHEMA, **dataclasses.asdict(self)}, indent=1) + "\n"


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def read_state(stage_dir: Path) -> StageState | None:
    """The saved state of a stage, or None if it never saved one."""
    path = stage_dir / STATE_FILENAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("schema", None)
        return StageState(**data)
    except (ValueError, TypeError) as exc:
        raise ResumeError(f"the saved state of stage {stage_dir.name} is damaged: {exc}") from None


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], str]:
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    for pid, slots in sd["state"].items():
        for name, value in slots.items():
            t = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"opt.{pid}.{name}"] = t.detach().to("cpu").contiguous()
    return tensors, json.dumps(sd["param_groups"])


def _unflatten_optimizer(tensors: dict[str, Tensor], groups_json: str) -> dict[str, Any]:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": json.loads(groups_json)}


def save_stage_checkpoint(
    stage_dir: Path,
    name: str,
    *,
    model: nn.Module,
    card: ModelCard,
    optimizer: torch.optim.Optimizer,
    extra: nn.Module,
    state: StageState,
    is_best: bool,
) -> ModelCard:
    """Write a checkpoint folder, then point ``state.json`` at it, then prune old folders.

    Args:
        stage_dir: the stage folder.
        name: checkpoint folder name under ``ckpt/``.
        model: the network (must match ``card``).
        card: its card with an empty id.
        optimizer: whose moments are saved for ``--resume``.
        extra: other trainable modules (adapters) saved for ``--resume``.
        state: progress to record (``last``/``best`` are updated here).
        is_best: also make it the best checkpoint.

    Returns:
        The saved card (with its id).
    """
    folder = stage_dir / "ckpt" / name
    if folder.exists():  # a leftover of an interrupted save of the same step
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tensors, groups = _flatten_optimizer(optimizer)
    tensors.update(
        {f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra.state_dict().items()}
    )
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {"param_groups": groups}
    atomic_write_bytes(
        folder / TRAIN_STATE_FILENAME, safetensors.torch.save(tensors, metadata=meta)
    )
    saved = save_checkpoint(model, card, folder)
    relative = f"ckpt/{name}"
    previous = {state.last, state.best}
    state.last = relative
    if is_best:
        state.best = relative
    atomic_write_text(stage_dir / STATE_FILENAME, state.to_json())
    for old in previous - {state.last, state.best, ""}:
        shutil.rmtree(stage_dir / old, ignore_errors=True)
    prune_leftovers(stage_dir, state)
    return saved


def prune_leftovers(stage_dir: Path, state: StageState) -> None:
    """Delete checkpoint folders ``state.json`` does not name (interrupted saves)."""
    keep = {state.last, state.best}
    ckpt = stage_dir / "ckpt"
    if ckpt.is_dir():
        for folder in ckpt.iterdir():
            if f"ckpt/{folder.name}" not in keep:
                shutil.rmtree(folder, ignore_errors=True)


def load_train_state(
    folder: Path, *, optimizer: torch.optim.Optimizer, extra: nn.Module, device: torch.device
) -> None:
    """Restore optimiser moments, extra modules and RNG states saved in ``folder``."""
    path = folder / TRAIN_STATE_FILENAME
    try:
        data = path.read_bytes()
        tensors = load_safetensors(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len])["__metadata__"]
    except Exception as exc:  # any damage means the run cannot continue exactly
        raise ResumeError(f"cannot read the training state in {folder.name}: {exc}") from None
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["param_groups"]))
    extra_state = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    extra.load_state_dict(extra_state, strict=True)
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and device.type == "cuda":
        torch.cuda.set_rng_state_all(cuda_states)


class StageCheckpoints:
    """A stage's checkpoints during ``fit``: saved with their events, the best one restored.

    Rank 0 writes and emits ``checkpoint_saved``; the other DDP ranks only track the folder
    names, so every rank restores the same best checkpoint at the end.

    Args:
        stage: stage name (events, card provenance).
        stage_dir: the stage folder.
        model: the network (saved as a model_zoo checkpoint, restored at the end).
        extra: other trainable modules saved with the optimiser state.
        optimizer: whose moments are saved for ``--resume``.
        card: card template of the network (empty id); per-checkpoint metrics are added.
        state: the stage's progress (``last``/``best`` are updated here).
        ctx: run context (rank, event sink).
    """

    def __init__(
        self,
        stage: str,
        stage_dir: Path,
        *,
        model: nn.Module,
        extra: nn.Module,
        optimizer: torch.optim.Optimizer,
        card: ModelCard,
        state: StageState,
        ctx: RunContext,
    ) -> None:
        self.stage = stage
        self.stage_dir = stage_dir
        self.model = model
        self.extra = extra
        self.optimizer = optimizer
        self.card = card
        self.state = state
        self.ctx = ctx

    def save(self, name: str, *, epoch: int, is_best: bool, metrics: Mapping[str, object]) -> None:
        """Save ``ckpt/<name>`` with ``metrics`` in its card's provenance."""
        stage, state, card = self.stage, self.state, self.card
        provenance = card.provenance
        template = card.replace(
            provenance=dataclasses.replace(
                provenance,
                metrics={**provenance.metrics, "stage": stage, "epoch": epoch, **metrics},
            )
        )
        if self.ctx.rank != 0:
            state.last = f"ckpt/{name}"
            state.best = state.last if is_best else state.best
            return
        saved = save_stage_checkpoint(
            self.stage_dir,
            name,
            model=self.model,
            card=template,
            optimizer=self.optimizer,
            extra=self.extra,
            state=state,
            is_best=is_best,
        )
        self.ctx.sink.emit(
            CheckpointSaved(
                run_id=self.ctx.run_id,
                stage=stage,
                epoch=epoch,
                path=f"{stage}/{state.last}",
                weights_sha256=saved.id,
                is_best=is_best,
            )
        )

    def restore_best(self) -> FitResult:
        """Load the best checkpoint's weights into the network (``restore_best_weights``)."""
        best_dir = self.stage_dir / self.state.best
        best_model, best_card = load_checkpoint(best_dir, device="cpu")
        self.model.load_state_dict(best_model.state_dict())
        history = tuple(EpochRecord(**h) for h in self.state.history)
        return FitResult(best_dir=best_dir, card=best_card, history=history)


__all__ = [
    "STATE_FILENAME",
    "ResumeError",
    "StageCheckpoints",
    "StageState",
    "load_train_state",
    "prune_leftovers",
    "read_state",
    "save_stage_checkpoint",
]
