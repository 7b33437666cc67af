"""The evaluation report of a fine-tune: the gate's evidence, parent vs candidate, Promote/Discard.

Shows the gate verdict (passed, failed, not enough evidence) and, per check, its set (hold-out or
the parent's reference set), metric, parent -> candidate on the same images, the difference with
its confidence interval, the margin and the check's verdict; per set and head: accuracy, QWK and
ECE (equal-mass, the gate's variant); the hold-out confusion matrices of both models. Promote is
enabled only when the gate passed, a named approver is entered and the run finished; otherwise
the reason is shown next to it. Reports from before the interval gate show "—" for intervals.
"""

from __future__ import annotations

import html

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

from sall_desktop.services import gate_evidence
from training.protocol.report import GateVerdict, HeadReport, ModelEvaluation, Report

CHECK_COLUMNS = ("set", "metric", "images", "parent → candidate", "difference", "margin", "verdict")
METRIC_COLUMNS = ("set", "head", "accuracy (parent)", "accuracy (new)", "QWK (parent)",
                  "QWK (new)", "ECE (parent)", "ECE (new)")  # fmt: skip
_MARK = {"pass": "✔ ", "fail": "✘ "}


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


def _sets(report: Report) -> list[tuple[str, ModelEvaluation, ModelEvaluation | None]]:
    """``(set name, candidate, parent)`` for the hold-out and, if evaluated, the reference set."""
    sets = [("hold-out", report.model, report.parent)]
    if report.reference is not None:
        sets.append(("reference set", report.reference, report.reference_parent))
    return sets


def _headline(status: str, verdict: GateVerdict | None) -> str:
    if status == "passed":
        return (
            "<b>Gate passed</b>: on the same images, the candidate is not worse than the active "
            "model beyond the margin on any check. It may be promoted."
        )
    if status == "insufficient":
        checks = verdict.checks if verdict is not None else ()
        lacking = dict.fromkeys(gate_evidence.missing_evidence(c) for c in checks if c.insufficient)
        why = html.escape("; ".join(lacking) or "some checks could not be decided")
        return (
            f"<b>{gate_evidence.NOT_ENOUGH}</b>: {why}. Too little evidence is never a pass; "
            "the active model is unchanged."
        )
    return (
        f"<b>{gate_evidence.GATE_FAILED}</b>: on at least one check the candidate is worse than "
        "the active model beyond the margin. The active model is unchanged."
    )


class ReportView(QWidget):
    """The gate's evidence, parent vs candidate per set and head, Promote and Discard.

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
        self.checks = QTableWidget(0, len(CHECK_COLUMNS))
        self.checks.setHorizontalHeaderLabels(list(CHECK_COLUMNS))
        self.checks_note = QLabel()
        self.checks_note.setWordWrap(True)
        self.metrics = QTableWidget(0, len(METRIC_COLUMNS))
        self.metrics.setHorizontalHeaderLabels(list(METRIC_COLUMNS))
        self.matrices = QGridLayout()
        self.approver = QLineEdit()
        self.approver.setPlaceholderText("Approved by (your name)")
        self.approver.textChanged.connect(self._update_buttons)
        self.promote_button = QPushButton("Promote")
        self.discard_button = QPushButton("Discard")
        self.promote_button.clicked.connect(self._on_promote)
        self.discard_button.clicked.connect(self.discard_requested.emit)
        self.promote_note = QLabel()  # why Promote is disabled, next to it
        self.promote_note.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.approver, 1)
        buttons.addWidget(self.promote_note, 1)
        buttons.addWidget(self.promote_button)
        buttons.addWidget(self.discard_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.checks)
        layout.addWidget(self.checks_note)
        layout.addWidget(self.metrics)
        layout.addLayout(self.matrices)
        layout.addLayout(buttons)
        self.report: Report | None = None
        self.status: str | None = None
        self._refusal = ""
        self._decided = False
        self._update_buttons()

    @property
    def gate_passed(self) -> bool:
        """The shown candidate may be promoted (its gate passed)."""
        return self.status == "passed"

    def show_report(
        self, report: Report, verdict: GateVerdict | None, *, status: str | None
    ) -> None:
        """Fill the view.

        Args:
            report: the run's report.
            verdict: the app's re-derived gate verdict (its checks are shown).
            status: the app's combined gate status (trainer and app): ``passed``, ``failed``
                or ``insufficient``; anything but ``passed`` cannot be promoted.
        """
        self.report = report
        self.status = status if status in gate_evidence.STATUS_WORDS else "failed"
        self._refusal = gate_evidence.refusal(self.status, verdict)
        self._decided = False
        self.verdict_label.setText(_headline(self.status, verdict))
        self._fill_checks(verdict)
        self._fill_metrics(report)
        self._update_buttons()

    def _fill_checks(self, verdict: GateVerdict | None) -> None:
        rows = gate_evidence.check_rows(verdict)
        confidence = verdict.confidence if verdict is not None else 0.95
        header = f"candidate − parent ({confidence * 100:g} % CI)"
        self.checks.setHorizontalHeaderItem(4, QTableWidgetItem(header))
        self.checks.setRowCount(len(rows))
        for r, row in enumerate(rows):
            verdict_text = _MARK.get(row.verdict, "") + row.verdict
            cells = (row.set, row.metric, row.images, row.values, row.difference, row.margin,
                     verdict_text)  # fmt: skip
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(row.message)
                self.checks.setItem(r, c, item)
        _fit_rows(self.checks)
        if verdict is None:
            note = "No gate verdict in this report: the candidate cannot be promoted."
        elif verdict.resamples == 0:
            note = (
                "This report predates the confidence-interval gate: point estimates on the "
                "hold-out only, no intervals and no reference set."
            )
        else:
            note = (
                "Parent and candidate are scored on the same images of each set. A check passes "
                "when the lower end of the interval of candidate − parent is at or above the "
                f"margin; too few images is not enough evidence ({verdict.resamples} paired "
                "bootstrap resamples)."
            )
        self.checks_note.setText(note)

    def _fill_metrics(self, report: Report) -> None:
        sets = _sets(report)
        self.metrics.setRowCount(sum(len(model.heads) for _, model, _ in sets))
        while self.matrices.count():
            item = self.matrices.takeAt(0)
            if item is not None and item.widget() is not None:
                item.widget().deleteLater()  # type: ignore[union-attr]
        row = 0
        for name, model, parent in sets:
            for head in model.heads:
                before = parent.head(head.task) if parent else None
                values = (
                    name,
                    head.task,
                    _fmt(before.accuracy if before else None),
                    _fmt(head.accuracy),
                    _fmt(before.qwk if before else None),
                    _fmt(head.qwk),
                    _fmt(before.ece_mass if before else None),
                    _fmt(head.ece_mass),
                )
                for col, text in enumerate(values):
                    self.metrics.setItem(row, col, QTableWidgetItem(text))
                row += 1
        parent = report.parent
        for r, head in enumerate(report.model.heads):  # confusion matrices: the hold-out
            before = parent.head(head.task) if parent else None
            self.matrices.addWidget(_matrix(before, f"{head.task}: active model"), r, 0)
            self.matrices.addWidget(_matrix(head, f"{head.task}: candidate"), r, 1)
        _fit_rows(self.metrics)

    def set_decided(self, text: str) -> None:
        """Disable both buttons after a promotion or discard, showing ``text``."""
        self._decided = True
        self.verdict_label.setText(text)
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.report is not None and not self._decided
        named = bool(self.approver.text().strip())
        self.promote_button.setEnabled(ready and self.gate_passed and named)
        self.discard_button.setEnabled(ready)
        why = ""
        if ready and not self.gate_passed:
            why = self._refusal or gate_evidence.GATE_FAILED
        elif ready and not named:
            why = "Enter your name to promote"
        self.promote_button.setToolTip(why)
        self.promote_note.setText(why)

    def _on_promote(self) -> None:
        if self.promote_button.isEnabled():
            self.promote_requested.emit(self.approver.text().strip())


__all__ = ["ReportView"]
