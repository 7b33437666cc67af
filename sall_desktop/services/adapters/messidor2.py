"""Messidor-2 adjudicated labels (Kaggle ``messidor_data.csv``).

Columns: ``image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable``.

- ``image_id`` carries the file extension (``20051020_43808_0100_PP.png``), so it is matched to
  files by full name, not by stem.
- ``adjudicated_dr_grade`` is ICDR 0-4 (unlike the original Messidor's 0-3 scale).
- ``adjudicated_dme`` is **binary** 0/1 (DME present). It is kept on its own scale
  (:attr:`DmeScale.BINARY`); mapping it to or from the 0-2 risk scale is lossy and is done only
  by the caller with the user's consent.
- ``adjudicated_gradable`` is 0/1; ungradable rows have blank grades (never 0). A row marked
  ungradable that still carries a grade is refused as contradictory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import ClassVar

from sall_desktop.domain.grades import DR_GRADES
from sall_desktop.services.adapters.base import (
    Adapter,
    DmeScale,
    LabelRecord,
    grade_cell,
    register_adapter,
)
from training.protocol.csvsafe import (
    escape_cell,
    format_bool_cell,
    format_int_cell,
    iter_table,
    parse_bool_cell,
    parse_int_cell,
    unescape_cell,
)

LOSSY_DME_NOTE = (
    "DME risk 0-2 written as adjudicated_dme 0/1 (0 -> 0, 1 and 2 -> 1): lossy mapping, accepted"
)
REFUSED_DME_NOTE = (
    "adjudicated_dme left blank: mapping DME risk 0-2 to 0/1 is lossy and was not accepted"
)
ID, DR, DME, GRADABLE = (
    "image_id",
    "adjudicated_dr_grade",
    "adjudicated_dme",
    "adjudicated_gradable",
)


@register_adapter
class Messidor2Adapter(Adapter):
    """Messidor-2 adjudicated grades (see the module docstring)."""

    name: ClassVar[str] = "messidor2"
    columns: ClassVar[tuple[str, ...]] = (ID, DR, DME, GRADABLE)
    id_has_extension: ClassVar[bool] = True
    id_style: ClassVar[str] = "name"
    label_fields: ClassVar[frozenset[str]] = frozenset({"dr_grade"})
    native_dme_column: ClassVar[str] = DME

    def prepare_export(self, record: LabelRecord, *, accept_lossy: bool) -> tuple[LabelRecord, str]:
        """Map the store's DME risk 0-2 to ``adjudicated_dme`` 0/1 only with consent."""
        if record.dme is None or record.dme_scale is DmeScale.BINARY:
            return record, ""
        if accept_lossy:
            mapped = replace(record, dme=1 if record.dme > 0 else 0, dme_scale=DmeScale.BINARY)
            return mapped, LOSSY_DME_NOTE
        return replace(record, dme=None), REFUSED_DME_NOTE

    def record_from_cells(self, cells: Mapping[str, str], line: int) -> LabelRecord:
        try:
            gradable = parse_bool_cell(cells[GRADABLE])
        except ValueError as exc:
            raise ValueError(f"column {GRADABLE!r}: {exc}") from exc
        return LabelRecord(
            image_id=unescape_cell(cells[ID]).strip(),
            dr_grade=grade_cell(lambda c: parse_int_cell(c, DR_GRADES), DR, cells[DR]),
            dme=grade_cell(lambda c: parse_int_cell(c, (0, 1)), DME, cells[DME]),
            dme_scale=DmeScale.BINARY,
            gradable=gradable,
            line=line,
        )

    def iter_text(self, records: Iterable[LabelRecord]) -> Iterator[str]:
        return iter_table(self.columns, (self._cells(r) for r in records))

    @staticmethod
    def _cells(record: LabelRecord) -> tuple[str, str, str, str]:
        if record.dme is not None and record.dme_scale is not DmeScale.BINARY:
            raise ValueError(
                "Messidor-2 DME is binary; mapping a 0-2 risk value needs the user's consent"
            )
        return (
            escape_cell(record.image_id),
            format_int_cell(record.dr_grade),
            format_int_cell(record.dme),
            format_bool_cell(record.gradable),
        )
