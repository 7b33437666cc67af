"""The viewer controller: asks the image bridge for the current image (and the other eye of the
patient), drops results of requests that are no longer current, applies the enhancement off the
GUI thread, shows the "ENHANCED" badge only while enhanced pixels are on screen, and pre-decodes
the next image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QObject, Qt, Signal

from sall_desktop.domain.grades import Laterality
from sall_desktop.gui.bridges import Failure, ImageBridge, ShownImage
from sall_desktop.gui.viewer import ImageView
from sall_desktop.gui.viewer_panel import EYE_TEXT, ViewerPanel
from sall_desktop.imaging.enhance import Enhancement, next_preset
from sall_desktop.services.image_entry import ImageEntry


class ViewerController(QObject):
    """Decides what each view shows and keeps only current results."""

    failed = Signal(str)
    image_shown = Signal(str)  # sha256 of the current image once its pixels are on screen

    def __init__(self, panel: ViewerPanel, bridge: ImageBridge, *, show_pair: bool = True) -> None:
        super().__init__(panel)
        self.panel = panel
        self.bridge = bridge
        self.enhancement = Enhancement()
        self.show_pair = show_pair
        self.current: ImageEntry | None = None
        self.partner: ImageEntry | None = None
        self._wanted: dict[str, int] = {}  # view slot -> request id still wanted
        self._shown_sha: dict[str, str] = {}
        panel.pair.setChecked(show_pair)
        bridge.shown.connect(self._on_shown, Qt.ConnectionType.QueuedConnection)
        bridge.failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)
        panel.enhancement_edited.connect(self.set_enhancement)
        panel.pair_toggled.connect(self.set_show_pair)
        commands = self.handlers()
        panel.fit.clicked.connect(commands["fit"])
        panel.actual.clicked.connect(commands["actual_size"])

    # ------------------------------------------------------------------ API
    def show(
        self,
        entry: ImageEntry | None,
        partner: ImageEntry | None = None,
        upcoming: list[ImageEntry] | None = None,
    ) -> None:
        """Show ``entry`` (and ``partner``, the other eye, when shown); pre-decode ``upcoming``."""
        self.current = entry
        self.partner = partner if self.show_pair else None
        self._refresh(keep_view=False)
        for item in upcoming or ():
            if item.record is not None and not item.error:
                self.bridge.prefetch(item.sha256, item.path, self.enhancement)

    def handlers(self) -> dict[str, Callable[[], object]]:
        """Keyboard commands of the viewer, by command id (see ``gui.shortcuts``)."""

        def each(action: Callable[[ImageView], object]) -> Callable[[], None]:
            def run() -> None:
                for view in self.panel.views():
                    action(view)

            return run

        step = 0.15
        return {
            "fit": each(ImageView.fit),
            "actual_size": each(ImageView.actual_size),
            "zoom_in": each(lambda v: v.zoom_by(1.25)),
            "zoom_out": each(lambda v: v.zoom_by(0.8)),
            "pan_left": each(lambda v: v.pan(-step, 0)),
            "pan_right": each(lambda v: v.pan(step, 0)),
            "pan_up": each(lambda v: v.pan(0, -step)),
            "pan_down": each(lambda v: v.pan(0, step)),
            "cycle_enhancement": self.cycle_preset,
            "reset_enhancement": self.reset_enhancement,
            "toggle_pair": lambda: self.set_show_pair(not self.show_pair),
        }

    def set_enhancement(self, enhancement: Enhancement) -> None:
        if enhancement == self.enhancement:
            return
        self.enhancement = enhancement
        self.panel.show_enhancement(enhancement)
        self._refresh(keep_view=True)

    def cycle_preset(self) -> None:
        self.set_enhancement(replace(self.enhancement, preset=next_preset(self.enhancement.preset)))

    def reset_enhancement(self) -> None:
        self.set_enhancement(Enhancement())

    def set_show_pair(self, on: bool) -> None:
        if on == self.show_pair:
            return
        self.show_pair = on
        self.panel.pair.setChecked(on)
        self.show(self.current, self.partner if on else None)

    # ------------------------------------------------------------------ internals
    def _slots(self) -> dict[str, tuple[ImageView, ImageEntry | None]]:
        current, partner = self.current, self.partner
        if partner is None or current is None:
            return {"left": (self.panel.left_view, current), "right": (self.panel.right_view, None)}
        # Facing the patient: the right eye (OD) appears on the left of the screen.
        if current.laterality is Laterality.RIGHT:
            return {
                "left": (self.panel.left_view, current),
                "right": (self.panel.right_view, partner),
            }
        return {"left": (self.panel.left_view, partner), "right": (self.panel.right_view, current)}

    def _refresh(self, *, keep_view: bool) -> None:
        for slot, (view, entry) in self._slots().items():
            if entry is None:
                self._wanted.pop(slot, None)
                view.clear("No image selected" if slot == "left" else "")
                view.setVisible(slot == "left")
                continue
            view.show()
            if entry.error or entry.record is None:
                self._wanted.pop(slot, None)
                view.clear(
                    f"Cannot show {entry.name}: {entry.error}" if entry.error else "Reading…"
                )
                continue
            if view.sha256 != entry.sha256:
                # Never show one image's pixels under another's name while the new one loads.
                view.clear()
            is_current = entry is self.current
            caption = entry.name + ("" if is_current or self.partner is None else "  (other eye)")
            view.set_caption(caption)
            view.set_eye(EYE_TEXT.get(entry.laterality, ""))
            if not keep_view:
                view.set_enhanced("")
            self._wanted[slot] = self.bridge.request(
                slot, entry.sha256, entry.path, self.enhancement
            )

    def _on_shown(self, shown: ShownImage) -> None:
        if self._wanted.get(shown.slot) != shown.request_id:
            return  # a stale result: the grader moved on
        del self._wanted[shown.slot]
        view = self.panel.left_view if shown.slot == "left" else self.panel.right_view
        view.set_image(shown.qimage, shown.sha256, half=shown.half, keep_view=True)
        view.set_enhanced(shown.enhancement.describe())
        if self.current is not None and shown.sha256 == self.current.sha256:
            self.image_shown.emit(shown.sha256)

    def _on_failed(self, failure: Failure) -> None:
        if self._wanted.get(failure.context) != failure.request_id:
            return
        del self._wanted[failure.context]
        view = self.panel.left_view if failure.context == "left" else self.panel.right_view
        view.clear(f"Cannot show this image.\n{failure.message}")
        self.failed.emit(failure.message)
