"""Run-folder plumbing: the event sink, human logs, and cooperative cancellation.

* :class:`EventSink` writes each event as one JSON line to stdout (when there is one: a child of a
  windowed frozen app has ``sys.stdout is None``) and appends it to ``run_dir/events.jsonl``.
  Writes are serialised by a lock because the stop watcher thread emits too.
* :func:`run_logging` sends human logs to stderr (when present) and ``run_dir/train.log``.
* :class:`StopWatcher` polls ``run_dir/STOP`` about every 200 ms in a thread, emits
  ``stop_acknowledged`` within one second of the file appearing, and sets a flag the loop checks
  at every step boundary. On POSIX SIGTERM is treated like STOP (docs/architecture.md, Training
  runs). The signal handler only sets a flag: taking the event lock inside a handler could deadlock
  with the interrupted main thread holding it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from training.protocol.events import Event, StopAcknowledged, StopReason, format_event

EVENTS_FILENAME = "events.jsonl"
LOG_FILENAME = "train.log"
STOP_FILENAME = "STOP"
LOGGER_NAME = "training"

_DURABLE = frozenset(
    {"run_started", "checkpoint_saved", "run_finished", "run_cancelled", "run_failed"}
)
"""Events fsynced to disk: a restarted app must see the outcome of a run it did not watch."""


class EventSink:
    """Serialised event writer (stdout + ``events.jsonl``); a no-op on non-zero DDP ranks.

    Args:
        run_dir: run folder holding ``events.jsonl``; ``None`` writes to stdout only.
        run_id: run identifier copied into every event by :meth:`make` callers.
        enabled: False on DDP ranks other than 0.
    """

    def __init__(self, run_dir: Path | None, run_id: str, *, enabled: bool = True) -> None:
        self.run_id = run_id
        self.enabled = enabled
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._subscribers: list[Callable[[Event], None]] = []
        if enabled and run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            # Append, never replace: an app restarted mid-run reads the whole history.
            self._file = (run_dir / EVENTS_FILENAME).open("a", encoding="utf-8", newline="\n")

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` after each emitted event (in-process observers, tests)."""
        self._subscribers.append(callback)

    def emit(self, event: Event) -> None:
        """Write ``event``; output errors (a closed pipe after the GUI died) are ignored."""
        if not self.enabled:
            return
        line = format_event(event) + "\n"
        with self._lock:
            stream = sys.stdout  # looked up each time: it may be None or replaced
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.write(line)
                    stream.flush()
            if self._file is not None:
                self._file.write(line)
                self._file.flush()
                if event.EVENT in _DURABLE:
                    os.fsync(self._file.fileno())
        for callback in self._subscribers:
            callback(event)

    def close(self) -> None:
        """Close ``events.jsonl``."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class _Formatter(logging.Formatter):
    def __init__(self, rank: int) -> None:
        prefix = f"[rank {rank}] " if rank else ""
        super().__init__(f"%(asctime)s %(levelname)s {prefix}%(message)s", "%Y-%m-%d %H:%M:%S")


@contextlib.contextmanager
def run_logging(run_dir: Path | None, *, rank: int = 0) -> Iterator[logging.Logger]:
    """Attach stderr and ``run_dir/train.log`` handlers to the ``training`` logger.

    Rank 0 writes the log file; other ranks log to stderr only. The handlers are removed on exit,
    so several runs in one process (tests) do not duplicate lines.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers: list[logging.Handler] = []
    if sys.stderr is not None:
        handlers.append(logging.StreamHandler(sys.stderr))
    if run_dir is not None and rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / LOG_FILENAME, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(_Formatter(rank))
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


class StopWatcher:
    """Watch for ``run_dir/STOP`` (and SIGTERM) and expose a stop flag.

    Use as a context manager around the run. :attr:`requested` is checked by the loop at step
    boundaries; the ``stop_acknowledged`` event is emitted from the watcher thread, so it does
    not wait for a long step to finish.

    Args:
        run_dir: folder the GUI creates ``STOP`` in; ``None`` watches signals only.
        sink: where ``stop_acknowledged`` goes.
        poll_s: polling period in seconds.
        handle_sigterm: install a SIGTERM handler (POSIX, main thread only).
    """

    def __init__(
        self,
        run_dir: Path | None,
        sink: EventSink,
        *,
        poll_s: float = 0.2,
        handle_sigterm: bool = True,
    ) -> None:
        self._path = run_dir / STOP_FILENAME if run_dir is not None else None
        self._sink = sink
        self._poll_s = poll_s
        self._handle_sigterm = handle_sigterm
        self._requested = threading.Event()
        self._signalled = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler: Callable[[int, types.FrameType | None], object] | int | None = None
        self._installed = False
        self.reason: StopReason | None = None

    @property
    def requested(self) -> bool:
        """True once a stop was acknowledged."""
        return self._requested.is_set()

    def request(self, reason: StopReason) -> None:
        """Acknowledge a stop now (idempotent): emit ``stop_acknowledged`` and set the flag."""
        if self._requested.is_set():
            return
        self.reason = reason
        self._sink.emit(StopAcknowledged(run_id=self._sink.run_id, reason=reason))
        self._requested.set()

    def _on_sigterm(self, signum: int, frame: types.FrameType | None) -> None:
        self._signalled.set()

    def _watch(self) -> None:
        while not self._closing.wait(self._poll_s):
            if self._signalled.is_set():
                self.request("signal")
            elif self._path is not None and self._path.exists():
                self.request("stop_file")
            if self._requested.is_set():
                return

    def __enter__(self) -> StopWatcher:
        if (
            self._handle_sigterm
            and os.name == "posix"
            and threading.current_thread() is threading.main_thread()
        ):
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        self._thread = threading.Thread(target=self._watch, name="stop-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
        if self._installed:
            # None means "not installed from Python": the default action is the closest match.
            previous = self._previous_handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            self._installed = False


__all__ = [
    "EVENTS_FILENAME",
    "LOGGER_NAME",
    "LOG_FILENAME",
    "STOP_FILENAME",
    "EventSink",
    "StopWatcher",
    "run_logging",
]
