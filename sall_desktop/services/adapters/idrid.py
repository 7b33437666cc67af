"""IDRiD disease grading labels: ``Image name,Retinopathy grade,Risk of macular edema ``.

The DME header really ends with a space, and the published files carry stray empty columns;
both are tolerated on import (headers are matched stripped, empty columns ignored) and the
trailing space is written on export because consumers index the column by its exact name.
``Image name`` is ``IDRiD_001`` without extension (matched by stem); ``Retinopathy grade`` is
ICDR 0-4; ``Risk of macular edema `` is the 0-2 risk scale the store keeps. No gradability
column: ungradable images are written with blank grades, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar

from sall_desktop.domain.grades import DME_GRADES, DR_GRADES
from sall_desktop.services.adapters.base import (
    Adapter,
    DmeScale,
    LabelRecord,
    grade_cell,
    register_adapter,
)
from training.protocol.csvsafe import (
    escape_cell,
    format_int_cell,
    iter_table,
    parse_int_cell,
    unescape_cell,
)

ID, DR, DME = "Image name", "Retinopathy grade", "Risk of macular edema "


@register_adapter
class IdridAdapter(Adapter):
    """IDRiD disease grading (see the module docstring)."""

    name: ClassVar[str] = "idrid"
    columns: ClassVar[tuple[str, ...]] = (ID, DR, DME)
    label_fields: ClassVar[frozenset[str]] = frozenset({"dr_grade", "dme"})

    def record_from_cells(self, cells: Mapping[str, str], line: int) -> LabelRecord:
        return LabelRecord(
            image_id=unescape_cell(cells[ID]).strip(),
            dr_grade=grade_cell(lambda c: parse_int_cell(c, DR_GRADES), DR, cells[DR]),
            dme=grade_cell(lambda c: parse_int_cell(c, DME_GRADES), DME, cells[DME]),
            dme_scale=DmeScale.RISK_0_2,
            line=line,
        )

    def iter_text(self, records: Iterable[LabelRecord]) -> Iterator[str]:
        return iter_table(self.columns, (self._cells(r) for r in records))

    @staticmethod
    def _cells(record: LabelRecord) -> tuple[str, str, str]:
        if record.dme is not None and record.dme_scale is not DmeScale.RISK_0_2:
            raise ValueError("IDRiD stores DME risk 0-2; a binary DME value cannot be mapped")
        return (
            escape_cell(record.image_id),
            format_int_cell(record.dr_grade),
            format_int_cell(record.dme),
        )
