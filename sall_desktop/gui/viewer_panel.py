"""The viewer panel (a view): one or two image views (both eyes) and the enhancement bar."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
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
from sall_desktop.gui.viewer import ImageView
from sall_desktop.imaging.enhance import PRESET_LABELS, Enhancement, EnhancePreset

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
