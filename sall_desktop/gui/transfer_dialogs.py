"""Export and import dialogs over ``services.labels_io``, run on the store thread with progress.

The work runs where the database connection lives (the store thread), never on the GUI thread;
the dialog shows a busy bar while it runs and the service's summary or conflict report after.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.domain.grades import ImageRecord
from sall_desktop.gui.bridges import Failure, Reply, TaskBridge
from sall_desktop.gui.geometry import remember_geometry
from sall_desktop.services.grading import GradingService
from sall_desktop.services.labels_io import (
    ExportSummary,
    ImportReport,
    export_labels,
    import_labels,
)

EXPORT_FORMATS = (
    ("canonical", "Canonical CSV (every field)"),
    ("eyepacs", "EyePACS (image, level)"),
    ("aptos", "APTOS (id_code, diagnosis)"),
    ("idrid", "IDRiD (grade + macular oedema risk)"),
    ("messidor2", "Messidor-2 (adjudicated)"),
    ("manifest", "Training manifest"),
    ("imagefolder", "ImageFolder tree (one task)"),
)
IMPORT_FORMATS = tuple(f for f in EXPORT_FORMATS if f[0] != "imagefolder")


class _TransferDialog(QDialog):
    """Shared layout: a form, a busy bar, a result box, and Run/Close buttons."""

    def __init__(
        self, title: str, run_text: str, service: GradingService, parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.service = service
        self.tasks = TaskBridge(self)
        self.tasks.finished.connect(self._finished, Qt.ConnectionType.QueuedConnection)
        self.tasks.failed.connect(self._failed, Qt.ConnectionType.QueuedConnection)
        self.form = QFormLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.hide()
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setPlaceholderText("The summary appears here.")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.run_button = QPushButton(run_text)
        self.run_button.setObjectName("primary")
        self.buttons.addButton(self.run_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.rejected.connect(self.reject)
        self.run_button.clicked.connect(self._start)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.progress)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.buttons)
        self.request_id = 0
        self.running = False

    def _path_row(self, edit: QLineEdit, browse: QPushButton) -> QWidget:
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(edit, 1)
        box.addWidget(browse)
        return row

    def _start(self) -> None:
        raise NotImplementedError

    def _run(self, job: object, what: str) -> None:
        self.running = True
        self.run_button.setEnabled(False)
        self.progress.show()
        self.output.setPlainText(f"{what}…")
        self.request_id = self.tasks.track(self.service.submit(job))  # type: ignore[arg-type]

    def _done(self) -> None:
        self.running = False
        self.run_button.setEnabled(True)
        self.progress.hide()

    def _finished(self, reply: Reply) -> None:
        if reply.request_id == self.request_id:
            self._done()
            self.show_result(reply.value)

    def _failed(self, failure: Failure) -> None:
        if failure.request_id == self.request_id:
            self._done()
            self.output.setPlainText(f"Failed: {failure.message}")

    def show_result(self, value: object) -> None:
        raise NotImplementedError

    def reject(self) -> None:
        if not self.running:  # the job cannot be abandoned half-way; it finishes first
            super().reject()


class ExportDialog(_TransferDialog):
    """Export current labels in a chosen format; de-identified unless asked otherwise (R19)."""

    def __init__(
        self, service: GradingService, grader: str | None, parent: QWidget | None = None
    ) -> None:
        super().__init__("Export labels", "Export", service, parent)
        self.format = QComboBox()
        for key, text in EXPORT_FORMATS:
            self.format.addItem(text, key)
        self.whose = QComboBox()
        if grader:
            self.whose.addItem(f"My grades ({grader})", grader)
        self.whose.addItem("Latest human grade per image (final grade in a programme)", None)
        self.task = QComboBox()
        self.task.addItem("DR", "dr")
        self.task.addItem("AMD", "amd")
        self.identified = QCheckBox("Identified (real ids, paths, dates) — for internal use only")
        self.notes = QCheckBox("Include notes (identified exports only)")
        self.path = QLineEdit()
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        self.form.addRow("Format", self.format)
        self.form.addRow("Grades", self.whose)
        self.form.addRow("ImageFolder task", self.task)
        self.form.addRow("", self.identified)
        self.form.addRow("", self.notes)
        self.form.addRow("Save to", self._path_row(self.path, browse))
        self.summary: ExportSummary | None = None
        remember_geometry(self, "export", 680, 520)  # after the form: its rows set the minimum

    def _browse(self) -> None:
        if self.format.currentData() == "imagefolder":
            chosen = QFileDialog.getExistingDirectory(self, "Export into folder")
        else:
            chosen, _ = QFileDialog.getSaveFileName(
                self, "Export labels", "labels.csv", "CSV files (*.csv)"
            )
        if chosen:
            self.path.setText(chosen)

    def _start(self) -> None:
        target = self.path.text().strip()
        if not target:
            self.output.setPlainText("Choose where to save the export first.")
            return
        fmt, grader = str(self.format.currentData()), self.whose.currentData()
        identified, notes, task = (
            self.identified.isChecked(),
            self.notes.isChecked(),
            str(self.task.currentData()),
        )

        def job(store: object) -> ExportSummary:
            return export_labels(
                store,  # type: ignore[arg-type]
                fmt,
                Path(target),
                grader=grader,
                identified=identified,
                include_notes=notes and identified,
                task=task,
            )

        self._run(job, "Exporting")

    def show_result(self, value: object) -> None:
        assert isinstance(value, ExportSummary)
        self.summary = value
        self.output.setPlainText(value.format())


class ImportDialog(_TransferDialog):
    """Import a label file as the signed-in grader or as reference labels; shows the report."""

    def __init__(
        self,
        service: GradingService,
        grader: str | None,
        images: list[ImageRecord],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Import labels", "Import", service, parent)
        self.images = images
        self.format = QComboBox()
        for key, text in IMPORT_FORMATS:
            self.format.addItem(text, key)
        self.as_what = QComboBox()
        if grader:
            self.as_what.addItem(f"As my grades ({grader})", "grader")
        self.as_what.addItem("As reference labels of a dataset", "reference")
        self.reference = QLineEdit()
        self.reference.setPlaceholderText("dataset name, e.g. eyepacs")
        self.replace = QCheckBox(
            "Replace grades an earlier import wrote (never grades typed in the app)"
        )
        self.path = QLineEdit()
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        self.save_report = QPushButton("Save report as CSV…")
        self.save_report.setEnabled(False)
        self.save_report.clicked.connect(self._save_report)
        self.buttons.addButton(self.save_report, QDialogButtonBox.ButtonRole.ActionRole)
        self.form.addRow("File", self._path_row(self.path, browse))
        self.form.addRow("Format", self.format)
        self.form.addRow("Import", self.as_what)
        self.form.addRow("Dataset", self.reference)
        self.form.addRow("", self.replace)
        self.form.addRow(
            "", QLabel(f"Ids are matched to the {len(images)} images of the open folder.")
        )
        self.grader = grader
        self.report: ImportReport | None = None
        remember_geometry(self, "import", 680, 560)  # after the form: its rows set the minimum

    def _browse(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(
            self, "Import labels", "", "CSV files (*.csv);;All files (*)"
        )
        if chosen:
            self.path.setText(chosen)

    def _start(self) -> None:
        source = self.path.text().strip()
        if not source or not Path(source).is_file():
            self.output.setPlainText("Choose an existing label file first.")
            return
        if not self.images:
            self.output.setPlainText(
                "Open the folder holding the labelled images first (and wait for it to be read)."
            )
            return
        fmt, replace_ = str(self.format.currentData()), self.replace.isChecked()
        as_grader = self.grader if self.as_what.currentData() == "grader" else None
        as_reference = self.reference.text().strip() or None if as_grader is None else None
        if as_grader is None and as_reference is None:
            self.output.setPlainText("Name the dataset the reference labels come from.")
            return
        images = list(self.images)

        def job(store: object) -> ImportReport:
            return import_labels(
                store,  # type: ignore[arg-type]
                Path(source),
                fmt,
                images,
                as_grader=as_grader,
                replace=replace_,
                as_reference=as_reference,
            )

        self._run(job, "Importing")

    def show_result(self, value: object) -> None:
        assert isinstance(value, ImportReport)
        self.report = value
        conflicts = len(value.conflicts)
        head = (
            "Imported."
            if value.ok
            else f"Imported with {len(value.issues)} issue(s), {conflicts} conflict(s)."
        )
        self.output.setPlainText(f"{head}\n\n{value.format_report()}")
        self.save_report.setEnabled(bool(value.issues))

    def _save_report(self) -> None:
        if self.report is None:
            return
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Save import report", "import-report.csv", "CSV files (*.csv)"
        )
        if chosen:
            try:
                self.report.write_csv(Path(chosen))
            except OSError as exc:
                self.output.appendPlainText(f"\nThe report could not be saved: {exc}")
