"""Window sizes: a window opens large enough to show its content, never larger than the screen,
and a window the grader has moved or resized opens there again next time."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QWidget

from sall_desktop.services.paths import data_dir

SCREEN_SHARE = 0.9
"""At most this share of the screen's free area, so a window's frame and title stay on it."""


def open_at(widget: QWidget, width: int, height: int, *, share: float = SCREEN_SHARE) -> None:
    """Resize ``widget`` to ``width`` x ``height`` pixels, shrunk to fit the primary screen."""
    screen = QGuiApplication.primaryScreen()
    if screen is not None:
        free = screen.availableGeometry()
        width = min(width, int(free.width() * share))
        height = min(height, int(free.height() * share))
    widget.resize(width, height)


def _settings() -> QSettings:
    # The same INI file as AppSettings: Qt shares one in-memory copy per file in a process.
    return QSettings(str(data_dir() / "settings.ini"), QSettings.Format.IniFormat)


class _GeometryKeeper(QObject):
    """Saves a window's geometry whenever it is hidden or closed."""

    def __init__(self, widget: QWidget, key: str) -> None:
        super().__init__(widget)
        self.key = key

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() in (QEvent.Type.Hide, QEvent.Type.Close) and isinstance(watched, QWidget):
            settings = _settings()
            settings.setValue(self.key, watched.saveGeometry())
            settings.sync()
        return False


def remember_geometry(widget: QWidget, name: str, width: int, height: int) -> None:
    """Open ``widget`` where the grader last left it, else at ``width`` x ``height`` (fitted).

    A saved size smaller than what the content needs (a window shrunk by hand, or saved by an
    older version) is grown back, so that nothing starts clipped.
    """
    key = f"geometry/{name}"
    saved = _settings().value(key)
    if not (isinstance(saved, QByteArray) and widget.restoreGeometry(saved)):
        open_at(widget, width, height)
    need = widget.minimumSizeHint()
    if widget.width() < need.width() or widget.height() < need.height():
        widget.resize(max(widget.width(), need.width()), max(widget.height(), need.height()))
    widget.installEventFilter(_GeometryKeeper(widget, key))


def close_on_escape(widget: QWidget) -> QShortcut:
    """Esc closes a plain window (dialogs do it themselves), wherever focus is inside it."""
    shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), widget)
    shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    shortcut.activated.connect(widget.close)
    return shortcut


__all__ = ["close_on_escape", "open_at", "remember_geometry"]
