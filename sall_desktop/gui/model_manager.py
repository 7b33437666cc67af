"""The model manager: versions with lineage and metrics, the active marker, promote, roll back,
import (R12).

A view over :class:`~sall_desktop.services.model_versions.ModelVersions`: every action is the
service's (on the store thread), and its futures come back through a relay. A named person is
required for promote and rollback. The gate column says passed, failed or not enough evidence;
only a version whose gate passed can be promoted (there is no override), and a never-gated
import only while no model is active. Why Promote is disabled is shown in its tooltip and under
the table.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
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

from sall_desktop.gui.geometry import remember_geometry
from sall_desktop.gui.relay import Relay
from sall_desktop.services import gate_evidence
from sall_desktop.services import models as model_service
from sall_desktop.services.model_versions import ModelListing, ModelVersions
from sall_desktop.services.store_executor import StoreExecutor
from training.protocol.report import GateVerdict

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


def _gate(status: str | None) -> str:
    return "— (not gated)" if status is None else gate_evidence.STATUS_WORDS[status]


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
        # Every column (status, gate, hold-out) visible without resizing; then where the
        # grader left it. Esc closes it (a QDialog's reject), as does Close.
        remember_geometry(self, "models", 1100, 560)
        self.service = ModelVersions(store)
        self._relay = Relay(self)
        self.user = user
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.lineage_label = QLabel()
        self.lineage_label.setWordWrap(True)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.promote_note = QLabel()  # why Promote is disabled for the selected version
        self.promote_note.setWordWrap(True)
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
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.lineage_label)
        layout.addWidget(self.promote_note)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self.listing = ModelListing([])
        self.refresh()

    # ------------------------------------------------------------------ data

    def _run(self, future: Future[T], on_ok: Callable[[T], None]) -> None:
        self._relay.watch(future, on_ok, lambda exc: self.status_label.setText(str(exc)))

    def refresh(self) -> None:
        """Reload the versions (the active model is resolved first, so the demo registers)."""
        self._run(self.service.listing(), self._fill)

    def _fill(self, listing: ModelListing) -> None:
        self.listing = listing
        self.table.setRowCount(len(listing.versions))
        for row, v in enumerate(listing.versions):
            cells = (
                "★ active" if v.is_active else "",
                v.name,
                v.version,
                v.short_id,
                (v.parent_id or "")[:12],
                v.status,
                _gate(v.gate_status),
                v.source,
                model_service.metrics_summary(v),
                v.approver or "",
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1 and v.synthetic:
                    item.setToolTip(v.badge)
                if col == COLUMNS.index("gate"):
                    item.setToolTip(self._gate_details(v))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self._update_buttons()

    @property
    def versions(self) -> list[model_service.ModelVersion]:
        """The versions shown, one a row."""
        return self.listing.versions

    @property
    def verdicts(self) -> dict[str, GateVerdict]:
        """Version id -> its stored gate verdict."""
        return self.listing.verdicts

    def selected(self) -> model_service.ModelVersion | None:
        """The selected version, or None."""
        rows = {i.row() for i in self.table.selectedItems()}
        return self.versions[rows.pop()] if len(rows) == 1 else None

    def select(self, model_id: str) -> None:
        """Select the row of ``model_id``."""
        for row, v in enumerate(self.versions):
            if v.id == model_id:
                self.table.selectRow(row)

    def _gate_details(self, v: model_service.ModelVersion) -> str:
        """The gate's checks of ``v``, one per line (the stored report's, else the card's)."""
        verdict = self.verdicts.get(v.id)
        if verdict is not None:
            return "\n".join(r.message for r in gate_evidence.check_rows(verdict))
        gate = v.metrics.get("gate")
        checks = gate.get("checks") if isinstance(gate, dict) else None
        if isinstance(checks, list) and checks:
            return "\n".join(str(c) for c in checks)
        return "No gate verdict: this version was not fine-tuned here."

    def promotion_refusal(self, v: model_service.ModelVersion) -> str:
        """Why candidate ``v`` cannot be promoted, or ``""`` (the service's rule; an active or
        retired version has no Promote, only a rollback)."""
        return self.listing.promotion_refusal(v)

    def _update_buttons(self) -> None:
        v = self.selected()
        why = self.promotion_refusal(v) if v is not None else ""
        self.promote_button.setEnabled(v is not None and v.status == "candidate" and not why)
        self.promote_button.setToolTip(why)
        self.promote_note.setText(why)
        self.rollback_button.setEnabled(v is not None and not v.is_active and v.was_active)
        if v is None:
            self.lineage_label.setText("")
            return
        self._run(
            self.service.lineage(v.id),
            lambda chain: self.lineage_label.setText(
                "Lineage: " + " ← ".join(f"{m.name} {m.version} ({m.short_id})" for m in chain)
            ),
        )

    # ------------------------------------------------------------------ actions (testable)

    def _changed(self, version: model_service.ModelVersion, verb: str) -> None:
        self.status_label.setText(f"{verb} {version.name} {version.version} ({version.short_id}).")
        self.active_model_changed.emit(version.id)
        self.refresh()

    def promote(self, model_id: str, approver: str) -> None:
        """Promote ``model_id`` (the service refuses one whose gate did not pass)."""
        self._run(
            self.service.promote(model_id, approver),
            lambda v: self._changed(v, "Promoted"),
        )

    def rollback(self, model_id: str, approver: str, reason: str = "") -> None:
        """Make an earlier active version active again."""
        self._run(
            self.service.rollback(model_id, approver, reason),
            lambda v: self._changed(v, "Rolled back to"),
        )

    def import_folder(self, folder: Path, actor: str) -> None:
        """Import and verify a model folder as a candidate."""
        self.status_label.setText("Verifying the model…")

        def done(version: model_service.ModelVersion) -> None:
            self.status_label.setText(f"Imported {version.short_id}.")
            self.refresh()

        self._run(self.service.import_folder(folder, actor), done)

    # ------------------------------------------------------------------ dialogs

    def _ask_name(self, title: str) -> str:
        name, ok = QInputDialog.getText(self, title, "Your name (recorded):", text=self.user)
        return name.strip() if ok else ""

    def _ask_promote(self) -> None:
        v = self.selected()
        if v is None or self.promotion_refusal(v):
            return
        approver = self._ask_name("Promote model")
        if approver:
            self.promote(v.id, approver)

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
