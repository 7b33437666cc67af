"""Batch grading: run one model version over a folder and append its predictions to the store.

Predictions are committed in small batches, so an interrupted run (Ctrl+C, a closed window) keeps
everything already written, and a rerun skips images this model version already graded.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model_zoo.cards import CardError
from model_zoo.checkpoints import CheckpointError
from model_zoo.fileio import atomic_write_text
from model_zoo.predictor import ImagePrediction, Predictor
from model_zoo.prepare import PreparedInputs
from sall_desktop.domain.predictions import Prediction
from sall_desktop.store.repository import LabelRepository
from training.protocol.csvsafe import escape_cell

MODEL_LOAD_ERRORS: tuple[type[Exception], ...] = (CheckpointError, CardError, OSError, ValueError)
"""What loading a model version raises for a bad, missing or tampered folder (not bugs)."""

COMMIT_EVERY = 128
"""Most predictions per store transaction: few fsyncs, little to redo after an interruption.

Each transaction costs the store thread a fixed share besides its rows, taken from the two
cores the forward pass runs on, so fewer, larger transactions leave the model more CPU (see
docs/benchmarks.md, "Figures formerly in docstrings")."""

COMMIT_AFTER_S = 0.5
"""Most seconds of grading per store transaction (whichever of this and :data:`COMMIT_EVERY`
comes first), so a slow model's progress still moves (a heavy model on two cores grades
only a few images a second, far fewer than :data:`COMMIT_EVERY` per transaction)."""


@dataclass(frozen=True, slots=True)
class GradingProgress:
    """Progress of a batch-grading run, reported after each committed batch."""

    done: int
    total: int
    failed: int


@dataclass(frozen=True, slots=True)
class BatchGradingSummary:
    model_id: str
    graded: int
    skipped: int
    failures: tuple[tuple[str, str], ...] = field(default=())
    cancelled: bool = False

    def format(self) -> str:
        state = "cancelled" if self.cancelled else "finished"
        lines = [
            f"batch grading {state}: model {self.model_id[:12]}, {self.graded} graded, "
            f"{self.skipped} already graded by this model, {len(self.failures)} unreadable"
        ]
        lines += [f"  unreadable: {path}: {reason}" for path, reason in self.failures]
        return "\n".join(lines)


def to_prediction(result: ImagePrediction) -> Prediction:
    """The store's value for one model output (probabilities per head, calibrated)."""
    return Prediction(
        image_sha256=result.sha256,
        model_id=result.model_id,
        probabilities={head: out.probabilities for head, out in result.heads.items()},
    )


def grade_paths(
    store: LabelRepository,
    predictor: Predictor,
    paths: Sequence[Path],
    *,
    known_sha256: dict[str, str] | None = None,
    batch_size: int = 8,
    cancel: threading.Event | None = None,
    on_progress: Callable[[GradingProgress], None] | None = None,
    csv_out: Path | None = None,
    inputs: PreparedInputs | None = None,
    skip_graded: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> BatchGradingSummary:
    """Grade ``paths`` with ``predictor`` and append the predictions to ``store``.

    Args:
        store: the label store (predictions are append-only rows keyed by image and model id).
        predictor: the loaded model version.
        paths: image files to grade.
        known_sha256: path -> SHA-256 from the catalogue; images this model already graded are
            skipped without decoding.
        batch_size: images per forward pass.
        cancel: set it to stop after the batch in flight; what was committed stays.
        on_progress: called after each commit.
        csv_out: also write the predictions of this run to a CSV file (atomically, at the end).
        inputs: prepared model inputs (the catalogue's decode leaves them): a file whose input is
            there is not decoded again, and every file decoded is added.
        skip_graded: skip images this model already graded (False: the caller has filtered
            ``paths`` already, and ``known_sha256`` only spares hashing and decoding).
        clock: seconds for :data:`COMMIT_AFTER_S` (injected so that tests drive the time-based
            commit instead of depending on how fast a busy machine grades).

    Example:
        >>> summary = grade_paths(store, Predictor.from_checkpoint(card_dir), paths)
    """
    model_id = predictor.card.id
    known = known_sha256 or {}
    graded: set[str] = set()
    if skip_graded:
        graded = store.graded_images(model_id, [known[str(p)] for p in paths if str(p) in known])
    todo = [path for path in paths if known.get(str(path)) not in graded]
    skipped = len(paths) - len(todo)
    pending: list[Prediction] = []
    written: list[ImagePrediction] = []
    failures: list[tuple[str, str]] = []
    done = 0
    committed = clock()

    def commit() -> None:
        nonlocal committed
        committed = clock()
        if pending:
            store.add_predictions(pending)
            pending.clear()
        if on_progress is not None:
            on_progress(GradingProgress(done, len(todo), len(failures)))

    results = predictor.predict_paths(
        todo, batch_size=batch_size, cancel=cancel, sha256s=known, inputs=inputs
    )
    for result in results:
        done += 1
        if result.error is not None:
            failures.append((result.path, result.error))
        else:
            pending.append(to_prediction(result))
            written.append(result)
        if len(pending) >= COMMIT_EVERY or clock() - committed >= COMMIT_AFTER_S:
            commit()
    commit()
    if csv_out is not None:
        atomic_write_text(csv_out, format_predictions_csv(written, predictor))
    was_cancelled = cancel is not None and cancel.is_set() and done < len(todo)
    return BatchGradingSummary(model_id, len(written), skipped, tuple(failures), was_cancelled)


def format_predictions_csv(results: Sequence[ImagePrediction], predictor: Predictor) -> str:
    """One row per image: path, sha256, model id, per head grade and probabilities."""
    heads = [task.name for task in predictor.card.tasks]
    header = ["file_path", "sha256", "model_id", "referable_dr_probability"]
    for task in predictor.card.tasks:
        header += [f"{task.name}_grade", f"{task.name}_confidence"]
        header += [f"{task.name}_p{i}" for i in range(len(task.classes))]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for result in results:
        referable = result.referable_dr_probability
        row = [escape_cell(result.path), result.sha256, result.model_id]
        row.append("" if referable is None else f"{referable:.6f}")
        for head in heads:
            out = result.heads[head]
            row += [str(out.grade), f"{out.confidence:.6f}"]
            row += [f"{p:.6f}" for p in out.probabilities]
        writer.writerow(row)
    return buffer.getvalue()
