"""Route uncaught exceptions (GUI slots and worker threads) to the user instead of dying (R25).

Pending grades are not at risk: the grading queue keeps them and the window stays up. The
message shown is the exception's text (our errors are written for graders); the traceback goes
to the log, which never receives grading notes or patient data by design.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal

log = logging.getLogger("sall_desktop.gui")


class ErrorRelay(QObject):
    """Receives errors from any thread and re-emits them on the GUI thread."""

    error = Signal(str)

    def report(
        self, kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        log.error("unhandled %s", kind.__name__, exc_info=(kind, value, tb))
        text = str(value).strip() or kind.__name__
        self.error.emit(
            f"Something went wrong ({kind.__name__}): {text}. Your saved grades are safe.",
        )


def install_error_hooks(relay: ErrorRelay) -> None:
    """Install ``sys.excepthook`` and ``threading.excepthook`` that report through ``relay``."""

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        try:
            relay.report(kind, value, tb)
        except Exception:  # the relay itself failed: fall back to stderr if there is one
            if sys.stderr is not None:
                traceback.print_exception(kind, value, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook


def connect_relay(relay: ErrorRelay, show: object) -> None:
    relay.error.connect(show, Qt.ConnectionType.QueuedConnection)
