"""What the image grid shows: one row's state (:class:`ImageEntry`), the filter and the sort."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sall_desktop.domain.grades import AMD_NAMES, DR_NAMES, Grading, ImageRecord, Laterality
from sall_desktop.services.grading import SaveState


@dataclass(slots=True, eq=False)
class ImageEntry:
    """One row's state, owned by the GUI thread (not shared with workers)."""

    path: str
    record: ImageRecord | None = None
    error: str = ""
    duplicate_of: str = ""
    grading: Grading | None = None
    save_state: SaveState | None = None
    thumbnail_error: str = ""
    index: int = field(default=-1)
    version: int = 0
    """Bumped on every change, so views can cache what they drew for this entry."""

    @property
    def sha256(self) -> str:
        return self.record.sha256 if self.record is not None else ""

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def patient_id(self) -> str:
        return self.record.patient_id if self.record is not None else ""

    @property
    def laterality(self) -> Laterality:
        return self.record.laterality if self.record is not None else Laterality.UNKNOWN

    @property
    def gradable_image(self) -> bool:
        """The file was read (it can be shown and graded)."""
        return self.record is not None and not self.error

    @property
    def graded(self) -> bool:
        return self.grading is not None


class StatusFilter(enum.StrEnum):
    ALL = "all"
    UNGRADED = "ungraded"
    GRADED = "graded"
    UNGRADABLE = "ungradable"
    UNREADABLE = "unreadable"


class SortKey(enum.StrEnum):
    PATH = "path"
    PATIENT_EYE = "patient_eye"
    DR = "dr"
    AMD = "amd"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class ImageFilter:
    """What the grid shows. ``None`` fields do not filter."""

    status: StatusFilter = StatusFilter.ALL
    dr_grade: int | None = None
    amd_grade: int | None = None
    laterality: Laterality | None = None
    patient_id: str | None = None

    def accepts(self, entry: ImageEntry) -> bool:
        g = entry.grading
        if self.status is StatusFilter.UNGRADED and (g is not None or entry.error):
            return False
        if self.status is StatusFilter.GRADED and g is None:
            return False
        if self.status is StatusFilter.UNGRADABLE and (g is None or g.gradable):
            return False
        if self.status is StatusFilter.UNREADABLE and not entry.error:
            return False
        if self.dr_grade is not None and (g is None or g.dr_grade != self.dr_grade):
            return False
        if self.amd_grade is not None and (g is None or g.amd_grade != self.amd_grade):
            return False
        if self.laterality is not None and entry.laterality is not self.laterality:
            return False
        return self.patient_id is None or entry.patient_id == self.patient_id


def sort_key(key: SortKey) -> Callable[[ImageEntry], tuple[Any, ...]]:
    big = 99
    if key is SortKey.PATIENT_EYE:
        return lambda e: (e.patient_id or "\uffff", str(e.laterality) or "Z", e.path)
    if key is SortKey.DR:
        return lambda e: (
            -(e.grading.dr_grade if e.grading and e.grading.dr_grade is not None else -1),
            e.path,
        )
    if key is SortKey.AMD:
        return lambda e: (
            -(e.grading.amd_grade if e.grading and e.grading.amd_grade is not None else -1),
            e.path,
        )
    if key is SortKey.STATUS:
        return lambda e: (
            0 if e.grading is None and not e.error else 1 if e.grading else big,
            e.path,
        )
    return lambda e: (e.path,)


def describe_grading(grading: Grading | None) -> str:
    """Short text of a grading for tooltips and the status of a tile."""
    if grading is None:
        return "Not graded"
    if not grading.gradable:
        reason = (
            str(grading.ungradable_reason).replace("_", " ") if grading.ungradable_reason else ""
        )
        return f"Ungradable ({reason})"
    parts = []
    if grading.dr_grade is not None:
        parts.append(f"DR {grading.dr_grade} {DR_NAMES[grading.dr_grade]}")
    if grading.amd_grade is not None:
        parts.append(f"AMD {grading.amd_grade} {AMD_NAMES[grading.amd_grade]}")
    if grading.dme is not None:
        parts.append(f"DME {grading.dme}")
    return " · ".join(parts) if parts else "Draft (no grade)"
