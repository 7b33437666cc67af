"""Programme → Grader quality report…: the QA lead's view of the report, and its file.

A view: the report is built on the store thread by ``services.programme_report.build_report``
and drawn by ``services.quality_report``; this window shows the per-grader table, the
sensitivity/specificity scatter against the standards and the team's agreement, and saves the
same report as HTML, PDF or PNG for the QA lead to send.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.gui.geometry import remember_geometry
from sall_desktop.gui.relay import Relay
from sall_desktop.services.programme_report import build_report, save_report
from sall_desktop.services.quality import QualityReport, Standards
from sall_desktop.services.quality_report import (
    HEADER,
    scatter_png,
    summary_lines,
    table_row,
)
from sall_desktop.services.store_executor import StoreExecutor

FLAG_COLOUR = QColor("#c0392b")
COLUMN_ORDER = (0, len(HEADER) - 1, *range(1, len(HEADER) - 1))
"""The report's columns with the flag second: in a window narrower than the table it stays
in view."""


class QualityWindow(QDialog):
    """The grader quality report of the open store (see the module docstring)."""

    def __init__(self, store: StoreExecutor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Grader quality report")
        remember_geometry(self, "quality", 1280, 860)
        self.store = store
        self.report: QualityReport | None = None
        self._relay = Relay(self)
        self._request = 0
        self.min_sensitivity = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.01)
        self.min_specificity = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.01)
        self.min_sensitivity.setValue(Standards().min_sensitivity)
        self.min_specificity.setValue(Standards().min_specificity)
        standards = QFormLayout()
        standards.addRow("Minimum referable sensitivity", self.min_sensitivity)
        standards.addRow("Minimum referable specificity", self.min_specificity)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.summary = QLabel("Building the report…")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, len(HEADER))
        self.table.setHorizontalHeaderLabels([HEADER[i] for i in COLUMN_ORDER])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.scatter = QLabel()
        self.scatter.setAlignment(Qt.AlignmentFlag.AlignCenter)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.save_button = buttons.addButton("Save report…", QDialogButtonBox.ButtonRole.ActionRole)
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._ask_save)
        buttons.rejected.connect(self.reject)
        top = QHBoxLayout()
        top.addLayout(standards)
        top.addStretch(1)
        top.addWidget(self.refresh_button, alignment=Qt.AlignmentFlag.AlignBottom)
        # The table first and whole (the flag is its last column), the scatter under it.
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.table)
        body.addWidget(self.scatter)
        body.setStretchFactor(0, 2)
        body.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(body, 1)
        layout.addWidget(buttons)
        self.refresh()

    def standards(self) -> Standards:
        return Standards(self.min_sensitivity.value(), self.min_specificity.value())

    def refresh(self) -> None:
        """Rebuild the report on the store thread; a reply to an older request is dropped."""
        self._request += 1
        request, standards = self._request, self.standards()
        self.refresh_button.setEnabled(False)
        future = self.store.submit(lambda store: build_report(store, standards))
        self._relay.watch(
            future, lambda report: self._show(request, report), lambda e: self._failed(request, e)
        )

    def _failed(self, request: int, error: BaseException) -> None:
        if request == self._request:
            self.refresh_button.setEnabled(True)
            self.summary.setText(f"Could not build the report: {error}")

    def _show(self, request: int, report: QualityReport) -> None:
        if request != self._request:
            return
        self.refresh_button.setEnabled(True)
        self.report = report
        self.save_button.setEnabled(bool(report.rows or report.test_rows))
        if not report.rows and not report.test_rows:
            self.summary.setText(
                "Nothing to report yet: no image has a final grade and no test set was answered."
            )
        else:
            self.summary.setText("\n".join(summary_lines(report)[:2]))
        rows = [(g, "") for g in report.graders]
        for test in report.test_sets:
            rows += [(g, test.name) for g in test.graders]
        self.table.setRowCount(len(rows))
        for row, (stats, test_set) in enumerate(rows):
            cells = table_row(stats)
            if test_set:
                cells[1] = f"test set {test_set}"
            for column, text in enumerate(cells[i] for i in COLUMN_ORDER):
                item = QTableWidgetItem(text)
                if stats.flagged:
                    item.setForeground(QBrush(FLAG_COLOUR))
                    item.setToolTip("; ".join(stats.flag_reasons))
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()
        if report.graders and not all(math.isnan(g.referable.sensitivity) for g in report.graders):
            pixmap = QPixmap()
            pixmap.loadFromData(scatter_png(report.graders, report.standards))
            self.scatter.setPixmap(
                pixmap.scaledToHeight(
                    min(pixmap.height(), 420), Qt.TransformationMode.SmoothTransformation
                )
            )

    def _ask_save(self) -> None:
        if self.report is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the grader quality report", "grader-report.html",
            "Report (*.html *.pdf *.png)",
        )  # fmt: skip
        if path:
            self.save(Path(path))

    def save(self, path: Path) -> None:
        """Write the report shown to ``path`` (.html, .pdf or .png), on the store thread."""
        report = self.report
        if report is None:
            return

        future = self.store.submit(lambda store: save_report(store, report, path))
        self._relay.watch(
            future,
            lambda _: self.summary.setText(f"Report saved to {path}"),
            lambda e: self.summary.setText(f"Could not save the report: {e}"),
        )
