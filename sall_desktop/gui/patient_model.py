"""Patients of the open folder, with their eyes and grading progress (the folder panel's list).

Row 0 is "All patients"; then one row per patient id in sorted order. Rows are inserted as the
catalogue identifies patients, and counts change in place (``dataChanged``), so a selection
survives a folder that is still being scanned.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from sall_desktop.domain.grades import Laterality
from sall_desktop.services.image_entry import ImageEntry

PATIENT_ID_ROLE = Qt.ItemDataRole.UserRole + 1
STATS_ROLE = Qt.ItemDataRole.UserRole + 2
ALL_PATIENTS = ""
NO_PATIENT = "\U0010ffff"
"""Key of the row gathering images without a patient id."""

AnyIndex = QModelIndex | QPersistentModelIndex


@dataclass(slots=True)
class PatientStats:
    images: int = 0
    graded: int = 0
    right: int = 0
    left: int = 0

    def text(self) -> str:
        eyes = []
        if self.right:
            eyes.append(f"OD {self.right}")
        if self.left:
            eyes.append(f"OS {self.left}")
        eye_text = f"  ·  {' '.join(eyes)}" if eyes else ""
        return f"{self.graded}/{self.images} graded{eye_text}"


class PatientListModel(QAbstractListModel):
    """One row per patient id (plus "All" first), kept sorted, updated incrementally."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._ids: list[str] = []
        self._stats: dict[str, PatientStats] = {}
        self._total = PatientStats()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else 1 + len(self._ids)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() <= len(self._ids):
            return None
        if index.row() == 0:
            key, stats, title = ALL_PATIENTS, self._total, "All patients"
        else:
            key = self._ids[index.row() - 1]
            stats = self._stats[key]
            title = "No patient id" if key == NO_PATIENT else key
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{title}\n{stats.text()}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{title}: {stats.images} images, {stats.graded} graded"
        if role == PATIENT_ID_ROLE:
            return key
        if role == STATS_ROLE:
            return (title, stats)
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    def clear(self) -> None:
        self.beginResetModel()
        self._ids, self._stats, self._total = [], {}, PatientStats()
        self.endResetModel()

    def row_of(self, patient_id: str) -> int:
        """The row of a patient key (``ALL_PATIENTS`` is row 0), -1 when absent."""
        if patient_id == ALL_PATIENTS:
            return 0
        position = bisect.bisect_left(self._ids, patient_id)
        if position < len(self._ids) and self._ids[position] == patient_id:
            return position + 1
        return -1

    def refresh(self, entries: Iterable[ImageEntry]) -> None:
        """Recount from the folder's entries; insert new patients, update changed counts."""
        stats: dict[str, PatientStats] = {}
        total = PatientStats()
        for entry in entries:
            if entry.record is None:
                continue
            key = entry.record.patient_id or NO_PATIENT
            s = stats.setdefault(key, PatientStats())
            for target in (s, total):
                target.images += 1
                target.graded += entry.grading is not None
                target.right += entry.laterality is Laterality.RIGHT
                target.left += entry.laterality is Laterality.LEFT
        for key in sorted(stats):
            if key not in self._stats:
                position = bisect.bisect_left(self._ids, key)
                self.beginInsertRows(QModelIndex(), position + 1, position + 1)
                self._ids.insert(position, key)
                self._stats[key] = stats[key]
                self.endInsertRows()
        changed = [
            i + 1 for i, key in enumerate(self._ids) if stats.get(key) != self._stats.get(key)
        ]
        for key in self._ids:
            self._stats[key] = stats.get(key, PatientStats())
        if total != self._total:
            self._total = total
            changed.insert(0, 0)
        if changed:
            self.dataChanged.emit(self.index(min(changed)), self.index(max(changed)))
