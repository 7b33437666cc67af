"""The viewer panel: one or two image views (both eyes), the enhancement bar, and its controller.

The controller asks the image bridge for the current image (and the other eye of the patient),
drops results of requests that are no longer current, applies the enhancement off the GUI thread,
shows the "ENHANCED" badge only while enhanced pixels are on screen, and pre-decodes the next image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.domain.grades import Laterality
from sall_desktop.gui.bridges import Failure, ImageBridge, ShownImage
from sall_desktop.gui.image_entry import ImageEntry
from sall_desktop.gui.viewer import ImageView
from sall_desktop.imaging.enhance import PRESET_LABELS, Enhancement, EnhancePreset, next_preset

EYE_TEXT = {Laterality.RIGHT: "OD · right eye", Laterality.LEFT: "OS · left eye"}


def _slider(minimum: int, maximum: int, value: int, tip: str) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(minimum, maximum)
    slider.setValue(value)
    # Narrow windows (1280 px) squeeze the sliders before anything else in the bar.
    slider.setMinimumWidth(40)
    slider.setMaximumWidth(110)
    slider.setToolTip(tip)
    slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return slider


class ViewerPanel(QWidget):
    """Two image views in a splitter (right eye on screen-left, as when facing the patient)."""

    enhancement_edited = Signal(object)  # Enhancement
    pair_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.preset = QComboBox()
        for preset, label in PRESET_LABELS.items():
            self.preset.addItem(label, preset)
        self.preset.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.preset.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.preset.setMinimumContentsLength(9)
        self.gamma = _slider(30, 300, 100, "Gamma")
        self.brightness = _slider(-100, 100, 0, "Brightness")
        self.contrast = _slider(30, 300, 100, "Contrast")
        self.reset = QPushButton("Original")
        self.reset.setToolTip("Original look (Shift+V)")
        self.pair = QPushButton("Both eyes")
        self.pair.setCheckable(True)
        self.pair.setToolTip("Show the other eye of the same patient (B)")
        self.fit = QPushButton("Fit")
        self.actual = QPushButton("1:1")
        for button in (self.reset, self.pair, self.fit, self.actual):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bar = QHBoxLayout()
        bar.setContentsMargins(8, 6, 8, 6)
        bar.setSpacing(6)
        bar.addWidget(QLabel("Look"))
        bar.addWidget(self.preset)
        for label, slider in (
            ("γ", self.gamma),
            ("Bright", self.brightness),
            ("Contrast", self.contrast),
        ):
            caption = QLabel(label)
            caption.setObjectName("muted")
            bar.addWidget(caption)
            bar.addWidget(slider)
        bar.addWidget(self.reset)
        bar.addStretch(1)
        bar.addWidget(self.pair)
        bar.addWidget(self.fit)
        bar.addWidget(self.actual)
        toolbar = QWidget()
        toolbar.setObjectName("panel")
        toolbar.setLayout(bar)
        self.left_view = ImageView()
        self.right_view = ImageView()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.left_view)
        self.splitter.addWidget(self.right_view)
        self.splitter.setChildrenCollapsible(False)
        self.right_view.hide()
        self.left_view.clear("Open a folder of fundus photographs (Ctrl+O) to start.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(toolbar)
        layout.addWidget(self.splitter, 1)
        self.preset.currentIndexChanged.connect(self._edited)
        for slider in (self.gamma, self.brightness, self.contrast):
            slider.valueChanged.connect(self._edited)
        self.reset.clicked.connect(lambda: self.show_enhancement(Enhancement(), notify=True))
        self.pair.toggled.connect(self.pair_toggled)
        self._updating = False

    def views(self) -> list[ImageView]:
        return [v for v in (self.left_view, self.right_view) if v.isVisible() and v.has_image()]

    def enhancement(self) -> Enhancement:
        return Enhancement(
            preset=EnhancePreset(self.preset.currentData()),
            gamma=self.gamma.value() / 100.0,
            brightness=self.brightness.value(),
            contrast=self.contrast.value() / 100.0,
        )

    def show_enhancement(self, enhancement: Enhancement, *, notify: bool = False) -> None:
        self._updating = True
        self.preset.setCurrentIndex(self.preset.findData(enhancement.preset))
        self.gamma.setValue(round(enhancement.gamma * 100))
        self.brightness.setValue(enhancement.brightness)
        self.contrast.setValue(round(enhancement.contrast * 100))
        self._updating = False
        if notify:
            self.enhancement_edited.emit(self.enhancement())

    def _edited(self) -> None:
        if not self._updating:
            self.enhancement_edited.emit(self.enhancement())


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
