"""The attention overlay: the model's attention map of one head and class over the current image
(LayerCAM on a fine stage for the demo model), toggled with A.

Maps are computed on demand on the inference thread. Each request carries a request id; a map
arriving for an image the grader has left (or for a head/class no longer chosen) is dropped.
Opacity is a painting property (no recomputation); a colour-map change recolours the cached
map. In blind-first mode the overlay stays hidden until the grader's grade is saved; where the
model's output is withheld (second grading is blind) it stays hidden.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsPixmapItem

from sall_desktop.gui.bridges import Failure
from sall_desktop.gui.inference_bridge import InferenceBridge
from sall_desktop.gui.model_panel import ModelPanel, class_name, head_name
from sall_desktop.gui.viewer import ImageView
from sall_desktop.gui.viewer_panel import ViewerPanel
from sall_desktop.services.attention import colormaps, heat_rgba
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.inference import InferenceResult

CACHE = 16
"""Attention maps kept (image, head, class) so going back to an image is instant."""

Key = tuple[str, str, int | None]


def _rgba_to_qimage(rgba: npt.NDArray[np.uint8]) -> QImage:
    """An independent premultiplied-ARGB copy of an H×W×4 uint8 RGBA array (the painter's own
    format for translucent pixmaps)."""
    rgba = np.ascontiguousarray(rgba)
    height, width = rgba.shape[:2]
    wrapped = QImage(rgba.data, width, height, 4 * width, QImage.Format.Format_RGBA8888)
    return wrapped.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)


class OverlayController(QObject):
    """Owns the overlay items in the image views and the on-demand CAM requests."""

    overlay_shown = Signal(str, float)  # sha256, seconds from request to shown
    error = Signal(str)

    def __init__(
        self,
        viewer: ViewerPanel,
        panel: ModelPanel,
        bridge: InferenceBridge,
        revealed: Callable[[ImageEntry], bool],
        *,
        opacity: float = 0.45,
        colormap: str = "jet",
        why_hidden: Callable[[ImageEntry], str] = lambda _entry: "",
    ) -> None:
        super().__init__(panel)
        self.viewer, self.panel, self.bridge = viewer, panel, bridge
        self.revealed, self.why_hidden = revealed, why_hidden
        self.visible = False
        self.head = "dr"
        self.target: int | None = None
        self.opacity = opacity
        self.colormap = colormap if colormap in colormaps() else colormaps()[0]
        self.entry: ImageEntry | None = None
        self.wanted = 0  # the request id still wanted (0: none)
        self._wanted_key: Key | None = None
        self._asked_at = 0.0
        self._cache: OrderedDict[Key, tuple[npt.NDArray[np.float32], int]] = OrderedDict()
        self._items: dict[int, QGraphicsPixmapItem] = {}
        self.dropped = 0  # stale results dropped (tests)
        self.shown_key: Key | None = None
        panel.opacity.setValue(round(opacity * 100))
        panel.colormap_combo.setCurrentIndex(max(0, panel.colormap_combo.findData(self.colormap)))
        panel.overlay_toggled.connect(self.set_visible)
        panel.overlay_target_changed.connect(self.set_target)
        panel.opacity_changed.connect(self.set_opacity)
        panel.colormap_changed.connect(self.set_colormap)
        bridge.result_ready.connect(self._on_result)
        bridge.failed.connect(self._on_failed)

    # ------------------------------------------------------------------ commands
    def toggle(self) -> None:
        """The A key."""
        self.panel.overlay_button.setChecked(not self.visible)  # emits overlay_toggled

    def cycle_head(self) -> None:
        """Shift+A: explain the next head (DR -> AMD -> DR)."""
        combo = self.panel.head_combo
        if combo.count():
            combo.setCurrentIndex((combo.currentIndex() + 1) % combo.count())

    def set_visible(self, on: bool) -> None:
        self.visible = on
        if self.panel.overlay_button.isChecked() != on:
            self.panel.overlay_button.setChecked(on)
        self.refresh()

    def set_target(self, head: str, target: int | None) -> None:
        self.head, self.target = head, target
        self.refresh()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        for item in self._items.values():
            item.setOpacity(opacity)

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self.shown_key = None
        self.refresh()

    def clear(self) -> None:
        """Forget computed maps (a new model version explains differently)."""
        self._cache.clear()

    def set_entry(self, entry: ImageEntry | None) -> None:
        """The grader moved: forget the request in flight (its answer will be dropped)."""
        if entry is not self.entry:
            self.entry = entry
            self.wanted, self._wanted_key = 0, None
            self._hide_items()
            self.shown_key = None
        self.refresh()

    # ------------------------------------------------------------------ state
    def refresh(self) -> None:
        """Show, request or hide the overlay for the current image and settings."""
        entry = self.entry
        if not self.visible or entry is None or not entry.gradable_image:
            self._hide_items()
            self.panel.show_overlay_state("")
            return
        if not self.revealed(entry):
            self._hide_items()
            why = self.why_hidden(entry) or "Hidden until you save your grade (blind-first)."
            self.panel.show_overlay_state(why)
            return
        if self.bridge.service.info is None:
            self.panel.show_overlay_state("Waiting for the model…")
            return
        key: Key = (entry.sha256, self.head, self.target)
        cached = self._cache.get(key)
        if cached is not None:
            self._show(key, *cached)
            return
        if self._wanted_key == key and self.wanted:
            return  # already asked
        self._hide_items()
        self._asked_at = time.perf_counter()
        self._wanted_key = key
        self.wanted = self.bridge.request(
            entry.sha256, entry.path, want_cam=(self.head, self.target)
        )
        self.panel.show_overlay_state("Computing attention…")

    def _on_result(self, result: InferenceResult) -> None:
        if result.cam is None:
            return  # a prediction without a map: not ours
        key: Key = (result.sha256, result.cam_head, self._requested_target(result))
        if result.request_id != self.wanted:
            self.dropped += 1  # the grader left that image (or changed head/class)
            return
        self.wanted = 0
        self._cache[key] = (result.cam, result.cam_class)
        while len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        latency = time.perf_counter() - self._asked_at
        if self._show(key, result.cam, result.cam_class):
            self.overlay_shown.emit(result.sha256, latency)

    def _requested_target(self, result: InferenceResult) -> int | None:
        return self._wanted_key[2] if self._wanted_key is not None else result.cam_class

    def _on_failed(self, failure: Failure) -> None:
        if failure.request_id == self.wanted:
            self.wanted = 0
            self.panel.show_overlay_state(f"No attention map: {failure.message}")
            self.error.emit(f"The attention map could not be computed: {failure.message}")

    # ------------------------------------------------------------------ painting
    def _view_of(self, sha256: str) -> ImageView | None:
        for view in (self.viewer.left_view, self.viewer.right_view):
            if view.isVisible() and view.has_image() and view.sha256 == sha256:
                return view
        return None

    def _show(self, key: Key, cam: npt.NDArray[np.float32], cls: int) -> bool:
        entry = self.entry
        view = self._view_of(key[0])
        if entry is None or view is None or not self.visible:
            self.panel.show_overlay_state("Attention ready; waiting for the image…")
            return False
        if self.shown_key != key or id(view) not in self._items:
            self._hide_items()
            item = self._item_for(view)
            image = _rgba_to_qimage(heat_rgba(cam, self.colormap))
            item.setPixmap(QPixmap.fromImage(image))
            rect = view.sceneRect()
            item.setTransform(
                QTransform.fromScale(rect.width() / image.width(), rect.height() / image.height())
            )
            item.setOpacity(self.opacity)
            item.show()
            self.shown_key = key
        self._items[id(view)].show()
        self.panel.show_overlay_state(
            f"Attention for {head_name(key[1])} class {cls} · {class_name(key[1], cls)}"
        )
        return True

    def reattach(self, sha256: str) -> None:
        """The viewer put new pixels on screen (a new image or enhancement): redraw on top."""
        if self.entry is not None and self.entry.sha256 == sha256:
            self.shown_key = None
            self.refresh()

    def _item_for(self, view: ImageView) -> QGraphicsPixmapItem:
        item = self._items.get(id(view))
        if item is None:
            item = QGraphicsPixmapItem()
            item.setZValue(10)
            item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
            view.scene().addItem(item)
            self._items[id(view)] = item
        return item

    def _hide_items(self) -> None:
        for item in self._items.values():
            item.hide()

    @property
    def overlay_visible(self) -> bool:
        """An overlay is painted over the current image now."""
        return any(item.isVisible() for item in self._items.values())
