"""The model manager: versions with lineage and metrics, the active marker, promote, roll back,
import (R12).

Every action runs on the store thread; a named person is required for promote and rollback, and
promoting a version whose gate did not pass needs a reason (recorded as an override).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.gui.finetune_window import StoreExecutor, _Returner
from sall_desktop.services import models as model_service
from sall_desktop.services.models import Store as SqliteLabelStore

T = TypeVar("T")
COLUMNS = (
    "",
    "name",
    "version",
    "id",
    "parent",
    "status",
    "gate",
    "source",
    "hold-out",
    "approver",
)


def _gate(passed: bool | None) -> str:
    return "—" if passed is None else ("passed" if passed else "FAILED")


class ModelManager(QDialog):
    """Lists model versions; promote, roll back and import.

    Signals:
        active_model_changed(str): the active version changed (id).
    """

    active_model_changed = Signal(str)

    def __init__(
        self, store: StoreExecutor, *, user: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self._store = store
        self._returner = _Returner(self)
        self.user = user
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.lineage_label = QLabel()
        self.lineage_label.setWordWrap(True)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.promote_button = QPushButton("Promote…")
        self.rollback_button = QPushButton("Roll back to this version…")
        self.import_button = QPushButton("Import…")
        self.promote_button.clicked.connect(self._ask_promote)
        self.rollback_button.clicked.connect(self._ask_rollback)
        self.import_button.clicked.connect(self._ask_import)
        buttons = QHBoxLayout()
        for b in (self.promote_button, self.rollback_button, self.import_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.lineage_label)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self.versions: list[model_service.ModelVersion] = []
        self.refresh()

    # ------------------------------------------------------------------ data

    def _run(self, fn: Callable[[SqliteLabelStore], T], on_ok: Callable[[T], None]) -> None:
        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self.status_label.setText(str(exc))
                return
            on_ok(result)

        self._returner.watch(self._store.submit(fn), done)

    def refresh(self) -> None:
        """Reload the versions (the active model is resolved first, so the demo registers)."""

        def load(store: SqliteLabelStore) -> list[model_service.ModelVersion]:
            model_service.active_model(store, verify=False)
            return model_service.list_models(store)

        self._run(load, self._fill)

    def _fill(self, versions: list[model_service.ModelVersion]) -> None:
        self.versions = versions
        self.table.setRowCount(len(versions))
        for row, v in enumerate(versions):
            cells = (
                "★ active" if v.is_active else "",
                v.name,
                v.version,
                v.short_id,
                (v.parent_id or "")[:12],
                v.status,
                _gate(v.gate_passed),
                v.source,
                model_service.metrics_summary(v),
                v.approver or "",
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1 and v.synthetic:
                    item.setToolTip(v.badge)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self._update_buttons()

    def selected(self) -> model_service.ModelVersion | None:
        """The selected version, or None."""
        rows = {i.row() for i in self.table.selectedItems()}
        return self.versions[rows.pop()] if len(rows) == 1 else None

    def select(self, model_id: str) -> None:
        """Select the row of ``model_id``."""
        for row, v in enumerate(self.versions):
            if v.id == model_id:
                self.table.selectRow(row)

    def _update_buttons(self) -> None:
        v = self.selected()
        self.promote_button.setEnabled(v is not None and v.status == "candidate")
        self.rollback_button.setEnabled(v is not None and not v.is_active and v.was_active)
        if v is None:
            self.lineage_label.setText("")
            return
        self._run(
            lambda store: model_service.lineage(store, v.id),
            lambda chain: self.lineage_label.setText(
                "Lineage: " + " ← ".join(f"{m.name} {m.version} ({m.short_id})" for m in chain)
            ),
        )

    # ------------------------------------------------------------------ actions (testable)

    def _changed(self, version: model_service.ModelVersion, verb: str) -> None:
        self.status_label.setText(f"{verb} {version.name} {version.version} ({version.short_id}).")
        self.active_model_changed.emit(version.id)
        self.refresh()

    def promote(self, model_id: str, approver: str, override_reason: str = "") -> None:
        """Promote ``model_id`` (an override reason is needed unless its gate passed)."""
        self._run(
            lambda store: model_service.promote(
                store, model_id, approver=approver, override_reason=override_reason
            ),
            lambda v: self._changed(v, "Promoted"),
        )

    def rollback(self, model_id: str, approver: str, reason: str = "") -> None:
        """Make an earlier active version active again."""
        self._run(
            lambda store: model_service.rollback(store, model_id, approver=approver, reason=reason),
            lambda v: self._changed(v, "Rolled back to"),
        )

    def import_folder(self, folder: Path, actor: str) -> None:
        """Import and verify a model folder as a candidate."""
        self.status_label.setText("Verifying the model…")

        def done(version: model_service.ModelVersion) -> None:
            self.status_label.setText(f"Imported {version.short_id}.")
            self.refresh()

        self._run(lambda store: model_service.import_model(store, folder, actor=actor), done)

    # ------------------------------------------------------------------ dialogs

    def _ask_name(self, title: str) -> str:
        name, ok = QInputDialog.getText(self, title, "Your name (recorded):", text=self.user)
        return name.strip() if ok else ""

    def _ask_promote(self) -> None:
        v = self.selected()
        if v is None:
            return
        approver = self._ask_name("Promote model")
        if not approver:
            return
        reason = ""
        if v.gate_passed is not True:
            reason, ok = QInputDialog.getText(
                self, "Override the gate", "The gate did not pass. Reason for promoting anyway:"
            )
            if not ok or not reason.strip():
                return
        self.promote(v.id, approver, reason)

    def _ask_rollback(self) -> None:
        v = self.selected()
        if v is None:
            return
        approver = self._ask_name("Roll back")
        if approver:
            self.rollback(v.id, approver, "rollback from the model manager")

    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model card", "", "card.json (*.json)")
        if path:
            self.import_folder(Path(path).parent, self.user or "grader")


__all__ = ["ModelManager"]
