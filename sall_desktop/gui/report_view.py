"""The evaluation report of a fine-tune: parent vs candidate per head, the gate, Promote/Discard.

Shows, on the locked hold-out, per head: accuracy, QWK, ECE (equal-mass, the gate's variant)
and the confusion matrices of both models; the gate verdict with each check; Promote (enabled
only when the gate passed, a named approver is entered and the run finished) and Discard.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from training.protocol.report import GateVerdict, HeadReport, Report


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _fit_rows(table: QTableWidget) -> None:
    """Show every row: a report table that scrolls hides the numbers the gate is about."""
    table.resizeColumnsToContents()
    table.resizeRowsToContents()
    # Size hints, not heights: the table is not shown yet when the report arrives.
    height = table.horizontalHeader().sizeHint().height() + table.verticalHeader().length()
    table.setFixedHeight(height + 2 * table.frameWidth() + 2)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)


def _matrix(head: HeadReport | None, title: str) -> QWidget:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    if head is None or not head.confusion:
        layout.addWidget(QLabel("no data"))
        return box
    n = len(head.confusion)
    table = QTableWidget(n, n)
    labels = [str(i) for i in range(n)]
    table.setHorizontalHeaderLabels(labels)
    table.setVerticalHeaderLabels(labels)
    for r, row in enumerate(head.confusion):
        for c, count in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(str(count)))
    table.setToolTip("rows: grader's grade, columns: model's grade")
    _fit_rows(table)
    layout.addWidget(table)
    return box


class ReportView(QWidget):
    """Parent vs candidate on the hold-out, the gate verdict, Promote and Discard.

    Signals:
        promote_requested(str): the approver's name.
        discard_requested(): the candidate is to be discarded.
    """

    promote_requested = Signal(str)
    discard_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.verdict_label = QLabel()
        self.verdict_label.setWordWrap(True)
        self.checks_label = QLabel()
        self.checks_label.setWordWrap(True)
        self.metrics = QTableWidget(0, 7)
        self.metrics.setHorizontalHeaderLabels(
            [
                "head",
                "accuracy (parent)",
                "accuracy (new)",
                "QWK (parent)",
                "QWK (new)",
                "ECE (parent)",
                "ECE (new)",
            ]  # fmt: skip
        )
        self.matrices = QGridLayout()
        self.approver = QLineEdit()
        self.approver.setPlaceholderText("Approved by (your name)")
        self.approver.textChanged.connect(self._update_buttons)
        self.promote_button = QPushButton("Promote")
        self.discard_button = QPushButton("Discard")
        self.promote_button.clicked.connect(self._on_promote)
        self.discard_button.clicked.connect(self.discard_requested.emit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.approver, 1)
        buttons.addWidget(self.promote_button)
        buttons.addWidget(self.discard_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.checks_label)
        layout.addWidget(self.metrics)
        layout.addLayout(self.matrices)
        layout.addLayout(buttons)
        self.report: Report | None = None
        self.gate_passed = False
        self._decided = False
        self._update_buttons()

    def show_report(
        self, report: Report, verdict: GateVerdict | None, *, gate_passed: bool
    ) -> None:
        """Fill the view; ``gate_passed`` is the app's combined verdict (trainer and app)."""
        self.report = report
        self.gate_passed = gate_passed
        self._decided = False
        if gate_passed:
            self.verdict_label.setText("<b>Gate passed</b>: the candidate may be promoted.")
        else:
            self.verdict_label.setText(
                "<b>Gate FAILED</b>: the candidate is worse than the active model on the locked "
                "hold-out and cannot be promoted. The active model is unchanged."
            )
        checks = verdict.checks if verdict is not None else ()
        self.checks_label.setText(
            "\n".join(("✔ " if c.passed else "✘ ") + c.message for c in checks) or "no checks"
        )
        heads = report.model.heads
        self.metrics.setRowCount(len(heads))
        while self.matrices.count():
            item = self.matrices.takeAt(0)
            if item is not None and item.widget() is not None:
                item.widget().deleteLater()  # type: ignore[union-attr]
        for row, head in enumerate(heads):
            before = report.parent.head(head.task) if report.parent else None
            values = [
                head.task,
                _fmt(before.accuracy if before else None),
                _fmt(head.accuracy),
                _fmt(before.qwk if before else None),
                _fmt(head.qwk),
                _fmt(before.ece_mass if before else None),
                _fmt(head.ece_mass),
            ]
            for col, text in enumerate(values):
                self.metrics.setItem(row, col, QTableWidgetItem(text))
            self.matrices.addWidget(_matrix(before, f"{head.task}: active model"), row, 0)
            self.matrices.addWidget(_matrix(head, f"{head.task}: candidate"), row, 1)
        _fit_rows(self.metrics)
        self._update_buttons()

    def set_decided(self, text: str) -> None:
        """Disable both buttons after a promotion or discard, showing ``text``."""
        self._decided = True
        self.verdict_label.setText(text)
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.report is not None and not self._decided
        self.promote_button.setEnabled(
            ready and self.gate_passed and bool(self.approver.text().strip())
        )
        self.discard_button.setEnabled(ready)
        if ready and not self.gate_passed:
            self.promote_button.setToolTip("The gate failed: this candidate cannot be promoted.")
        else:
            self.promote_button.setToolTip("")

    def _on_promote(self) -> None:
        if self.promote_button.isEnabled():
            self.promote_requested.emit(self.approver.text().strip())


__all__ = ["ReportView"]
