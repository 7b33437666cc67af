"""Window sizes: a window opens large enough to show its content, never larger than the screen."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

SCREEN_SHARE = 0.9
"""At most this share of the screen's free area, so a window's frame and title stay on it."""


def open_at(widget: QWidget, width: int, height: int) -> None:
    """Resize ``widget`` to ``width`` x ``height`` pixels, shrunk to fit the primary screen."""
    screen = QGuiApplication.primaryScreen()
    if screen is not None:
        free = screen.availableGeometry()
        width = min(width, int(free.width() * SCREEN_SHARE))
        height = min(height, int(free.height() * SCREEN_SHARE))
    widget.resize(width, height)


__all__ = ["open_at"]
