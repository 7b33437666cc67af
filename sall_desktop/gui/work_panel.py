"""The work panel (a view): the work selector — every image, one of the grader's screening
programme queues with its count, or an announced test set with its count of images to answer —
and a line about the chosen queue. Shown only to a grader who holds programme roles or has a test
set to answer; :mod:`gui.work_controller` decides what it lists."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from sall_desktop.services.work_queue import WorkChoice, WorkKey


class WorkPanel(QWidget):
    """Above the folder panel. State comes in through :meth:`show_choices` and :meth:`show_note`."""

    chosen = Signal(object)  # a WorkKey: GraderRole, TestSetChoice or None (every image)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 4)
        layout.setSpacing(3)
        title = QLabel("WORK")
        title.setObjectName("sectionTitle")
        layout.addWidget(title)
        self.combo = QComboBox()
        self.combo.setObjectName("workQueue")
        self.combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keyboard grades
        self.combo.setToolTip("Which images to grade: one of your queues, or every image")
        self.combo.currentIndexChanged.connect(self._chosen)
        layout.addWidget(self.combo)
        self.note = QLabel()
        self.note.setObjectName("muted")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.hide()

    def show_choices(self, choices: list[WorkChoice], current: WorkKey) -> None:
        """List ``choices`` (rewritten in place when the same queues are listed) and select the
        one whose key is ``current``."""
        combo = self.combo
        combo.blockSignals(True)
        levels = [c.key for c in choices]
        if levels != [combo.itemData(i) for i in range(combo.count())]:
            combo.clear()
            for choice in choices:
                combo.addItem(choice.text, choice.key)
        for i, choice in enumerate(choices):
            if combo.itemText(i) != choice.text:
                combo.setItemText(i, choice.text)
            combo.setItemData(i, choice.tooltip, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(0, levels.index(current) if current in levels else 0))
        combo.blockSignals(False)

    def show_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def texts(self) -> list[str]:
        """The choices as listed (tests, screen readers)."""
        return [self.combo.itemText(i) for i in range(self.combo.count())]

    def _chosen(self, index: int) -> None:
        if index >= 0:
            self.chosen.emit(self.combo.itemData(index))
