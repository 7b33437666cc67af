"""One small relay from service threads to the GUI thread, for the workflow windows.

Qt-free services (:mod:`sall_desktop.services.model_versions`,
:mod:`sall_desktop.services.finetune_run`) resolve futures and call listeners on the store
thread; widgets may only be touched on the GUI thread. :class:`Relay` turns either into a call
on the GUI thread, always on a later turn of the event loop (a queued connection), so what a
service reports reaches a view in the order it was reported whichever thread reported it.

``bridges.TaskBridge`` answers with request ids for views that drop stale replies; these windows
want one callback per request and a listener relay, which is all this does.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Qt, Signal

T = TypeVar("T")


class Relay(QObject):
    """Calls back on the GUI thread (the thread this object lives in)."""

    _arrived = Signal(object, object)  # callback, argument; emitted from any thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._arrived.connect(self._call, Qt.ConnectionType.QueuedConnection)

    def deliver(self, callback: Callable[[T], None]) -> Callable[[T], None]:
        """A thread-safe function that runs ``callback(value)`` on the GUI thread."""
        return lambda value: self._arrived.emit(callback, value)

    def watch(
        self,
        future: Future[T],
        on_ok: Callable[[T], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        """Run ``on_ok(result)`` or ``on_error(exception)`` on the GUI thread when ``future``
        completes (a cancelled future calls neither: nobody is waiting for it any more)."""

        def done(f: Future[T]) -> None:
            if f.cancelled():
                return
            error = f.exception()
            if error is not None:
                self._arrived.emit(on_error, error)
            else:
                self._arrived.emit(on_ok, f.result())

        future.add_done_callback(done)

    @staticmethod
    def _call(callback: Any, value: Any) -> None:
        callback(value)


__all__ = ["Relay"]
