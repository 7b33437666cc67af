"""The import report: counts, every issue with its line, and extras (R5 conflicts go here)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from model_zoo.fileio import atomic_write_text
from sall_desktop.services.paths import refuse_protected_target
from training.protocol.csvsafe import escape_cell, format_table

GRADE_FIELDS = ("gradable", "ungradable_reason", "dr_grade", "amd_grade", "dme")
"""Grading fields compared and shown in conflicts."""


class IssueKind(enum.StrEnum):
    """Why a row of an import was not (fully) applied."""

    MALFORMED = "malformed"
    UNMATCHED = "unmatched"
    AMBIGUOUS = "ambiguous"
    NO_LABEL = "no_label"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    CONFLICT = "conflict"
    PROTECTED = "protected"
    NOT_MAPPED = "not_mapped"
    """Informational: a native value kept as an extra because its scale has no mapping."""


INFO_KINDS = frozenset({IssueKind.NOT_MAPPED})


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """One problem of an import, for the report.

    Attributes:
        kind: what went wrong.
        line: 1-based line in the file (0 when the issue concerns several lines).
        image_id: the id as written in the file.
        sha256: the resolved image, when known.
        message: grader-readable explanation.
        existing: the stored value in conflict (canonical text), if any.
        incoming: the file's value in conflict, if any.
    """

    kind: IssueKind
    line: int
    image_id: str
    message: str
    sha256: str = ""
    existing: str = ""
    incoming: str = ""


REPORT_COLUMNS = ("kind", "line", "image_id", "sha256", "existing", "incoming", "message")


@dataclass(frozen=True, slots=True)
class ImportReport:
    """The outcome of one import.

    Attributes:
        source: the file name.
        fmt: format name.
        grader: the grader name the gradings were written under.
        import_id: key of this import (extras are stored under it).
        rows_read: non-blank data rows in the file.
        added: gradings added for images this grader had not graded.
        replaced: earlier imported gradings superseded (``replace=True``).
        unchanged: rows equal to the grader's current grading (nothing written).
        issues: every problem, in file order.
        extras: unknown columns as (sha256, original header, value).
        extras_stored: True when the store kept the extras (``import_extras`` table).
        store_file: the database the import wrote to, when it is a file: :meth:`write_csv`
            refuses to write the report over it (or anything in the data folder).
    """

    source: str
    fmt: str
    grader: str
    import_id: str
    rows_read: int = 0
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    issues: tuple[ImportIssue, ...] = ()
    extras: tuple[tuple[str, str, str], ...] = ()
    extras_stored: bool = False
    store_file: Path | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True when every labelled row was applied (only informational issues)."""
        return all(issue.kind in INFO_KINDS for issue in self.issues)

    @property
    def conflicts(self) -> tuple[ImportIssue, ...]:
        """Issues where a value in the file disagrees with another value (file or store)."""
        kinds = {IssueKind.CONFLICT, IssueKind.DUPLICATE_CONFLICT, IssueKind.PROTECTED}
        return tuple(i for i in self.issues if i.kind in kinds)

    def format_report(self) -> str:
        """A short human-readable summary followed by one line per issue."""
        counts: dict[str, int] = {}
        for issue in self.issues:
            counts[issue.kind.value] = counts.get(issue.kind.value, 0) + 1
        lines = [
            f"{self.source} ({self.fmt}) as {self.grader}: {self.rows_read} rows, "
            f"{self.added} added, {self.replaced} replaced, {self.unchanged} unchanged, "
            f"{len(self.issues)} issues"
            + (f" ({', '.join(f'{k}: {n}' for k, n in sorted(counts.items()))})" if counts else "")
        ]
        if self.extras:
            where = "stored with the import" if self.extras_stored else "kept in this report"
            lines.append(f"  {len(self.extras)} values of unknown columns {where}")
        for issue in self.issues:
            at = f"line {issue.line}" if issue.line else "file"
            lines.append(f"  {at}: {issue.kind.value}: {issue.image_id}: {issue.message}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """The issues as CSV text (:data:`REPORT_COLUMNS`), formula-escaped."""
        return format_table(
            REPORT_COLUMNS,
            (
                (
                    i.kind.value,
                    str(i.line),
                    escape_cell(i.image_id),
                    i.sha256,
                    escape_cell(i.existing),
                    escape_cell(i.incoming),
                    escape_cell(i.message),
                )
                for i in self.issues
            ),
        )

    def write_csv(self, path: Path, *, db: Path | None = None) -> None:
        """Write :meth:`to_csv` atomically to ``path``.

        Args:
            path: the report file.
            db: the open database to protect (default: :attr:`store_file`).

        Raises:
            ProtectedTargetError: ``path`` is the database, one of its files or in the data
                folder (a :class:`PermissionError`, so callers reporting OSError report it).
            OSError: the file could not be written; a previous file is unchanged.
        """
        refuse_protected_target(path, db=db if db is not None else self.store_file)
        atomic_write_text(path, self.to_csv())


def describe_values(values: Mapping[str, object]) -> str:
    parts = []
    for name in GRADE_FIELDS:
        if name in values:
            value = values[name]
            if isinstance(value, enum.Enum):
                value = value.value
            parts.append(f"{name}={'' if value is None else value}")
    return " ".join(parts)
