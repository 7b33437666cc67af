"""PNG plots of a report (matplotlib, Agg backend): learning curves, reliability, confusion.

Every file is written atomically. The Agg backend is selected explicitly so that no GUI backend
(and no Qt) is ever loaded by the training process.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after the backend choice
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from model_zoo.fileio import atomic_write_bytes  # noqa: E402
from model_zoo.metrics import reliability_bins  # noqa: E402
from training.engine.calibration import softmax  # noqa: E402
from training.protocol.report import EpochRecord, HeadReport  # noqa: E402


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def learning_curves(history: Sequence[EpochRecord], path: Path) -> None:
    """Training and validation loss per epoch, one panel per stage."""
    stages = list(dict.fromkeys(h.stage for h in history))
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(4 * max(1, len(stages)), 3.2))
    axes_list = np.atleast_1d(axes).tolist()
    for ax, stage in zip(axes_list, stages, strict=False):
        points = [h for h in history if h.stage == stage]
        epochs = [h.epoch for h in points]
        ax.plot(
            epochs,
            [np.nan if h.train_loss is None else h.train_loss for h in points],
            "o-",
            label="train",
        )
        if any(h.val_loss is not None for h in points):
            ax.plot(
                epochs,
                [np.nan if h.val_loss is None else h.val_loss for h in points],
                "s-",
                label="validation",
            )
        ax.set_title(stage)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
    _save(fig, path)


def reliability_diagram(
    task: str,
    labels: np.ndarray,
    logits: np.ndarray,
    temperature: float,
    path: Path,
    *,
    n_bins: int = 10,
) -> None:
    """Accuracy against confidence in equal-width bins, at T = 1 and at T_cal."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    for t, style, name in ((1.0, "o-", "T = 1"), (temperature, "s-", f"T_cal = {temperature:.2f}")):
        bins = reliability_bins(labels, softmax(logits, t), n_bins, "uniform")
        used = bins.count > 0
        ax.plot(
            bins.confidence[used], bins.accuracy[used], style, label=f"{name} (ECE {bins.ece:.3f})"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{task}: reliability ({n_bins} equal-width bins)")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def confusion_matrix_plot(head: HeadReport, path: Path) -> None:
    """The head's confusion matrix (rows = truth) with counts in the cells."""
    cm = np.asarray(head.confusion, dtype=np.int64)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(head.classes), 0.8 + 0.8 * len(head.classes)))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ticks = range(len(head.classes))
    ax.set_xticks(ticks, head.classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(ticks, head.classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(f"{head.task}: confusion (n = {head.n})")
    _save(fig, path)


__all__ = ["confusion_matrix_plot", "learning_curves", "reliability_diagram"]
