"""The frozen training manifest: the one file through which the app hands labels to training.

One row per image. ``services.training_jobs`` formats it with :func:`format_manifest` and writes it
atomically (``model_zoo.fileio.atomic_write_text``) as ``run_dir/manifest.csv``; its
:func:`manifest_digest` goes into ``run.toml``; the training process reads it with
:func:`read_manifest` and never opens the live database (docs/architecture.md, Training runs).

Columns (exact header, in this order)::

    image_path,sha256,patient_id,laterality,dr_grade,amd_grade,gradable,split

- ``image_path``: path of the image file as the app saw it (metadata; identity is ``sha256``).
- ``sha256``: 64 lowercase hex characters, SHA-256 of the file bytes.
- ``patient_id``: pseudonymous patient key used for patient-grouped splits; may be blank.
- ``laterality``: ``R``, ``L``, ``B`` or blank (unknown).
- ``dr_grade``: ICDR 0-4, ``amd_grade``: SALL AMD 0-3; blank = unknown or ungradable, never 0.
- ``gradable``: ``1``, ``0`` or blank (unknown). A ``0`` row has blank grades.
- ``split``: one of :data:`SPLITS`.

Free-text cells (``image_path``, ``patient_id``) are formula-escaped (R17) and un-escaped on read.
Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

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
    read_csv_text,
    unescape_cell,
)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_path",
    "sha256",
    "patient_id",
    "laterality",
    "dr_grade",
    "amd_grade",
    "gradable",
    "split",
)
SPLITS: tuple[str, ...] = ("train", "val", "test", "holdout")
LATERALITIES: tuple[str, ...] = ("R", "L", "B", "")
DR_RANGE: tuple[int, ...] = (0, 1, 2, 3, 4)
AMD_RANGE: tuple[int, ...] = (0, 1, 2, 3)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A malformed manifest or manifest row. The message gives source, line, column and reason."""


def is_sha256(value: str) -> bool:
    """True for 64 lowercase hex characters."""
    return _SHA256.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One image of a training manifest (see the module docstring for the columns).

    Raises:
        ManifestError: on construction with an invalid value (bad hash, grade out of range,
            grades on an ungradable row, unknown split or laterality, NUL in text).
    """

    image_path: str
    sha256: str
    patient_id: str = ""
    laterality: str = ""
    dr_grade: int | None = None
    amd_grade: int | None = None
    gradable: bool | None = None
    split: str = "train"

    def __post_init__(self) -> None:
        if not self.image_path.strip():
            raise ManifestError("image_path is empty")
        if "\0" in self.image_path or "\0" in self.patient_id:
            raise ManifestError("text fields cannot contain NUL characters")
        if not is_sha256(self.sha256):
            raise ManifestError(f"sha256 must be 64 lowercase hex characters, got {self.sha256!r}")
        if self.laterality not in LATERALITIES:
            raise ManifestError(f"laterality must be R, L, B or blank, got {self.laterality!r}")
        for name, value, allowed in (
            ("dr_grade", self.dr_grade, DR_RANGE),
            ("amd_grade", self.amd_grade, AMD_RANGE),
        ):
            if value is not None and (isinstance(value, bool) or value not in allowed):
                raise ManifestError(f"{name} must be {allowed[0]}-{allowed[-1]} or blank")
        if self.gradable is False and (self.dr_grade is not None or self.amd_grade is not None):
            raise ManifestError("an ungradable image has blank grades, never a grade")
        if self.split not in SPLITS:
            raise ManifestError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")


def iter_manifest(rows: Iterable[ManifestRow]) -> Iterator[str]:
    """Manifest CSV lines: the exact header, then one line per row (each ending in ``\\n``)."""
    return iter_table(
        MANIFEST_COLUMNS,
        (
            (
                escape_cell(row.image_path),
                row.sha256,
                escape_cell(row.patient_id),
                row.laterality,
                format_int_cell(row.dr_grade),
                format_int_cell(row.amd_grade),
                format_bool_cell(row.gradable),
                row.split,
            )
            for row in rows
        ),
    )


def format_manifest(rows: Iterable[ManifestRow]) -> str:
    """Manifest CSV text: the exact header, then one line per row, ``\\n`` line ends.

    Write it with ``model_zoo.fileio.atomic_write_text``; hash it with :func:`manifest_digest`.
    """
    return "".join(iter_manifest(rows))


def manifest_row_from_cells(values: Mapping[str, str]) -> ManifestRow:
    """Build a row from raw cells keyed by manifest column name (missing columns are blank).

    Raises:
        ManifestError: a bad value; the message names the column.
    """
    column = ""
    try:
        column = "dr_grade"
        dr = parse_int_cell(values.get("dr_grade", ""), DR_RANGE)
        column = "amd_grade"
        amd = parse_int_cell(values.get("amd_grade", ""), AMD_RANGE)
        column = "gradable"
        gradable = parse_bool_cell(values.get("gradable", ""))
    except ValueError as exc:
        raise ManifestError(f"column {column}: {exc}") from exc
    return ManifestRow(
        image_path=unescape_cell(values.get("image_path", "")),
        sha256=values.get("sha256", "").strip(),
        patient_id=unescape_cell(values.get("patient_id", "")),
        laterality=values.get("laterality", "").strip(),
        dr_grade=dr,
        amd_grade=amd,
        gradable=gradable,
        split=values.get("split", "").strip(),
    )


def _parse_row(cells: tuple[str, ...], source: str, line: int) -> ManifestRow:
    if len(cells) != len(MANIFEST_COLUMNS):
        raise ManifestError(
            f"{source}, line {line}: expected {len(MANIFEST_COLUMNS)} cells, got {len(cells)}"
        )
    try:
        return manifest_row_from_cells(dict(zip(MANIFEST_COLUMNS, cells, strict=True)))
    except ManifestError as exc:
        raise ManifestError(f"{source}, line {line}: {exc}") from exc


def parse_manifest(text: str, *, source: str = "manifest") -> list[ManifestRow]:
    """Parse manifest text strictly (it is our own format; any deviation is an error).

    Args:
        text: the file content; a BOM is ignored.
        source: name used in error messages.

    Returns:
        The rows in file order.

    Raises:
        ManifestError: wrong header, ragged row, bad value, duplicate sha256; the message names
            the line, the column and the reason.
    """
    try:
        table = parse_table(text, source=source)
    except CsvFormatError as exc:
        raise ManifestError(str(exc)) from exc
    problem = header_problem(table, MANIFEST_COLUMNS, source=source)
    if problem is not None:
        raise ManifestError(problem)
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for line, cells in table.rows:
        row = _parse_row(cells, source, line)
        if row.sha256 in seen:
            raise ManifestError(
                f"{source}, line {line}, column sha256: image listed twice "
                f"(first on line {seen[row.sha256]})"
            )
        seen[row.sha256] = line
        rows.append(row)
    return rows


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Read and parse a manifest file (size-capped, UTF-8).

    Raises:
        ManifestError: unreadable file or malformed content.
    """
    try:
        text = read_csv_text(path)
    except CsvFormatError as exc:
        raise ManifestError(str(exc)) from exc
    return parse_manifest(text, source=os.fspath(path))


def manifest_digest(text: str) -> str:
    """SHA-256 (hex) of the manifest text as written: UTF-8 bytes of :func:`format_manifest` output.

    Any change to the file, even of line ends, changes the digest: training compares it with
    the digest in ``run.toml`` and refuses a manifest that was edited after freezing.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
