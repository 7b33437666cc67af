"""The inference service's ties to the store: loading the active model version and appending
a grading run's predictions on the store thread (split from :mod:`.inference`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from sall_desktop.domain.predictions import Prediction
from sall_desktop.services.store_executor import StoreExecutor

if TYPE_CHECKING:
    from model_zoo.predictor import Predictor
    from sall_desktop.store import LabelStore


def load_predictor(model: Path, *, device: str | None = None) -> Predictor:
    """Load a model version (a folder with ``card.json`` + ``weights.safetensors``, or the card).

    The weights' SHA-256 is checked against the card before any tensor is read (R12, R13).

    Raises:
        model_zoo.checkpoints.CheckpointError: missing, tampered or mismatched weights.
    """
    from model_zoo.predictor import Predictor

    return Predictor.from_checkpoint(model, device=device)


NO_MODEL = (
    "No model: none is active and the bundled demo model is missing. Import one in Model → Models…"
)
"""The model panel's text when there is nothing to load."""


def active_model_dir(store: StoreExecutor, *, verify: bool = True) -> Path:
    """The verified folder of the active model version (call it off the GUI thread).

    Asks ``services.models.active_model`` on the store thread, which registers and activates the
    bundled demo model on first use and re-hashes the weights (R12), and waits for the answer.

    Args:
        store: the store thread.
        verify: re-hash the weights; False only where nothing is loaded from the folder but
            its card (which preprocessing to prepare inputs for).

    Raises:
        FileNotFoundError: nothing is active and there is no bundled model (:data:`NO_MODEL`).
        sall_desktop.services.models.ModelError: the active version's files are damaged.
    """
    from sall_desktop.services.models import active_model

    version = store.submit(lambda s: active_model(s, verify=verify)).result()
    if version is None:
        raise FileNotFoundError(NO_MODEL)
    return version.folder


class StoreAppender:
    """The part of the label repository ``grade_paths`` uses when the caller has skipped the
    graded images itself (``skip_graded=False``), forwarded to the store thread."""

    def __init__(
        self, store: StoreExecutor, sink: Callable[[Sequence[Prediction]], None] | None
    ) -> None:
        self._store, self._sink = store, sink
        self._commits: list[Future[int]] = []

    def add_predictions(self, predictions: Sequence[Prediction]) -> int:
        rows = list(predictions)
        sink = self._sink

        def commit(store: LabelStore) -> int:
            count = store.add_predictions(rows)
            if sink is not None:  # shown only once stored, and before the commit resolves
                sink(rows)
            return count

        # Not waited for here: the fsync of one commit overlaps the next forward pass (waiting
        # for it costs a light model throughput; see docs/benchmarks.md).
        self._commits.append(self._store.submit(commit))
        return len(rows)

    def check(self) -> None:
        """Raise the first failure among the commits done so far (the batch fails)."""
        finished = [future for future in self._commits if future.done()]
        self._commits = [future for future in self._commits if not future.done()]
        for future in finished:
            future.result()

    def wait(self) -> None:
        """Wait for every commit submitted; raise the first failure (the batch fails)."""
        commits, self._commits = self._commits, []
        for future in commits:
            future.result()


__all__ = ["NO_MODEL", "StoreAppender", "StoreExecutor", "active_model_dir", "load_predictor"]
