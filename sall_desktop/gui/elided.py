"""A one-line label that elides a long value and shows the whole of it as a tooltip.

A QLabel without word wrap clips its text at the right edge, and a clipped value is worse than
none: "DR 0 · AMD 3" cut to "DR 0 · AM" reads as a different answer. This label shows as much as
fits with an ellipsis, and :meth:`full_text` (and the tooltip) keep the whole value.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """``setText`` takes the whole value; ``text()`` is what is shown (it always fits)."""

    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        *,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
    ) -> None:
        super().__init__(parent)
        self._full = ""
        self._tip = ""
        self._mode = mode
        # Horizontally the label takes what it is given and never asks for its text's width,
        # so a long value cannot push its column wider.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def full_text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text
        self._elide()

    def setToolTip(self, tip: str) -> None:  # noqa: N802
        """A tooltip of its own; the whole value is added above it while the text is elided."""
        self._tip = tip
        self._elide()

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802
        hint = super().sizeHint()
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + 4, hint.height())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._elide()  # a style sheet's font arrives after the text

    def _elide(self) -> None:
        width = self.contentsRect().width()
        shown = self.fontMetrics().elidedText(self._full, self._mode, max(0, width))
        super().setText(shown)
        tip = "\n".join(t for t in (self._full if shown != self._full else "", self._tip) if t)
        super().setToolTip(tip)


__all__ = ["ElidedLabel"]
