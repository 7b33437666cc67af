"""Our canonical label CSV (``training.protocol.canonical``): one row per image, every field.

This adapter converts between the stdlib-only :class:`CanonicalRow` and :class:`LabelRecord`
(domain enums). Import is tolerant of header case and extra columns like every adapter; the
sha256 column, when filled, identifies the image directly (R6).

After the canonical columns an export appends the derived ones (:mod:`.derived`: how a final
grade was reached, the graders at each level, NHS codes, the visit's outcome). A file may lack
them (files written before they existed); when present they are read back onto the record as
text and the importer never makes a grading of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    GradingSource,
    Laterality,
    UngradableReason,
)
from sall_desktop.services.adapters.base import Adapter, DmeScale, LabelRecord, register_adapter
from sall_desktop.services.adapters.derived import (
    DERIVED_COLUMNS,
    DerivedColumns,
    derived_cells,
    derived_from_cells,
)
from training.protocol.canonical import (
    CANONICAL_COLUMNS,
    CanonicalError,
    CanonicalRow,
    canonical_cells,
    canonical_row_from_cells,
)
from training.protocol.csvsafe import iter_table


def record_from_canonical(
    row: CanonicalRow, line: int = 0, derived: DerivedColumns | None = None
) -> LabelRecord:
    """Canonical row -> label record (vocabularies are already checked by ``CanonicalRow``)."""
    return LabelRecord(
        image_id=row.image_id,
        sha256=row.sha256,
        file_path=row.file_path,
        patient_id=row.patient_id,
        laterality=Laterality(row.laterality),
        laterality_source=FieldSource(row.laterality_source),
        gradable=row.gradable,
        ungradable_reason=UngradableReason(row.ungradable_reason)
        if row.ungradable_reason
        else None,
        dr_grade=row.dr_icdr,
        amd_grade=row.amd_grade,
        dme=row.dme,
        dme_scale=DmeScale.RISK_0_2,
        grader=row.grader_id,
        grader_role=GraderRole(row.grader_role) if row.grader_role else None,
        source=GradingSource(row.source) if row.source else None,
        timestamp=row.timestamp,
        model_version=row.model_version,
        notes=row.notes,
        line=line,
        derived=derived or DerivedColumns(),
    )


def canonical_from_record(record: LabelRecord) -> CanonicalRow:
    """Label record -> canonical row.

    Raises:
        ValueError: the record's DME is on the binary scale (no defined 0-2 mapping).
    """
    if record.dme is not None and record.dme_scale is not DmeScale.RISK_0_2:
        raise ValueError("the canonical DME column is the 0-2 risk scale; binary DME cannot map")
    return CanonicalRow(
        image_id=record.image_id,
        file_path=record.file_path,
        sha256=record.sha256,
        patient_id=record.patient_id,
        laterality=record.laterality.value,
        laterality_source=record.laterality_source.value,
        gradable=record.gradable,
        ungradable_reason=record.ungradable_reason.value if record.ungradable_reason else "",
        dr_icdr=record.dr_grade,
        amd_grade=record.amd_grade,
        dme=record.dme,
        grader_id=record.grader,
        grader_role=record.grader_role.value if record.grader_role else "",
        source=record.source.value if record.source else "",
        timestamp=record.timestamp,
        model_version=record.model_version,
        notes=record.notes,
    )


@register_adapter
class CanonicalAdapter(Adapter):
    """The canonical CSV (``training.protocol.canonical``), then the derived columns."""

    name: ClassVar[str] = "canonical"
    columns: ClassVar[tuple[str, ...]] = CANONICAL_COLUMNS + DERIVED_COLUMNS
    optional_columns: ClassVar[frozenset[str]] = frozenset(DERIVED_COLUMNS)
    label_fields: ClassVar[frozenset[str]] = frozenset(
        {"dr_grade", "amd_grade", "dme", "notes", "model_version"}
    )
    id_style: ClassVar[str] = "name"

    def record_from_cells(self, cells: Mapping[str, str], line: int) -> LabelRecord:
        try:
            row = canonical_row_from_cells(cells)
        except CanonicalError as exc:
            raise ValueError(str(exc)) from exc
        return record_from_canonical(row, line, derived_from_cells(cells))

    def iter_text(self, records: Iterable[LabelRecord]) -> Iterator[str]:
        return iter_table(
            self.columns,
            (canonical_cells(canonical_from_record(r)) + derived_cells(r.derived) for r in records),
        )
