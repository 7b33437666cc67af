"""Paints a patient row: the id, the eyes present and a small grading-progress bar."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from sall_desktop.gui.patient_model import STATS_ROLE, PatientStats
from sall_desktop.gui.theme import Theme

ROW_HEIGHT = 40


class PatientDelegate(QStyledItemDelegate):
    """Two lines per patient: bold id, then "graded/images · OD n OS n" and a progress bar."""

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = theme
        self._title = QFont()
        self._title.setBold(True)
        self._small = QFont()
        self._small.setPointSizeF(8.0)

    def sizeHint(  # noqa: N802
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(160, ROW_HEIGHT)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        value = index.data(STATS_ROLE)
        if not isinstance(value, tuple):
            return
        title, stats = value
        assert isinstance(stats, PatientStats)
        t = self.theme
        rect = option.rect.adjusted(2, 1, -2, -1)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if selected:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(t.raised))
            painter.drawRoundedRect(rect, 4, 4)
            painter.fillRect(
                QRect(rect.left(), rect.top() + 4, 3, rect.height() - 8), QColor(t.accent)
            )
        text = rect.adjusted(10, 3, -8, -3)
        painter.setFont(self._title)
        painter.setPen(QColor(t.text))
        # A narrow column elides a long id or count instead of clipping it under the bar.
        painter.drawText(
            QRect(text.left(), text.top(), text.width(), 16),
            Qt.AlignmentFlag.AlignVCenter,
            QFontMetrics(self._title).elidedText(
                str(title), Qt.TextElideMode.ElideMiddle, text.width()
            ),
        )
        painter.setFont(self._small)
        painter.setPen(QColor(t.muted))
        eyes = " ".join(
            p
            for p in (
                f"OD {stats.right}" if stats.right else "",
                f"OS {stats.left}" if stats.left else "",
            )
            if p
        )
        counts = f"{stats.graded}/{stats.images} graded" + (f" · {eyes}" if eyes else "")
        painter.drawText(
            QRect(text.left(), text.top() + 17, text.width() - 44, 14),
            Qt.AlignmentFlag.AlignVCenter,
            QFontMetrics(self._small).elidedText(
                counts, Qt.TextElideMode.ElideRight, text.width() - 44
            ),
        )
        bar = QRect(text.right() - 36, text.top() + 21, 36, 5)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(t.border))
        painter.drawRoundedRect(bar, 2, 2)
        if stats.images:
            done = QRect(
                bar.left(),
                bar.top(),
                round(bar.width() * stats.graded / stats.images),
                bar.height(),
            )
            painter.setBrush(QColor(t.success if stats.graded == stats.images else t.accent))
            painter.drawRoundedRect(done, 2, 2)
        painter.restore()
