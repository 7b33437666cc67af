"""Python's full garbage collection runs when the grader pauses, not while they work (R24, P6).

A full (generation 2) collection walks every tracked object while holding the GIL. With a big folder
streaming in, one holds the GUI thread longer than it may stall, whichever thread triggered it (see
docs/benchmarks.md, "Figures formerly in docstrings"). Young generations stay automatic (they are
short). The oldest is collected by a timer once input has paused, or after ``max_defer_s`` at the
latest, so cyclic garbage cannot grow without bound in a session with no pauses. Objects built at
start-up live as long as the app and are frozen out of every collection; so are an open folder's,
once its scan is done (:func:`settle`), until another folder opens (:func:`release`): freezing them
makes a full collection several times shorter (``benchmarks/bench_triage.py``; docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

IDLE_S = 1.5
"""Input pause after which a due full collection runs."""
MAX_DEFER_S = 120.0
"""A full collection never waits longer than this, pauses or not."""
CHECK_MS = 500
_NEVER = 1_000_000_000  # threshold of generation 2 while deferred: automatic runs never trigger

_INPUT_EVENTS = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.Wheel,
    }
)


def settle() -> None:
    """The open folder's objects are in place (its scan is done, or the active model's stored
    predictions arrived): they live as long as the folder, so leave them out of later full
    collections."""
    gc.freeze()


def release() -> None:
    """The open folder is going away: hand every frozen object back to the collector, so the
    reference cycles of the folder that is gone are reclaimed by the next full collection."""
    gc.unfreeze()


class IdleCollector(QObject):
    """Holds full garbage collections back until input pauses.

    Args:
        parent: owner (the main window); the policy ends with :meth:`stop`.
        idle_s: pause in input before a due collection runs.
        max_defer_s: the longest a due collection waits.
        clock: seconds, for the pause and the deferral (injected so that tests drive time
            instead of pausing for real on a machine that may be busy).
    """

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        idle_s: float = IDLE_S,
        max_defer_s: float = MAX_DEFER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(parent)
        self.idle_s, self.max_defer_s = idle_s, max_defer_s
        self._clock = clock
        self.collections = 0
        self._saved: tuple[int, int, int] | None = None
        self._last_input = self._last_full = clock()
        self._timer = QTimer(self, interval=CHECK_MS)
        self._timer.timeout.connect(self._maybe_collect)

    def start(self) -> None:
        """Freeze what exists now and defer full collections (idempotent)."""
        if self._saved is not None:
            return
        gc.freeze()
        self._saved = gc.get_threshold()
        young, middle, _ = self._saved
        gc.set_threshold(young, middle, _NEVER)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        self._timer.start()

    def stop(self) -> None:
        """Restore Python's own schedule and unfreeze the start-up objects."""
        if self._saved is None:
            return
        self._timer.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        gc.set_threshold(*self._saved)
        self._saved = None
        gc.unfreeze()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() in _INPUT_EVENTS:
            self._last_input = self._clock()
        return False

    def _maybe_collect(self) -> None:
        if self._saved is None:
            return
        now = self._clock()
        if gc.get_count()[2] < self._saved[2]:
            return  # not due yet by Python's own schedule (generation-1 runs since the last)
        idle = now - self._last_input >= self.idle_s
        if idle or now - self._last_full >= self.max_defer_s:
            gc.collect(2)
            self._last_full = now
            self.collections += 1
