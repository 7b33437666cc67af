"""The model panel (a view): active-model badge, per-image model output, overlay controls and
batch-grading progress. :mod:`gui.model_controller` decides what it shows."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.domain.grades import AMD_NAMES, DR_NAMES
from sall_desktop.gui.elided import ElidedLabel
from sall_desktop.gui.theme import AMD_COLOURS, DR_COLOURS
from sall_desktop.services.attention import colormaps
from sall_desktop.services.inference import ModelInfo, PredictionSummary

HEAD_TITLES = {"dr": "DR · ICDR", "amd": "AMD"}
CLASS_NAMES = {"dr": DR_NAMES, "amd": AMD_NAMES}
HEAD_COLOURS = {"dr": DR_COLOURS, "amd": AMD_COLOURS}
HIDDEN_TEXT = "Model output hidden until you save your grade (blind-first)."

BADGE_STYLE = (
    "QLabel#useBadge { background: #b8452f; color: #ffffff; border-radius: 4px; "
    "padding: 2px 6px; font-weight: 600; }"
    'QLabel#useBadge[clinical="true"] { background: #2f7a55; }'
    "QLabel#lowConfidence { color: #e0a23a; font-weight: 600; }"
    "QProgressBar#probability { border: none; border-radius: 3px; min-height: 10px; "
    "max-height: 10px; }"
)


def _section(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setObjectName("sectionTitle")
    return label


def _muted(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setObjectName("muted")
    label.setWordWrap(True)
    return label


def _no_focus(*widgets: QWidget) -> None:
    for widget in widgets:  # the keyboard belongs to the grading shortcuts
        widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)


def head_name(head: str) -> str:
    return HEAD_TITLES.get(head, head.upper())


def class_name(head: str, grade: int) -> str:
    names = CLASS_NAMES.get(head, ())
    return names[grade] if 0 <= grade < len(names) else str(grade)


class ModelPanel(QWidget):
    """Right-hand model panel. State comes in through the ``show_*`` methods."""

    overlay_toggled = Signal(bool)
    overlay_target_changed = Signal(str, object)  # head, class (None = predicted)
    opacity_changed = Signal(float)
    colormap_changed = Signal(str)
    grade_folder_clicked = Signal()
    cancel_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:  # noqa: PLR0915 - builds the widgets in reading order
        super().__init__(parent)
        self.setObjectName("panel")
        self.setStyleSheet(BADGE_STYLE)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)
        layout.addWidget(_section("Model"))
        self.model_name = ElidedLabel("Loading the model…")
        self.model_name.setObjectName("imageTitle")
        self.use_badge = QLabel()
        self.use_badge.setObjectName("useBadge")
        self.use_badge.setWordWrap(True)
        self.use_badge.hide()
        self.model_status = _muted()
        layout.addWidget(self.model_name)
        layout.addWidget(self.use_badge)

        layout.addWidget(_section("Model output"))
        self.hidden_note = _muted(HIDDEN_TEXT)
        self.hidden_note.hide()
        self.waiting = _muted("")
        layout.addWidget(self.hidden_note)
        layout.addWidget(self.waiting)
        self.output = QWidget()
        out = QVBoxLayout(self.output)
        out.setContentsMargins(0, 0, 0, 0)
        out.setSpacing(2)
        self.grade_label = QLabel()
        self.grade_label.setObjectName("modelGrade")
        self.grade_label.setWordWrap(True)
        self.confidence_label = _muted()
        self.low_flag = QLabel("⚠ Low confidence: second grade advised")
        self.low_flag.setObjectName("lowConfidence")
        self.low_flag.setWordWrap(True)
        out.addWidget(self.grade_label)
        out.addWidget(self.confidence_label)
        out.addWidget(self.low_flag)
        self.bars_box = QWidget()
        self.bars = QGridLayout(self.bars_box)
        self.bars.setContentsMargins(0, 2, 0, 0)
        self.bars.setVerticalSpacing(2)
        self.bar_widgets: dict[str, list[QProgressBar]] = {}
        self.bar_shares: dict[QProgressBar, QLabel] = {}  # each bar's percentage label
        out.addWidget(self.bars_box)
        self.output.hide()
        layout.addWidget(self.output)

        layout.addWidget(_section("Attention overlay · A"))
        self.overlay_button = QPushButton("Show attention  A")
        self.overlay_button.setCheckable(True)
        self.head_combo = QComboBox()
        self.class_combo = QComboBox()
        self.colormap_combo = QComboBox()
        for name in colormaps():
            self.colormap_combo.addItem(name, name)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(5, 95)
        self.opacity.setValue(45)
        self.opacity.setToolTip("Overlay opacity")
        self.overlay_state = _muted()
        _no_focus(
            self.overlay_button, self.head_combo, self.class_combo, self.colormap_combo,
            self.opacity,
        )  # fmt: skip
        layout.addWidget(self.overlay_button)
        row = QHBoxLayout()
        row.addWidget(self.head_combo, 1)
        row.addWidget(self.class_combo, 2)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(_muted("Opacity"))
        row.addWidget(self.opacity, 1)
        row.addWidget(self.colormap_combo)
        layout.addLayout(row)
        layout.addWidget(self.overlay_state)

        layout.addWidget(_section("Batch grading"))
        self.grade_button = QPushButton("Grade folder with model")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        _no_focus(self.grade_button, self.cancel_button)
        row = QHBoxLayout()
        row.addWidget(self.grade_button, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.batch_bar = QProgressBar()
        self.batch_bar.setRange(0, 1)
        self.batch_bar.setValue(0)
        self.batch_bar.setTextVisible(True)
        self.batch_text = _muted()
        layout.addWidget(self.batch_bar)
        layout.addWidget(self.batch_text)
        # Where it runs and its id matter less while grading than its answer: they come last.
        layout.addWidget(_section("About this model"))
        layout.addWidget(self.model_status)
        layout.addStretch(1)

        self.overlay_button.toggled.connect(self.overlay_toggled)
        self.head_combo.currentIndexChanged.connect(self._head_chosen)
        self.class_combo.currentIndexChanged.connect(self._target_chosen)
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        self.colormap_combo.currentIndexChanged.connect(
            lambda _: self.colormap_changed.emit(self.colormap_combo.currentData())
        )
        self.grade_button.clicked.connect(self.grade_folder_clicked)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self._filling = False

    # ------------------------------------------------------------------ model
    def show_model(self, info: ModelInfo) -> None:
        self.model_name.setText(f"{info.name} · version {info.version}")
        self.model_name.setToolTip(
            f"Model id {info.id}\n{info.intended_use}\nRuns on {info.device}"
        )
        self.use_badge.setText(info.badge)
        self.use_badge.setProperty("clinical", not info.not_for_clinical_use)
        self.use_badge.show()
        self.model_status.setText(f"id {info.id[:12]} · {info.device}")
        self._filling = True
        self.head_combo.clear()
        for head, _ in info.heads:
            self.head_combo.addItem(head_name(head), head)
        self._filling = False
        self._build_bars(info)
        self._head_chosen()

    def show_model_error(self, message: str) -> None:
        self.model_name.setText("No model")
        self.use_badge.hide()
        self.model_status.setText(f"The model could not be loaded: {message}")
        self.grade_button.setEnabled(False)
        self.overlay_button.setEnabled(False)

    def _build_bars(self, info: ModelInfo) -> None:
        # A new model version may have other heads: the previous version's bars go first.
        while (item := self.bars.takeAt(0)) is not None:
            if (widget := item.widget()) is not None:
                widget.deleteLater()
        self.bar_widgets.clear()
        self.bar_shares.clear()
        row = 0
        for head, count in info.heads:
            title = _muted(head_name(head))
            self.bars.addWidget(title, row, 0, 1, 3)
            row += 1
            bars = []
            colours = HEAD_COLOURS.get(head, DR_COLOURS)
            for grade in range(count):
                # The class name left of the bar and the percentage right of it: text drawn
                # inside a bar runs over its coloured chunk and cannot be read.
                name = ElidedLabel(f"{grade} {class_name(head, grade)}")
                name.setObjectName("muted")
                bar = QProgressBar()
                bar.setObjectName("probability")
                bar.setRange(0, 1000)
                bar.setTextVisible(False)
                bar.setFixedHeight(10)
                colour = colours[min(grade, len(colours) - 1)]
                bar.setStyleSheet(f"QProgressBar::chunk {{ background: {colour}; }}")
                share = QLabel()
                share.setObjectName("muted")
                share.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                share.setMinimumWidth(share.fontMetrics().horizontalAdvance("100%") + 2)
                self.bars.addWidget(name, row, 0)
                self.bars.addWidget(bar, row, 1)
                self.bars.addWidget(share, row, 2)
                bars.append(bar)
                self.bar_shares[bar] = share
                row += 1
            self.bar_widgets[head] = bars
        self.bars.setColumnStretch(0, 3)
        self.bars.setColumnStretch(1, 2)
        # The splitter must not squeeze the bars into each other: reserve their full height.
        self.bars_box.setMinimumHeight(self.bars.sizeHint().height())

    def _head_chosen(self) -> None:
        if self._filling:
            return
        head = self.head_combo.currentData()
        self._filling = True
        self.class_combo.clear()
        self.class_combo.addItem("Predicted class", None)
        count = len(self.bar_widgets.get(head, ()))
        for grade in range(count):
            self.class_combo.addItem(f"{grade} · {class_name(head, grade)}", grade)
        self._filling = False
        self._target_chosen()

    def _target_chosen(self) -> None:
        if not self._filling and self.head_combo.currentData() is not None:
            self.overlay_target_changed.emit(
                self.head_combo.currentData(), self.class_combo.currentData()
            )

    def select_head(self, head: str) -> None:
        index = self.head_combo.findData(head)
        if index >= 0:
            self.head_combo.setCurrentIndex(index)

    # ------------------------------------------------------------------ one image
    def show_prediction(
        self, summary: PredictionSummary | None, *, hidden: bool, note: str = "", why: str = ""
    ) -> None:
        """Show the model output, or hide it (blind-first; ``why``: another reason, e.g. second
        grading is blind) / say why there is none (``note``)."""
        self.hidden_note.setText(why or HIDDEN_TEXT)
        self.hidden_note.setVisible(hidden)
        visible = summary is not None and not hidden and not summary.gate_failed
        self.output.setVisible(visible)
        if summary is not None and summary.gate_failed and not hidden:
            note = "Ungradable / not a fundus image: human grading required."
        self.waiting.setText("" if visible or hidden else note)
        self.waiting.setVisible(bool(self.waiting.text()))
        if not visible or summary is None:
            for bars in self.bar_widgets.values():
                for bar in bars:
                    bar.setValue(0)
                    bar.setFormat("")
                    self.bar_shares[bar].setText("")
            self.grade_label.setText("")
            self.confidence_label.setText("")
            return
        parts = [
            f"{head_name(h).split(' ')[0]} {out.grade} {class_name(h, out.grade)}"
            for h, out in summary.heads.items()
        ]
        self.grade_label.setText("Model: " + " · ".join(parts))
        conf = [
            f"{head_name(h).split(' ')[0]} {out.confidence:.0%}" for h, out in summary.heads.items()
        ]
        text = "Confidence " + ", ".join(conf)
        if summary.referable_dr_probability is not None:
            text += f" · P(referable DR) {summary.referable_dr_probability:.0%}"
        self.confidence_label.setText(text)
        self.low_flag.setVisible(summary.low_confidence)
        for head, bars in self.bar_widgets.items():
            probs = summary.heads[head].probabilities if head in summary.heads else ()
            for grade, bar in enumerate(bars):
                p = probs[grade] if grade < len(probs) else 0.0
                bar.setValue(round(p * 1000))
                # The bar's own text stays (hidden): it is what tests and screen readers read.
                bar.setFormat(f" {grade} {class_name(head, grade)}  {p:.0%}")
                self.bar_shares[bar].setText(f"{p:.0%}")

    def show_overlay_state(self, text: str) -> None:
        self.overlay_state.setText(text)

    # ------------------------------------------------------------------ batch
    def show_batch(self, done: int, total: int, text: str, *, running: bool) -> None:
        # QProgressBar.setValue repaints at once (a synchronous paint and flush, several times
        # a second while a folder is graded, on the cores the model is using);
        # with updates off it only schedules a paint, which joins the window's next one.
        self.batch_bar.setUpdatesEnabled(False)
        self.batch_bar.setRange(0, max(1, total))
        self.batch_bar.setValue(min(done, max(1, total)))
        self.batch_bar.setFormat(f"{done} / {total}")
        self.batch_bar.setUpdatesEnabled(True)
        self.batch_text.setText(text)
        self.grade_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
