"""Our canonical label CSV: one row per image, every field we store (docs/grading-conventions.md).

The column set is the subset of the canonical record that SALL Desktop keeps today; it is
stable (a golden-header test pins it) and new columns are only ever appended.

Columns (exact header, in this order)::

    image_id,file_path,sha256,patient_id,laterality,laterality_source,gradable,
    ungradable_reason,dr_icdr,amd_grade,dme,grader_id,grader_role,source,timestamp,
    model_version,notes

- ``image_id``: the image's name without folder (identified export) or its pseudonym.
- ``file_path``: last known path (metadata only, R6); blank in de-identified exports.
- ``sha256``: identity, 64 lowercase hex; blank in de-identified exports.
- ``laterality`` R/L/B/blank, with ``laterality_source`` dicom_tag/filename_rule/user/inferred.
- ``gradable`` 1/0/blank; ``ungradable_reason`` only when gradable is 0.
- ``dr_icdr`` ICDR 0-4, ``amd_grade`` SALL AMD 0-3, ``dme`` Messidor/IDRiD risk 0-2; blank =
  unknown or ungradable, never 0.
- ``grader_id``, ``grader_role`` (primary/secondary/arbiter/reference), ``source``
  (human/accepted_prediction/import), ``timestamp`` (UTC ISO-8601), ``model_version`` (the model
  shown to the grader), ``notes`` (free text; blank unless the export allowlists it).

Free-text cells are formula-escaped (R17). Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields

from training.protocol.csvsafe import (
    CsvFormatError,
    escape_cell,
    format_bool_cell,
    format_int_cell,
    header_problem,
    iter_table,
    parse_bool_cell,
    parse_int_cell,
    parse_table,
    unescape_cell,
)
from training.protocol.manifest import AMD_RANGE, DR_RANGE, LATERALITIES, is_sha256

CANONICAL_COLUMNS: tuple[str, ...] = (
    "image_id",
    "file_path",
    "sha256",
    "patient_id",
    "laterality",
    "laterality_source",
    "gradable",
    "ungradable_reason",
    "dr_icdr",
    "amd_grade",
    "dme",
    "grader_id",
    "grader_role",
    "source",
    "timestamp",
    "model_version",
    "notes",
)
DME_RANGE: tuple[int, ...] = (0, 1, 2)
LATERALITY_SOURCES: tuple[str, ...] = ("dicom_tag", "filename_rule", "user", "inferred", "")
UNGRADABLE_REASONS: tuple[str, ...] = (
    "blur",
    "exposure",
    "artefact",
    "field",
    "media_opacity",
    "other",
    "",
)
GRADER_ROLES: tuple[str, ...] = ("primary", "secondary", "arbiter", "reference", "")
GRADING_SOURCES: tuple[str, ...] = ("human", "accepted_prediction", "import", "")
_TEXT_COLUMNS = frozenset(
    {"image_id", "file_path", "patient_id", "grader_id", "timestamp", "model_version", "notes"}
)


class CanonicalError(ValueError):
    """A malformed canonical row or file; the message names the line, column and reason."""


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(a for a in allowed if a) + " or blank"
        raise CanonicalError(f"{name} must be one of {shown}, got {value!r}")


@dataclass(frozen=True, slots=True)
class CanonicalRow:
    """One image's current grading in canonical form (see the module docstring).

    Raises:
        CanonicalError: on construction with an invalid value.
    """

    image_id: str = ""
    file_path: str = ""
    sha256: str = ""
    patient_id: str = ""
    laterality: str = ""
    laterality_source: str = ""
    gradable: bool | None = None
    ungradable_reason: str = ""
    dr_icdr: int | None = None
    amd_grade: int | None = None
    dme: int | None = None
    grader_id: str = ""
    grader_role: str = ""
    source: str = ""
    timestamp: str = ""
    model_version: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.image_id and not self.sha256:
            raise CanonicalError("a row needs an image_id or a sha256")
        if self.sha256 and not is_sha256(self.sha256):
            raise CanonicalError(f"sha256 must be 64 lowercase hex characters, got {self.sha256!r}")
        for name in _TEXT_COLUMNS:
            if "\0" in getattr(self, name):
                raise CanonicalError(f"{name} cannot contain NUL characters")
        _check_choice("laterality", self.laterality, LATERALITIES)
        _check_choice("laterality_source", self.laterality_source, LATERALITY_SOURCES)
        _check_choice("ungradable_reason", self.ungradable_reason, UNGRADABLE_REASONS)
        _check_choice("grader_role", self.grader_role, GRADER_ROLES)
        _check_choice("source", self.source, GRADING_SOURCES)
        for name, value, allowed in (
            ("dr_icdr", self.dr_icdr, DR_RANGE),
            ("amd_grade", self.amd_grade, AMD_RANGE),
            ("dme", self.dme, DME_RANGE),
        ):
            if value is not None and (isinstance(value, bool) or value not in allowed):
                raise CanonicalError(f"{name} must be {allowed[0]}-{allowed[-1]} or blank")
        if self.gradable is False:
            if self.dr_icdr is not None or self.amd_grade is not None or self.dme is not None:
                raise CanonicalError("an ungradable image has blank grades, never a grade")
        elif self.ungradable_reason:
            raise CanonicalError("ungradable_reason is only allowed when gradable is 0")


def canonical_cells(row: CanonicalRow) -> tuple[str, ...]:
    """The row's cells in :data:`CANONICAL_COLUMNS` order, escaped and formatted as written.

    For writers that append columns of their own after the canonical ones.
    """
    out: list[str] = []
    for name, kind in _CELL_KINDS:
        value = getattr(row, name)
        if kind == "text":
            out.append(escape_cell(value))
        elif kind == "bool":
            out.append(format_bool_cell(value))
        elif kind == "int":
            out.append(format_int_cell(value))
        else:
            out.append(value)
    return tuple(out)


_CELL_KINDS: tuple[tuple[str, str], ...] = tuple(
    (
        spec.name,
        "text"
        if spec.name in _TEXT_COLUMNS
        else "bool"
        if spec.name == "gradable"
        else "int"
        if spec.name in ("dr_icdr", "amd_grade", "dme")
        else "choice",
    )
    for spec in fields(CanonicalRow)
)
"""(column, how it is written), in column order: computed once, used per row."""


def iter_canonical(rows: Iterable[CanonicalRow]) -> Iterator[str]:
    """Canonical CSV lines: the exact :data:`CANONICAL_COLUMNS` header, then one per row."""
    return iter_table(CANONICAL_COLUMNS, (canonical_cells(row) for row in rows))


def format_canonical(rows: Iterable[CanonicalRow]) -> str:
    """Canonical CSV text with the exact :data:`CANONICAL_COLUMNS` header, ``\\n`` line ends."""
    return "".join(iter_canonical(rows))


def canonical_row_from_cells(values: Mapping[str, str]) -> CanonicalRow:
    """Build a row from raw cells keyed by canonical column name (missing columns are blank).

    Raises:
        CanonicalError: a bad value; the message starts with the column name.
    """
    column = ""
    try:
        column = "gradable"
        gradable = parse_bool_cell(values.get("gradable", ""))
        column = "dr_icdr"
        dr = parse_int_cell(values.get("dr_icdr", ""), DR_RANGE)
        column = "amd_grade"
        amd = parse_int_cell(values.get("amd_grade", ""), AMD_RANGE)
        column = "dme"
        dme = parse_int_cell(values.get("dme", ""), DME_RANGE)
    except ValueError as exc:
        raise CanonicalError(f"column {column}: {exc}") from exc

    def text(name: str) -> str:
        raw = values.get(name, "")
        return unescape_cell(raw) if name in _TEXT_COLUMNS else raw.strip()

    return CanonicalRow(
        image_id=text("image_id"),
        file_path=text("file_path"),
        sha256=text("sha256").lower(),
        patient_id=text("patient_id"),
        laterality=text("laterality").upper(),
        laterality_source=text("laterality_source").lower(),
        gradable=gradable,
        ungradable_reason=text("ungradable_reason").lower(),
        dr_icdr=dr,
        amd_grade=amd,
        dme=dme,
        grader_id=text("grader_id"),
        grader_role=text("grader_role").lower(),
        source=text("source").lower(),
        timestamp=text("timestamp"),
        model_version=text("model_version"),
        notes=text("notes"),
    )


def parse_canonical(text: str, *, source: str = "labels") -> list[CanonicalRow]:
    """Parse canonical CSV text strictly: exact header, every row valid.

    The app's importer is more tolerant (header case, extra columns, per-row reporting); this
    strict reader is for files we wrote ourselves.

    Raises:
        CanonicalError: wrong header, ragged or invalid row; the message names line and column.
    """
    try:
        table = parse_table(text, source=source)
    except CsvFormatError as exc:
        raise CanonicalError(str(exc)) from exc
    problem = header_problem(table, CANONICAL_COLUMNS, source=source)
    if problem is not None:
        raise CanonicalError(problem)
    rows: list[CanonicalRow] = []
    for line, cells in table.rows:
        if len(cells) != len(CANONICAL_COLUMNS):
            raise CanonicalError(
                f"{source}, line {line}: expected {len(CANONICAL_COLUMNS)} cells, got {len(cells)}"
            )
        try:
            rows.append(canonical_row_from_cells(dict(zip(CANONICAL_COLUMNS, cells, strict=True))))
        except CanonicalError as exc:
            raise CanonicalError(f"{source}, line {line}: {exc}") from exc
    return rows
