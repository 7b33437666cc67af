"""What the stages of one run share, and how a stage ends (shared by the loop and the stages)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from model_zoo.cards import ModelCard
from training.engine.runlog import EventSink, StopWatcher
from training.protocol.report import EpochRecord


class Cancelled(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The run stopped on request after saving ``checkpoint`` (relative to the run folder)."""

    def __init__(self, stage: str, checkpoint: str) -> None:
        super().__init__(f"stage {stage} cancelled; resume from {checkpoint or 'the start'}")
        self.stage = stage
        self.checkpoint = checkpoint


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (learning rate too high, broken data)."""


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run shares.

    Attributes:
        run_dir: the run folder.
        run_id: the run id.
        sink: event writer.
        stop: STOP-file watcher.
        device: training device.
        rank: DDP rank (0 without torchrun).
        world_size: DDP processes (1 without torchrun).
    """

    run_dir: Path
    run_id: str
    sink: EventSink
    stop: StopWatcher
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """Whether this process is one of several DDP processes."""
        return self.world_size > 1


@dataclass(frozen=True)
class FitResult:
    """Outcome of a completed stage: the restored best checkpoint and the learning curve."""

    best_dir: Path
    card: ModelCard
    history: tuple[EpochRecord, ...]


__all__ = ["Cancelled", "FitResult", "NonFiniteLossError", "RunContext"]
