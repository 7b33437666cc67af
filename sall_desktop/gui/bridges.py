"""Bridges: one QObject per Qt-free service, turning future callbacks into queued Qt signals.

Services return ``concurrent.futures.Future`` objects and call listeners on their own threads;
they never touch Qt. Each bridge lives in the GUI thread and re-emits results as signals. The
emissions happen on worker threads, so Qt queues them to the GUI thread; connections are made
``QueuedConnection`` explicitly so that even a result that is already available (a cache hit) is
delivered on the next turn of the event loop, after the requester stored its request id.

Every request gets a request id; a view keeps the id of the request it still wants and drops
results carrying any other (stale) id. Every failure is emitted on a ``failed`` signal: background
errors always reach the user.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage

from sall_desktop.gui.relay import Relay
from sall_desktop.imaging.enhance import Enhancement
from sall_desktop.services.catalogue import (
    DescribedFile,
    FolderCatalogue,
    FoundFile,
)
from sall_desktop.services.decode_pool import DecodePool
from sall_desktop.services.grading import GradingEvent, GradingService
from sall_desktop.services.images import ImageService, ViewImage
from sall_desktop.services.scan_plan import InputsProvider, start_scan, watch_scan
from sall_desktop.services.thumbnails import Thumbnail, ThumbnailService

_request_ids = itertools.count(1)


def next_request_id() -> int:
    """A process-wide unique request id (ids never repeat, so a stale result never matches)."""
    return next(_request_ids)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An independent ``Format_RGB32`` copy of an H×W×3 uint8 RGB array (any thread).

    RGB32 is the raster engine's native format: painting it needs no per-paint conversion.
    """
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    wrapped = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return wrapped.convertToFormat(QImage.Format.Format_RGB32)


def failure_message(error: BaseException) -> str:
    """The grader-readable text of an error (our errors' ``str`` is written for graders)."""
    text = str(error).strip()
    return text if text else type(error).__name__


def connect_queued(signal: Any, slot: Callable[..., Any]) -> None:
    """Connect ``signal`` to ``slot`` with a queued connection (see the module docstring)."""
    signal.connect(slot, Qt.ConnectionType.QueuedConnection)


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished background request: its id, what the requester attached, and the value."""

    request_id: int
    value: Any
    context: Any = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed background request, with a grader-readable message."""

    request_id: int
    message: str
    context: Any = None
    error: BaseException | None = None


class TaskBridge(QObject):
    """Generic bridge for one-off background jobs (export, import, demo, loading a grader).

    Results are always delivered on a later turn of the GUI event loop, even for a future that
    is already done, so the requester has stored the request id before its reply arrives.
    """

    finished = Signal(object)  # Reply
    failed = Signal(object)  # Failure
    progress = Signal(int, int, int)  # request id, done, total

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._relay = Relay(self)

    def track(self, future: Future[Any], context: Any = None) -> int:
        """Emit ``finished``/``failed`` when ``future`` completes; return its request id."""
        request_id = next_request_id()
        self._relay.watch(
            future,
            lambda result: self.finished.emit(Reply(request_id, result, context)),
            lambda error: self.failed.emit(
                Failure(request_id, failure_message(error), context, error)
            ),
        )
        return request_id

    def progress_callback(self, request_id: int) -> Callable[[int, int], None]:
        """A thread-safe ``(done, total)`` callback that re-emits as :attr:`progress`."""
        return lambda done, total: self.progress.emit(request_id, done, total)


class GradingBridge(QObject):
    """Re-emits :class:`GradingEvent` objects of the grading service on the GUI thread."""

    changed = Signal(object)  # GradingEvent
    failed = Signal(str)

    def __init__(self, service: GradingService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        service.add_listener(self._on_event)

    def _on_event(self, event: GradingEvent) -> None:
        self.changed.emit(event)
        if event.error:
            self.failed.emit(event.error)


class ThumbnailBridge(QObject):
    """Requests thumbnails and delivers them as QImages in batches on the GUI thread.

    Results are buffered and flushed by one queued signal, so thousands of thumbnails arriving
    while the GUI is busy cost one event, not thousands (P6).
    """

    ready = Signal(object)  # list[tuple[str, QImage]]
    failed = Signal(object)  # list[tuple[str, str]] (sha256, message)
    _flush_requested = Signal()

    def __init__(self, service: ThumbnailService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self._lock = threading.Lock()
        self._done: list[tuple[str, QImage]] = []
        self._errors: list[tuple[str, str]] = []
        self._flush_pending = False
        connect_queued(self._flush_requested, self._flush)

    def request(self, sha256: str, path: str, width: int = 0, height: int = 0) -> None:
        future = self.service.request(sha256, path, width=width, height=height)
        future.add_done_callback(lambda f: self._arrived(sha256, f))

    def cancel_pending(self) -> None:
        self.service.cancel_pending()

    def _arrived(self, sha256: str, future: Future[Thumbnail]) -> None:
        try:
            image = rgb_to_qimage(future.result().rgb)
        except CancelledError:
            return
        except Exception as exc:  # reported on the tile and in the status bar
            item: tuple[str, str] | None = (sha256, failure_message(exc))
        else:
            item = None
        with self._lock:
            if item is None:
                self._done.append((sha256, image))
            else:
                self._errors.append(item)
            if self._flush_pending:
                return
            self._flush_pending = True
        self._flush_requested.emit()

    @Slot()
    def _flush(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            errors, self._errors = self._errors, []
            self._flush_pending = False
        if done:
            self.ready.emit(done)
        if errors:
            self.failed.emit(errors)


@dataclass(frozen=True, slots=True)
class ShownImage:
    """An image ready for a viewer slot: the Qt image plus what it shows."""

    request_id: int
    slot: str
    sha256: str
    qimage: QImage
    half: QImage | None
    enhancement: Enhancement
    width: int
    height: int


class ImageBridge(QObject):
    """Viewer requests: decode/enhance off-thread, convert to QImage off-thread, deliver by id."""

    shown = Signal(object)  # ShownImage
    failed = Signal(object)  # Failure (context: slot name)

    def __init__(self, service: ImageService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self._lock = threading.Lock()
        # The QImage conversion of recently decoded images, so a pre-decoded image is shown
        # without any pixel work on the GUI thread.
        self._converted: dict[tuple[str, Enhancement], tuple[QImage, QImage | None]] = {}
        self._order: list[tuple[str, Enhancement]] = []

    def request(self, slot: str, sha256: str, path: str, enhancement: Enhancement) -> int:
        request_id = next_request_id()
        future = self.service.view(sha256, path, enhancement)

        def done(f: Future[ViewImage]) -> None:
            if f.cancelled():
                return
            error = f.exception()
            if error is not None:
                self.failed.emit(Failure(request_id, failure_message(error), slot, error))
                return
            view = f.result()
            qimage, half = self._qimage(view)
            self.shown.emit(
                ShownImage(
                    request_id,
                    slot,
                    sha256,
                    qimage,
                    half,
                    view.enhancement,
                    view.width,
                    view.height,
                ),
            )

        future.add_done_callback(done)
        return request_id

    def prefetch(self, sha256: str, path: str, enhancement: Enhancement) -> None:
        future = self.service.view(sha256, path, enhancement)
        future.add_done_callback(
            lambda f: None if f.cancelled() or f.exception() else self._qimage(f.result())
        )

    def _qimage(self, view: ViewImage) -> tuple[QImage, QImage | None]:
        key = (view.sha256, view.enhancement)
        with self._lock:
            cached = self._converted.get(key)
        if cached is not None:
            return cached
        qimage = rgb_to_qimage(view.rgb)
        half = None
        if min(view.width, view.height) > 1024:
            half = qimage.scaled(
                view.width // 2,
                view.height // 2,
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        with self._lock:
            self._converted[key] = (qimage, half)
            if key not in self._order:
                self._order.append(key)
            while len(self._order) > 8:
                self._converted.pop(self._order.pop(0), None)
        return qimage, half


class CatalogueBridge(QObject):
    """Runs a :class:`FolderCatalogue` scan; delivers found and described files in batches.

    Args:
        decoder: the decode processes that hash and read each file (default: the catalogue's
            own threads, at background priority).
        inputs: where each scan leaves the active model's prepared inputs (asked once per
            scan, on a thread of its own), so grading need not decode the files again.
    """

    found = Signal(int, object)  # scan id, list[FoundFile]
    described = Signal(int, object)  # scan id, list[DescribedFile]
    finished = Signal(int)  # scan id
    failed = Signal(int, str)
    _flush_requested = Signal()

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        decoder: DecodePool | None = None,
        inputs: InputsProvider | None = None,
    ) -> None:
        super().__init__(parent)
        self._decoder = decoder
        self._inputs = inputs
        self._lock = threading.Lock()
        self._found: list[FoundFile] = []
        self._described: list[DescribedFile] = []
        self._flush_pending = False
        self._catalogue: FolderCatalogue | None = None
        self._watcher: threading.Thread | None = None
        self.scan_id = 0
        connect_queued(self._flush_requested, self._flush)

    def start(self, folder: str, *, workers: int = 2) -> int:
        """Cancel any running scan and scan ``folder``; return the new scan id."""
        self.stop()
        self.scan_id = scan_id = next_request_id()
        self._catalogue = start_scan(
            folder,
            on_found=lambda batch: self._buffer(scan_id, found=batch),
            on_described=lambda item: self._buffer(scan_id, described=[item]),
            decoder=self._decoder,
            inputs=self._inputs,
            workers=workers,
        )

        def ended(error: BaseException | None) -> None:
            if error is not None:
                self._buffer(scan_id, error=failure_message(error))
            self._buffer(scan_id, finished=True)

        self._watcher = watch_scan(self._catalogue, ended)
        return scan_id

    def stop(self) -> None:
        """Cancel the running scan and wait for its threads (bounded by one file's work)."""
        self.scan_id = 0  # late callbacks of the cancelled scan are ignored from now on
        if self._catalogue is not None:
            self._catalogue.cancel()
        if self._watcher is not None:
            self._watcher.join()
        self._catalogue = None
        self._watcher = None
        with self._lock:
            self._found.clear()
            self._described.clear()

    def _buffer(
        self,
        scan_id: int,
        *,
        found: list[FoundFile] | None = None,
        described: list[DescribedFile] | None = None,
        finished: bool = False,
        error: str = "",
    ) -> None:
        if scan_id != self.scan_id:
            return
        if finished or error:
            # Deliver what is buffered first so "finished" really comes last.
            self._flush_requested.emit()
            if error:
                self.failed.emit(scan_id, error)
            if finished:
                self.finished.emit(scan_id)
            return
        with self._lock:
            self._found.extend(found or ())
            self._described.extend(described or ())
            if self._flush_pending:
                return
            self._flush_pending = True
        self._flush_requested.emit()

    @Slot()
    def _flush(self) -> None:
        with self._lock:
            found, self._found = self._found, []
            described, self._described = self._described, []
            self._flush_pending = False
        if found:
            self.found.emit(self.scan_id, found)
        if described:
            self.described.emit(self.scan_id, described)
