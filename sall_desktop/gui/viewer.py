"""One image view: QGraphicsView with zoom (wheel, keys), pan (drag, keys), fit and 1:1.

Overlay badges (eye, "enhanced", zoom) are child labels, so they stay put while the image moves.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QStyleOptionGraphicsItem,
    QWidget,
)

MIN_ZOOM = 0.02
MAX_ZOOM = 16.0
WHEEL_STEP = 1.25
PAN_STEP = 0.15
"""Keyboard pan step as a fraction of the viewport."""


class ImageItem(QGraphicsItem):
    """Paints a QImage; a half-size preview (made off the GUI thread) serves zoomed-out views."""

    def __init__(self) -> None:
        super().__init__()
        self._image = QImage()
        self._half: QImage | None = None

    def set_image(self, image: QImage, half: QImage | None = None) -> None:
        self.prepareGeometryChange()
        self._image = image
        self._half = half if half is not None and not half.isNull() else None
        self.update()

    @property
    def image(self) -> QImage:
        return self._image

    def boundingRect(self) -> QRectF:  # noqa: N802
        return QRectF(0, 0, self._image.width(), self._image.height())

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if self._image.isNull():
            return
        scale = painter.worldTransform().m11()
        # Drawing a large image at a small scale filters many source pixels per screen pixel on
        # every repaint; the half-size preview quarters that and looks the same.
        source = self._half if scale < 0.5 and self._half is not None else self._image
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 2.0)
        painter.drawImage(self.boundingRect(), source)


def _badge(parent: QWidget, name: str) -> QLabel:
    label = QLabel(parent)
    label.setObjectName(name)
    label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    label.hide()
    return label


class ImageView(QGraphicsView):
    """Zoomable, pannable view of one image with eye, enhancement and zoom badges."""

    zoom_changed = Signal(float, bool)  # scale (1.0 = one image pixel per screen pixel), fitted

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._item = ImageItem()
        self._scene.addItem(self._item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._fitted = True
        self.eye_badge = _badge(self, "eyeBadge")
        self.enhanced_badge = _badge(self, "enhancedBadge")
        self.zoom_badge = _badge(self, "badge")
        self.caption = _badge(self, "badge")
        self.message = QLabel(self)
        self.message.setObjectName("muted")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.sha256 = ""
        self.shown_enhancement = ""

    # ------------------------------------------------------------------ content
    def set_image(
        self, image: QImage, sha256: str, *, half: QImage | None = None, keep_view: bool = False
    ) -> None:
        """Show ``image``; a new image is fitted, the same image re-enhanced keeps the view."""
        same = keep_view and sha256 == self.sha256 and image.size() == self._item.image.size()
        self.sha256 = sha256
        self._item.set_image(image, half)
        self._scene.setSceneRect(self._item.boundingRect())
        self.message.hide()
        if not same or self._fitted:
            self.fit()
        self.zoom_badge.show()
        self.viewport().update()

    def clear(self, message: str = "") -> None:
        self.sha256 = ""
        self._item.set_image(QImage())
        self._scene.setSceneRect(QRectF())
        for badge in (self.eye_badge, self.enhanced_badge, self.zoom_badge, self.caption):
            badge.hide()
        self.message.setText(message)
        self.message.setVisible(bool(message))
        self._place_overlays()

    def has_image(self) -> bool:
        return not self._item.image.isNull()

    def set_enhanced(self, description: str) -> None:
        """Show the "ENHANCED" badge while the pixels shown are enhanced (empty text hides it)."""
        self.shown_enhancement = description
        self.enhanced_badge.setText(f"ENHANCED · {description}" if description else "")
        self.enhanced_badge.setVisible(bool(description))
        self._place_overlays()

    def set_eye(self, text: str) -> None:
        self.eye_badge.setText(text)
        self.eye_badge.setVisible(bool(text))
        self._place_overlays()

    def set_caption(self, text: str) -> None:
        self.caption.setText(text)
        self.caption.setVisible(bool(text))
        self._place_overlays()

    # ------------------------------------------------------------------ zoom and pan
    @property
    def scale_factor(self) -> float:
        return float(self.transform().m11())

    @property
    def fitted(self) -> bool:
        return self._fitted

    def fit(self) -> None:
        if not self.has_image():
            return
        self.resetTransform()
        self.fitInView(self._item.boundingRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._fitted = True
        self._zoom_updated()

    def actual_size(self) -> None:
        if not self.has_image():
            return
        center = self.mapToScene(self.viewport().rect().center())
        self.resetTransform()
        self.centerOn(center)
        self._fitted = False
        self._zoom_updated()

    def zoom_by(self, factor: float, anchor_under_mouse: bool = False) -> None:
        if not self.has_image():
            return
        target = min(MAX_ZOOM, max(MIN_ZOOM, self.scale_factor * factor))
        if target == self.scale_factor:
            return
        self.setTransformationAnchor(
            QGraphicsView.ViewportAnchor.AnchorUnderMouse
            if anchor_under_mouse
            else QGraphicsView.ViewportAnchor.AnchorViewCenter
        )
        self.scale(target / self.scale_factor, target / self.scale_factor)
        self._fitted = False
        self._zoom_updated()

    def pan(self, dx: float, dy: float) -> None:
        """Pan by a fraction of the viewport (keyboard)."""
        rect = self.viewport().rect()
        center = self.mapToScene(rect.center())
        step = self.mapToScene(rect.width(), rect.height()) - self.mapToScene(0, 0)
        self.centerOn(QPointF(center.x() + dx * step.x(), center.y() + dy * step.y()))

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(WHEEL_STEP**steps, anchor_under_mouse=True)
        event.accept()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fitted:
            self.fit()
        self._place_overlays()

    def _zoom_updated(self) -> None:
        percent = round(self.scale_factor * 100)
        self.zoom_badge.setText(f"Fit · {percent}%" if self._fitted else f"{percent}%")
        self.zoom_badge.setVisible(self.has_image())
        self._place_overlays()
        self.zoom_changed.emit(self.scale_factor, self._fitted)

    def _place_overlays(self) -> None:
        margin = 10
        w, h = self.width(), self.height()
        for badge in (self.eye_badge, self.enhanced_badge, self.zoom_badge, self.caption):
            badge.adjustSize()
        self.eye_badge.move(margin, margin)
        self.enhanced_badge.move(w - self.enhanced_badge.width() - margin, margin)
        self.zoom_badge.move(
            w - self.zoom_badge.width() - margin, h - self.zoom_badge.height() - margin
        )
        self.caption.move(margin, h - self.caption.height() - margin)
        self.message.setGeometry(20, 0, max(0, w - 40), h)
