"""The training manifest (``training.protocol.manifest``) as a label format.

``image_id`` is the manifest's ``image_path``; ``sha256`` identifies the image. ``gradable`` 0
rows have blank grades. The manifest has no DME column. A manifest always carries real paths
(training must open the files), so it is an internal, identified file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar

from sall_desktop.domain.grades import Laterality
from sall_desktop.services.adapters.base import Adapter, LabelRecord, register_adapter
from training.protocol.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    ManifestRow,
    iter_manifest,
    manifest_row_from_cells,
)


def manifest_from_record(record: LabelRecord) -> ManifestRow:
    """Label record -> manifest row (``split`` defaults to ``train`` when blank).

    Raises:
        ManifestError: no sha256, no path, or another invalid value.
    """
    return ManifestRow(
        image_path=record.file_path or record.image_id,
        sha256=record.sha256,
        patient_id=record.patient_id,
        laterality=record.laterality.value,
        dr_grade=record.dr_grade,
        amd_grade=record.amd_grade,
        gradable=record.gradable,
        split=record.split or "train",
    )


@register_adapter
class ManifestAdapter(Adapter):
    """The frozen training manifest (see the module docstring)."""

    name: ClassVar[str] = "manifest"
    columns: ClassVar[tuple[str, ...]] = MANIFEST_COLUMNS
    label_fields: ClassVar[frozenset[str]] = frozenset({"dr_grade", "amd_grade"})
    id_style: ClassVar[str] = "path"
    internal_only: ClassVar[bool] = True

    def record_from_cells(self, cells: Mapping[str, str], line: int) -> LabelRecord:
        try:
            row = manifest_row_from_cells(cells)
        except ManifestError as exc:
            raise ValueError(str(exc)) from exc
        return LabelRecord(
            image_id=row.image_path,
            sha256=row.sha256,
            file_path=row.image_path,
            patient_id=row.patient_id,
            laterality=Laterality(row.laterality),
            gradable=row.gradable,
            dr_grade=row.dr_grade,
            amd_grade=row.amd_grade,
            split=row.split,
            line=line,
        )

    def iter_text(self, records: Iterable[LabelRecord]) -> Iterator[str]:
        return iter_manifest(manifest_from_record(r) for r in records)
