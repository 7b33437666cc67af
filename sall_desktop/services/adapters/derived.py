"""Columns an export derives from the store, written after a grading's own fields.

The canonical export appends them (docs/grading-conventions.md, Canonical): how the exported
grade was reached in a screening programme, who graded at each level, the grading's NHS code
and its visit's outcome. They describe the row; they are never a grade. Reading a file back keeps
them on the record as text and the importer never turns them into a grading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from training.protocol.csvsafe import escape_cell, unescape_cell

DERIVED_COLUMNS: tuple[str, ...] = (
    "how_reached",
    "primary_grader",
    "secondary_grader",
    "arbiter",
    "nhs_r",
    "nhs_m",
    "nhs_lossy",
    "visit_outcome",
)
_NAME_COLUMNS = frozenset({"primary_grader", "secondary_grader", "arbiter"})


@dataclass(frozen=True, slots=True)
class DerivedColumns:
    """A record's derived cells, as text ("" is blank).

    Attributes:
        how_reached: single, agreed or arbitrated (programme final grades only).
        primary_grader / secondary_grader / arbiter: who graded the image at each level (names,
            or pseudonyms in a de-identified export).
        nhs_r / nhs_m: the grading's NHS retinopathy and maculopathy codes ("R1/R2" when ICDR 2).
        nhs_lossy: "1" when the NHS code is not exact, "0" when it is, "" without a code.
        visit_outcome: the NHS code text of the worse eye of the image's visit.
    """

    how_reached: str = ""
    primary_grader: str = ""
    secondary_grader: str = ""
    arbiter: str = ""
    nhs_r: str = ""
    nhs_m: str = ""
    nhs_lossy: str = ""
    visit_outcome: str = ""


def derived_cells(derived: DerivedColumns) -> tuple[str, ...]:
    """The cells in :data:`DERIVED_COLUMNS` order; grader names are formula-escaped (R17)."""
    return tuple(
        escape_cell(getattr(derived, name)) if name in _NAME_COLUMNS else getattr(derived, name)
        for name in DERIVED_COLUMNS
    )


def derived_from_cells(cells: Mapping[str, str]) -> DerivedColumns:
    """Read the derived cells of one row (missing columns are blank); nothing is validated."""
    return DerivedColumns(
        **{
            name: unescape_cell(cells.get(name, ""))
            if name in _NAME_COLUMNS
            else cells.get(name, "").strip()
            for name in DERIVED_COLUMNS
        }
    )
