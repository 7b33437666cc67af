"""The Qt side of start-up and shut-down, so the composition root (``app.py``) stays Qt-free."""

from __future__ import annotations

import sys
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from sall_desktop.gui.errors import ErrorRelay, connect_relay, install_error_hooks
from sall_desktop.gui.main_window import MainWindow
from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.theme import apply_theme


def qt_application(name: str, version: str, settings: AppSettings) -> QApplication:
    """The process's QApplication (created once), named and themed."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName(name)
    app.setApplicationVersion(version)
    apply_theme(app, settings.theme)
    return app


def show_startup_error(title: str, message: str) -> None:
    """A blocking message box for a failure before any window exists."""
    QMessageBox.critical(None, title, message)


def run_window(
    app: QApplication, window: MainWindow, folder: str | None, shutdown: Callable[[], object]
) -> int:
    """Show ``window``, open ``folder`` once it has painted, run the event loop, then shut down.

    Errors from background work and uncaught exceptions reach the window's banner.
    """
    relay = ErrorRelay(window)
    connect_relay(relay, lambda message: window.show_error("error", message))
    install_error_hooks(relay)
    window.show()
    # Open the folder on the next turn of the event loop: the window paints first (P7).
    QTimer.singleShot(0, lambda: window.start(folder))
    window.closed.connect(app.quit)
    try:
        code = app.exec()
    finally:
        shutdown()
    return int(code)


def delete_window(window: QWidget) -> None:
    """Delete the window now, dropping results that workers queued for its controllers."""
    shiboken6.delete(window)
