"""The inference service's bridge: futures and worker callbacks in, queued Qt signals out.

Like the other bridges (``gui.bridges``), every emission is delivered on a later turn of the GUI
event loop, requests carry a request id so stale results can be dropped, and every failure is
emitted (nothing is swallowed).

A running batch's progress and predictions are not signalled from the worker threads: they wait
in a mailbox that the GUI thread empties every :data:`BATCH_UPDATE_MS`. Each queued emission hands
the GIL over and starts GUI work (progress bar, tiles, triage) on the two cores the model's
threads are using; coalesced, the GUI thread spends less CPU time while a folder is graded
(see docs/benchmarks.md, "Figures formerly in docstrings"), and the grid repaints once per
tick instead of once per commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from sall_desktop.gui.bridges import Failure, connect_queued, failure_message, next_request_id
from sall_desktop.gui.relay import Relay
from sall_desktop.services.inference import (
    BatchProgress,
    BatchResult,
    InferenceRequest,
    InferenceService,
    ModelInfo,
    PredictionSummary,
)

BATCH_UPDATE_MS = 250
"""How often a running batch's progress and new predictions reach the GUI."""


class _Mailbox:
    """The newest progress and the predictions committed since the GUI last looked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: BatchProgress | None = None
        self._rows: list[PredictionSummary] = []

    def post_progress(self, progress: BatchProgress) -> None:
        with self._lock:
            self._progress = progress

    def post_predictions(self, rows: list[PredictionSummary]) -> None:
        with self._lock:
            self._rows.extend(rows)

    def take(self) -> tuple[BatchProgress | None, list[PredictionSummary]]:
        with self._lock:
            progress, rows = self._progress, self._rows
            self._progress, self._rows = None, []
        return progress, rows


class InferenceBridge(QObject):
    """Qt face of :class:`InferenceService` (lives in the GUI thread)."""

    loaded = Signal(object)  # ModelInfo
    load_failed = Signal(str)
    result_ready = Signal(object)  # InferenceResult
    failed = Signal(object)  # Failure (context: the InferenceRequest)
    stored = Signal(object)  # StoredPredictions
    batch_progress = Signal(object)  # BatchProgress
    batch_predictions = Signal(object)  # list[PredictionSummary]
    batch_finished = Signal(object)  # BatchResult
    batch_failed = Signal(str)
    _arrived = Signal(str, object)  # kind, payload; from any thread

    def __init__(self, service: InferenceService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self._cancel: threading.Event | None = None
        self.batch_running = False
        self._mailbox = _Mailbox()
        self._batch_updates = QTimer(self)
        self._batch_updates.setInterval(BATCH_UPDATE_MS)
        self._batch_updates.timeout.connect(self._deliver_batch_updates)
        connect_queued(self._arrived, self._deliver)
        self._relay = Relay(self)

    # ------------------------------------------------------------------ requests
    def load(self) -> None:
        """Load the active model (the first call imports torch on the worker)."""
        self._watch(self.service.load(), "loaded", "load_failed")

    def load_stored(self, sha256s: Iterable[str]) -> None:
        """Fetch the active model's stored predictions of these images (emitted as
        :attr:`stored`)."""
        self._watch(self.service.stored_predictions(sha256s), "stored", "load_failed")

    def request(
        self,
        sha256: str,
        path: str,
        *,
        want_cam: tuple[str, int | None] | None = None,
        save: bool = False,
    ) -> int:
        """Ask for one image's prediction (and attention map); returns the request id."""
        info = self.service.info
        request = InferenceRequest(
            next_request_id(), sha256, path, info.id if info else "", want_cam, save
        )
        try:
            future = self.service.submit(request)
        except RuntimeError as exc:  # shut down
            self._arrived.emit("failed", Failure(request.request_id, str(exc), request, exc))
            return request.request_id

        self._relay.watch(
            future,
            lambda result: self._deliver("result_ready", result),
            lambda error: self._deliver(
                "failed", Failure(request.request_id, failure_message(error), request, error)
            ),
        )
        return request.request_id

    def grade_folder(self, paths: list[str], known_sha256: dict[str, str]) -> bool:
        """Start batch grading (False when a run is already going)."""
        if self.batch_running:
            return False
        self._cancel = threading.Event()
        self.batch_running = True
        self._mailbox = mailbox = _Mailbox()  # a fresh one: nothing of an earlier run leaks in
        try:
            future = self.service.grade_folder(
                paths, known_sha256, cancel=self._cancel,
                on_progress=mailbox.post_progress, on_predictions=mailbox.post_predictions,
            )  # fmt: skip
        except RuntimeError as exc:
            self.batch_running = False
            self._arrived.emit("batch_failed", str(exc))
            return False
        self._batch_updates.start()
        self._watch(future, "batch_finished", "batch_failed")
        return True

    def cancel_batch(self) -> None:
        """Stop batch grading after the chunk in flight (acknowledged at once)."""
        if self._cancel is not None:
            self._cancel.set()

    # ------------------------------------------------------------------ delivery
    def _watch(self, future: Future[Any], ok: str, bad: str) -> None:
        self._relay.watch(
            future,
            lambda result: self._deliver(ok, result),
            lambda error: self._deliver(bad, failure_message(error)),
        )

    @Slot()
    def _deliver_batch_updates(self) -> None:
        progress, rows = self._mailbox.take()
        if rows:
            self.batch_predictions.emit(rows)
        if progress is not None:
            self.batch_progress.emit(progress)

    @Slot(str, object)
    def _deliver(self, kind: str, payload: object) -> None:
        if kind in ("batch_finished", "batch_failed"):
            # Every prediction the run committed is in the mailbox by now: shown before the end.
            self._batch_updates.stop()
            self._deliver_batch_updates()
            self.batch_running = False
        getattr(self, kind).emit(payload)


__all__ = ["BatchResult", "InferenceBridge", "ModelInfo"]
