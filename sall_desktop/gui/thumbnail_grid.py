"""The virtualised thumbnail grid: a QListView in icon mode over :class:`ImageListModel`."""

from __future__ import annotations

import time
from collections import OrderedDict

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, QTimer
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from sall_desktop.domain.grades import Laterality
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.theme import AMD_COLOURS, DR_COLOURS, UNGRADABLE_COLOUR, Theme
from sall_desktop.services.grading import SaveState
from sall_desktop.services.image_entry import ImageEntry

CAPTION_HEIGHT = 20
TILE_CACHE = 300
FRAME_BUDGET_S = 0.012
"""Time one repaint of the grid may spend drawing new tiles."""
"""Rendered tiles kept (about ten screens; ~50 MB at the largest thumbnail size)."""
PADDING = 6


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a tile: thumbnail, file name, eye, grade chips and the save state."""

    def __init__(self, theme: Theme, thumb_size: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = theme
        self.thumb_size = thumb_size
        self._font = QFont()
        self._font.setPointSizeF(8.5)
        self._bold = QFont(self._font)
        self._bold.setBold(True)
        self._tiles: OrderedDict[tuple[object, ...], QPixmap] = OrderedDict()
        self.frame_deadline = float("inf")
        self.missed = False
        self.model: ImageListModel | None = None

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:  # noqa: N802
        return QSize(self.thumb_size + 2 * PADDING, self.thumb_size + CAPTION_HEIGHT + 2 * PADDING)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        # The model is asked directly (no QVariant round trips): this runs for every visible
        # tile on every repaint.
        entry = self.model.row_entry(index.row()) if self.model is not None else None
        if entry is None:
            return
        rect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        thumb = self.model.thumbnail(entry) if self.model is not None else None
        key = (
            entry.path,
            entry.version,
            thumb.cacheKey() if thumb is not None else 0,
            selected,
            rect.width(),
            rect.height(),
            self.thumb_size,
            self.theme.name,
        )
        # A tile is drawn once per look and then blitted: repainting a scrolled grid costs one
        # call per tile instead of dozens (the GUI thread stays free while thumbnails stream).
        tile = self._tiles.get(key)
        if tile is None and time.perf_counter() > self.frame_deadline:
            # Out of time for this frame: a plain frame now, the real tile on the next pass.
            self.missed = True
            painter.setPen(QColor(self.theme.border))
            painter.setBrush(QColor(self.theme.panel))
            painter.drawRoundedRect(rect.adjusted(2, 2, -2, -2), 5, 5)
            return
        if tile is None:
            tile = QPixmap(rect.size())
            tile.fill(Qt.GlobalColor.transparent)
            tile_painter = QPainter(tile)
            self._render(
                tile_painter, QRect(0, 0, rect.width(), rect.height()), entry, thumb, selected
            )
            tile_painter.end()
            self._tiles[key] = tile
            if len(self._tiles) > TILE_CACHE:
                self._tiles.popitem(last=False)
        else:
            self._tiles.move_to_end(key)
        painter.drawPixmap(rect.topLeft(), tile)

    def _render(
        self,
        painter: QPainter,
        outer: QRect,
        entry: ImageEntry,
        thumb: QImage | None,
        selected: bool,
    ) -> None:
        t = self.theme
        rect = outer.adjusted(2, 2, -2, -2)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(t.accent), 2) if selected else QPen(QColor(t.border), 1))
        painter.setBrush(QColor(t.raised if selected else t.panel))
        painter.drawRoundedRect(rect, 5, 5)
        image_rect = QRect(
            rect.left() + PADDING - 2, rect.top() + PADDING - 2, self.thumb_size, self.thumb_size
        )
        painter.fillRect(image_rect, QColor("#000000"))
        if thumb is not None:
            scaled = thumb.size().scaled(image_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(image_rect.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, thumb)
        else:
            painter.setPen(QColor(t.danger if entry.error or entry.thumbnail_error else t.muted))
            painter.setFont(self._font)
            text = "Cannot read" if entry.error or entry.thumbnail_error else "Loading…"
            painter.drawText(image_rect, Qt.AlignmentFlag.AlignCenter, text)
        self._paint_badges(painter, entry, image_rect)
        caption = QRect(
            rect.left() + PADDING - 2, image_rect.bottom() + 3, self.thumb_size, CAPTION_HEIGHT - 4
        )
        painter.setFont(self._font)
        painter.setPen(QColor(t.text if selected else t.muted))
        name = QFontMetrics(self._font).elidedText(
            entry.name, Qt.TextElideMode.ElideMiddle, caption.width() - 14
        )
        painter.drawText(caption, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        self._paint_save_state(painter, entry, caption)

    def _chip(self, painter: QPainter, x: int, y: int, text: str, colour: str) -> int:
        metrics = QFontMetrics(self._bold)
        width = metrics.horizontalAdvance(text) + 8
        chip = QRect(x, y, width, metrics.height() + 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawRoundedRect(chip, 3, 3)
        painter.setPen(QColor("#101214"))
        painter.setFont(self._bold)
        painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, text)
        return width + 3

    def _paint_badges(self, painter: QPainter, entry: ImageEntry, image_rect: QRect) -> None:
        x, y = image_rect.left() + 4, image_rect.top() + 4
        if entry.laterality in (Laterality.RIGHT, Laterality.LEFT):
            eye = "OD" if entry.laterality is Laterality.RIGHT else "OS"
            self._chip(painter, image_rect.right() - 26, y, eye, "#d0d4da")
        self._paint_model_badge(painter, entry, x, y)
        g = entry.grading
        if g is None:
            return
        y = image_rect.bottom() - QFontMetrics(self._bold).height() - 5
        if not g.gradable:
            self._chip(painter, x, y, "Ungradable", UNGRADABLE_COLOUR)
            return
        if g.dr_grade is not None:
            x += self._chip(painter, x, y, f"DR {g.dr_grade}", DR_COLOURS[g.dr_grade])
        if g.amd_grade is not None:
            self._chip(painter, x, y, f"AMD {g.amd_grade}", AMD_COLOURS[g.amd_grade])

    def _paint_model_badge(self, painter: QPainter, entry: ImageEntry, x: int, y: int) -> None:
        # Model grades sit on top (outlined "M"), the grader's at the bottom: never confused.
        summary = self.model.shown_prediction(entry) if self.model is not None else None
        if summary is None:
            return
        if summary.gate_failed:
            self._chip(painter, x, y, "M ungradable", UNGRADABLE_COLOUR)
            return
        dr, amd = summary.heads.get("dr"), summary.heads.get("amd")
        if dr is not None:
            text = f"M DR {dr.grade}" + ("?" if summary.low_confidence else "")
            x += self._chip(painter, x, y, text, DR_COLOURS[min(dr.grade, len(DR_COLOURS) - 1)])
        if amd is not None:
            self._chip(painter, x, y, f"M AMD {amd.grade}", AMD_COLOURS[min(amd.grade, 3)])

    def _paint_save_state(self, painter: QPainter, entry: ImageEntry, caption: QRect) -> None:
        state = entry.save_state
        if state is None:
            return
        colour = {
            SaveState.SAVED: self.theme.success,
            SaveState.PENDING: self.theme.warning,
            SaveState.FAILED: self.theme.danger,
            SaveState.OUTBOX: self.theme.accent,  # safe on this disk, not yet on the server
        }[state]
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawEllipse(caption.right() - 9, caption.center().y() - 4, 8, 8)


class ThumbnailGrid(QListView):
    """Icon-mode list view; fetches more rows when scrolled near the end."""

    def __init__(
        self, model: ImageListModel, theme: Theme, thumb_size: int, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("grid")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.delegate = ThumbnailDelegate(theme, thumb_size, self)
        self.setItemDelegate(self.delegate)
        self.setModel(model)
        self._model = model
        self.delegate.model = model
        # A child timer (not QTimer.singleShot with a bare callable) dies with the view, so a
        # repaint scheduled just before the window closes never reaches a deleted viewport.
        self._repaint = QTimer(self, singleShot=True, interval=0)
        self._repaint.timeout.connect(self.viewport().update)
        model.more_available.connect(self._maybe_fetch)
        self.verticalScrollBar().valueChanged.connect(self._maybe_fetch)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        # Rendering new tiles is time-sliced: a page of fresh tiles never blocks the GUI thread
        # for more than about one frame budget (P6); the rest follow on the next passes.
        self.delegate.frame_deadline = time.perf_counter() + FRAME_BUDGET_S
        self.delegate.missed = False
        super().paintEvent(event)
        self.delegate.frame_deadline = float("inf")
        if self.delegate.missed and not self._repaint.isActive():
            self._repaint.start()

    def set_thumb_size(self, size: int) -> None:
        self.delegate.thumb_size = size
        self._fit_columns()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        # Spread the columns over the whole width instead of leaving a ragged gap on the right.
        tile = self.delegate.sizeHint(QStyleOptionViewItem(), QModelIndex())
        width = max(1, self.viewport().width() - 2)
        columns = max(1, width // (tile.width() + 4))
        self.setGridSize(QSize(width // columns, tile.height() + 4))

    def set_theme(self, theme: Theme) -> None:
        self.delegate.theme = theme
        self.viewport().update()

    def _maybe_fetch(self) -> None:
        bar = self.verticalScrollBar()
        if bar.value() >= bar.maximum() - self.viewport().height() and self._model.canFetchMore(
            QModelIndex()
        ):
            self._model.fetchMore(QModelIndex())
