"""What every label-file adapter shares: the record, the registry, header matching, CSV reading.

An *adapter* knows one file format (its golden header, native columns and quirks). It turns file
text into :class:`LabelRecord` values and back; it never touches the store, never resolves ids to
images and never decides about conflicts (``services.labels_io`` does).

Formats register themselves by name with :func:`register_adapter`; callers use
:func:`get_adapter` (``"eyepacs"``, ...), never an ``if name == ...`` chain.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, TypeVar

from model_zoo.fileio import atomic_writer
from sall_desktop.domain.grades import (
    AMD_GRADES,
    DME_GRADES,
    DR_GRADES,
    FieldSource,
    GraderRole,
    GradingSource,
    ImageRecord,
    Laterality,
    UngradableReason,
)
from sall_desktop.services.adapters.derived import DerivedColumns
from training.protocol.csvsafe import (
    CsvFormatError,
    escape_cell,
    format_int_cell,
    iter_table,
    normalise_header,
    parse_int_cell,
    parse_table,
    read_csv_text,
    unescape_cell,
)


class LabelFileError(ValueError):
    """A label file that cannot be read or written as a whole (wrong header, not CSV, ...).

    Row-level problems are not raised: they become :class:`RowIssue` values.
    """


class DmeScale(enum.StrEnum):
    """Which DME scale a ``dme`` value is on; never mixed silently (docs/grading-conventions.md)."""

    RISK_0_2 = "risk_0_2"
    """Messidor / IDRiD risk of macular oedema 0-2: the scale the store keeps."""
    BINARY = "binary"
    """Messidor-2 ``adjudicated_dme`` 0/1 (DME present); mapping to 0-2 is not defined."""


def _check(name: str, value: int | None, allowed: tuple[int, ...]) -> None:
    if value is not None and (isinstance(value, bool) or value not in allowed):
        raise ValueError(f"{name} must be {allowed[0]}-{allowed[-1]} or blank, got {value!r}")


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One row of a label file, format-neutral. Blank cells are None / "" (never 0).

    Args:
        image_id: the id as the file writes it (``10_left``, ``IDRiD_001``, ``x.png``, a path).
        sha256: content identity when the format carries it (canonical, manifest), else "".
        file_path: path column of canonical / manifest files.
        gradable: None = unknown; False = ungradable (then every grade is None).
        dr_grade: ICDR 0-4; amd_grade: SALL AMD 0-3; dme: on ``dme_scale``.
        split: manifest split, "" elsewhere.
        line: 1-based line in the source file (0 for records built in code); not compared.
        extras: unknown columns as (original header text, raw cell), in file order.
        derived: cells an export derives (final grade, NHS code; only canonical writes them);
            never a grade, and never imported as one.
    """

    image_id: str
    sha256: str = ""
    file_path: str = ""
    patient_id: str = ""
    laterality: Laterality = Laterality.UNKNOWN
    laterality_source: FieldSource = FieldSource.NONE
    gradable: bool | None = None
    ungradable_reason: UngradableReason | None = None
    dr_grade: int | None = None
    amd_grade: int | None = None
    dme: int | None = None
    dme_scale: DmeScale = DmeScale.RISK_0_2
    grader: str = ""
    grader_role: GraderRole | None = None
    source: GradingSource | None = None
    timestamp: str = ""
    model_version: str = ""
    notes: str = ""
    split: str = ""
    line: int = field(default=0, compare=False)
    extras: tuple[tuple[str, str], ...] = ()
    derived: DerivedColumns = DerivedColumns()

    def __post_init__(self) -> None:
        if not self.image_id and not self.sha256:
            raise ValueError("the row has no image id")
        _check("DR grade", self.dr_grade, DR_GRADES)
        _check("AMD grade", self.amd_grade, AMD_GRADES)
        _check("DME", self.dme, DME_GRADES if self.dme_scale is DmeScale.RISK_0_2 else (0, 1))
        if self.gradable is False:
            if self.dr_grade is not None or self.amd_grade is not None or self.dme is not None:
                raise ValueError("an ungradable image must have blank grades, not a grade")
        elif self.ungradable_reason is not None:
            raise ValueError("an ungradable reason is only allowed on an ungradable image")

    @property
    def has_label(self) -> bool:
        """True when the row says anything: a grade, or ungradable."""
        return self.gradable is False or any(
            v is not None for v in (self.dr_grade, self.amd_grade, self.dme)
        )


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A row that could not be used, with the reason in words.

    Attributes:
        line: 1-based line in the file.
        message: what is wrong (grader-readable).
        image_id: the row's id cell when it could be read.
    """

    line: int
    message: str
    image_id: str = ""


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A leniently parsed label file.

    Attributes:
        header: the header cells as written (original text, e.g. IDRiD's trailing space).
        records: valid rows in file order.
        issues: rows that were skipped, with reasons.
        rows_read: non-blank data rows seen.
    """

    header: tuple[str, ...]
    records: tuple[LabelRecord, ...]
    issues: tuple[RowIssue, ...]
    rows_read: int


@dataclass(frozen=True, slots=True)
class ExportItem:
    """One image to export: its label record and the catalogue entry (where the file is)."""

    record: LabelRecord
    image: ImageRecord


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Format-independent export switches, decided by ``services.labels_io``.

    Attributes:
        overwrite: replace an existing target (files) or write into a non-empty folder (trees).
        strip_metadata: de-identified pixel exports remove embedded metadata (EXIF, text chunks).
        task: which head an ImageFolder tree is built for (``dr`` or ``amd``).
        hardlink: ImageFolder trees hard-link files when possible instead of copying.
    """

    overwrite: bool = True
    strip_metadata: bool = True
    task: str = "dr"
    hardlink: bool = False


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an adapter wrote: the number of rows/files and the items it refused, with reasons."""

    written: int
    skipped: tuple[tuple[str, str], ...] = ()


class Adapter:
    """Base class of every format. Subclasses set the class attributes and override hooks.

    Attributes:
        name: registry key and command-line format name.
        columns: the golden header, exact text, in export order.
        id_has_extension: dataset ids carry the file extension (Messidor-2) rather than
            being matched by stem (EyePACS, APTOS, IDRiD).
        can_read: False for export-only formats (ImageFolder).
        label_fields: grading fields the format carries (``dr_grade``, ``amd_grade``, ``dme``
            on the store's 0-2 scale, ``notes``, ``model_version``); gradability is implied.
        id_style: how an exported id is made from the image path: ``stem``, ``name`` or
            ``path``.
        internal_only: always identified (the training manifest needs real paths).
        native_dme_column: column holding a DME value on a scale the store does not keep.
        optional_columns: columns of :attr:`columns` a file may lack (appended later, so
            older files still read).
    """

    name: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    id_has_extension: ClassVar[bool] = False
    can_read: ClassVar[bool] = True
    label_fields: ClassVar[frozenset[str]] = frozenset()
    id_style: ClassVar[str] = "stem"
    internal_only: ClassVar[bool] = False
    native_dme_column: ClassVar[str] = ""
    optional_columns: ClassVar[frozenset[str]] = frozenset()

    def prepare_export(self, record: LabelRecord, *, accept_lossy: bool) -> tuple[LabelRecord, str]:
        """Fit a store record to this format's scales; return it and a note (or "").

        Formats whose native scale differs from the store's override this and apply a lossy
        mapping only when ``accept_lossy`` is True, saying which mapping was used.
        """
        return record, ""

    # ---- hooks for tabular formats
    def record_from_cells(self, cells: Mapping[str, str], line: int) -> LabelRecord:
        """Build a record from one row's raw cells, keyed by golden column name.

        Implementations un-escape their free-text cells (``unescape_cell``), never numbers.

        Raises:
            ValueError: a bad value; the message says which column and why.
        """
        raise NotImplementedError

    def iter_text(self, records: Iterable[LabelRecord]) -> Iterator[str]:
        """The file's lines for ``records`` (golden header first), each ending in ``\\n``.

        Raises:
            ValueError: a record this format cannot represent (raised while iterating).
        """
        raise NotImplementedError

    # ---- public API
    def parse(self, text: str, *, source: str = "labels") -> ParsedFile:
        """Parse file text leniently: bad rows become issues, the file as a whole must be sound.

        Header cells are matched stripped and case-insensitively; unknown columns are kept as
        extras; stray empty columns (IDRiD) are ignored when their cells are empty.

        Raises:
            LabelFileError: not CSV text, missing or duplicate columns, export-only format.
        """
        if not self.can_read:
            raise LabelFileError(f"{self.name} is an export-only format")
        try:
            table = parse_table(text, source=source)
        except CsvFormatError as exc:
            raise LabelFileError(str(exc)) from exc
        index = self._match_header(table.header, source)
        known = {i for i in index.values()}
        records: list[LabelRecord] = []
        issues: list[RowIssue] = []
        width = len(table.header)
        for line, cells in table.rows:
            first = unescape_cell(cells[0]).strip() if cells else ""
            if len(cells) < width and any(i >= len(cells) for i in known):
                issues.append(
                    RowIssue(line, f"row has {len(cells)} cells, the header has {width}", first)
                )
                continue
            if any(cell.strip() for cell in cells[width:]):
                issues.append(
                    RowIssue(line, f"row has {len(cells)} cells, the header has {width}", first)
                )
                continue
            # Raw cells: each adapter un-escapes its own free-text columns (R17), never numbers.
            values = {name: cells[i] for name, i in index.items()}
            extras = tuple(
                (table.header[i] if table.header[i].strip() else f"column {i + 1}", cells[i])
                for i in range(min(width, len(cells)))
                if i not in known and cells[i].strip()
            )
            try:
                record = self.record_from_cells(values, line)
            except ValueError as exc:
                issues.append(RowIssue(line, str(exc), first))
                continue
            records.append(_with(record, line=line, extras=extras))
        return ParsedFile(table.header, tuple(records), tuple(issues), len(table.rows))

    def read(self, source: str | Path) -> list[LabelRecord]:
        """Read a label file strictly: every row must be valid.

        Args:
            source: a :class:`~pathlib.Path` to read, or the file text itself (a ``str``).

        Raises:
            LabelFileError: any problem, the first few listed with line numbers.
        """
        if isinstance(source, Path):
            try:
                text = read_csv_text(source)
            except CsvFormatError as exc:
                raise LabelFileError(str(exc)) from exc
            parsed = self.parse(text, source=source.name)
        else:
            parsed = self.parse(source)
        if parsed.issues:
            shown = "; ".join(f"line {i.line}: {i.message}" for i in parsed.issues[:5])
            more = len(parsed.issues) - 5
            raise LabelFileError(shown + (f" (and {more} more)" if more > 0 else ""))
        return list(parsed.records)

    def write(self, records: Sequence[LabelRecord]) -> str:
        """The file text for ``records``: golden header, ``\\n`` line ends, R17 escaping."""
        return "".join(self.iter_text(records))

    def export(
        self, items: Sequence[ExportItem], out_path: Path, options: ExportOptions
    ) -> ExportResult:
        """Write ``items`` to ``out_path`` atomically (R3). Trees override this.

        Raises:
            LabelFileError: the target exists and ``options.overwrite`` is False.
            OSError: the write failed; the previous file is left untouched.
        """
        if out_path.exists() and not options.overwrite:
            raise LabelFileError(f"{out_path.name} exists; confirm overwriting it")
        # Rows stream into the temporary file; the target is replaced only once all are written.
        with atomic_writer(out_path, "w", encoding="utf-8", newline="") as handle:
            for line in self.iter_text(item.record for item in items):
                handle.write(line)
        return ExportResult(written=len(items))

    def _match_header(self, header: tuple[str, ...], source: str) -> dict[str, int]:
        wanted = {normalise_header(c): c for c in self.columns}
        index: dict[str, int] = {}
        for i, cell in enumerate(header):
            key = normalise_header(cell)
            if key in wanted:
                name = wanted[key]
                if name in index:
                    raise LabelFileError(f"{source}, line 1: column {name.strip()!r} appears twice")
                index[name] = i
        missing = [
            c.strip() for c in self.columns if c not in index and c not in self.optional_columns
        ]
        if missing:
            found = ", ".join(repr(c) for c in header[:12])
            raise LabelFileError(
                f"{source}, line 1: not a {self.name} file: missing column(s) "
                f"{', '.join(repr(m) for m in missing)} (found {found})"
            )
        return index


def _with(record: LabelRecord, *, line: int, extras: tuple[tuple[str, str], ...]) -> LabelRecord:
    # Most rows already carry their line and no extras: skipping ``replace`` (which validates
    # the record again) keeps big files fast.
    if record.line == line and record.extras == extras:
        return record
    return replace(record, line=line, extras=extras)


_REGISTRY: dict[str, Adapter] = {}
_A = TypeVar("_A", bound=type[Adapter])


def register_adapter(cls: _A) -> _A:
    """Class decorator: register one instance of ``cls`` under ``cls.name``.

    Raises:
        ValueError: empty or duplicate name.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no format name")
    if cls.name in _REGISTRY:
        raise ValueError(f"label format {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def get_adapter(name: str) -> Adapter:
    """The adapter registered as ``name``.

    Raises:
        LabelFileError: unknown format; the message lists the known ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LabelFileError(
            f"unknown label format {name!r}; known formats: {', '.join(adapter_names())}"
        ) from None


def adapter_names() -> tuple[str, ...]:
    """Registered format names, sorted."""
    return tuple(sorted(_REGISTRY))


class IdGradeAdapter(Adapter):
    """Formats with one id column (no extension) and one ICDR column: EyePACS, APTOS.

    Their readers expect a grade 0-4 in every row and the formats have no gradability column,
    so an export leaves out ungradable images and images without a DR grade and lists them as
    skipped (never a blank or 0 grade). :meth:`write` still writes a blank cell for such a
    record (blank means "no label" when the file is read back).
    """

    label_fields: ClassVar[frozenset[str]] = frozenset({"dr_grade"})

    def export(
        self, items: Sequence[ExportItem], out_path: Path, options: ExportOptions
    ) -> ExportResult:
        """Write the items that have a DR grade; the others are skipped with the reason."""
        grade_column = self.columns[1]
        kept: list[ExportItem] = []
        skipped: list[tuple[str, str]] = []
        for item in items:
            if item.record.gradable is False:
                why = f"ungradable ({self.name} has no column for it; {grade_column} must be 0-4)"
                skipped.append((item.image.sha256, why))
            elif item.record.dr_grade is None:
                skipped.append((item.image.sha256, f"no DR grade ({grade_column} must be 0-4)"))
            else:
                kept.append(item)
        result = super().export(kept, out_path, options)
        return ExportResult(written=result.written, skipped=result.skipped + tuple(skipped))

    def record_from_cells(self, cells: Mapping[str, str], line: int) -> LabelRecord:
        id_column, grade_column = self.columns
        image_id = unescape_cell(cells[id_column]).strip()
        dr = grade_cell(lambda c: parse_int_cell(c, DR_GRADES), grade_column, cells[grade_column])
        return LabelRecord(image_id=image_id, dr_grade=dr, line=line)

    def iter_text(self, records: Iterable[LabelRecord]) -> Iterator[str]:
        return iter_table(
            self.columns,
            ((escape_cell(r.image_id), format_int_cell(r.dr_grade)) for r in records),
        )


def grade_cell(parse: Callable[[str], int | None], column: str, cell: str) -> int | None:
    """Parse one grade cell, prefixing errors with the column name (for row issues)."""
    try:
        return parse(cell)
    except ValueError as exc:
        raise ValueError(f"column {column.strip()!r}: {exc}") from exc
