"""CSV text helpers shared by every label format: formula-injection escaping and safe reading.

Standard library only (the training process imports it). Nothing here writes files: callers
write the returned text with ``model_zoo.fileio.atomic_write_text`` (R3).

**Formula injection (R17).** Spreadsheet programs evaluate a cell that starts with ``=``,
``+``, ``-``, ``@``, TAB, CR or NUL as a formula even when it is quoted, so every *free-text*
cell that starts with one of them gets a leading apostrophe (``'``), which Excel and LibreOffice
show but do not evaluate. Numeric columns are written from typed numbers and never escaped,
so ``-1`` in a grade column stays a number; free text such as ``-1`` in a notes column *is*
escaped. The escaping is a bijection, so the importer recovers the original exactly:

- ``escape_cell(v)`` adds one apostrophe when ``v``, after its leading apostrophes, starts with a
  trigger (so ``'=x`` becomes ``''=x``);
- ``unescape_cell(c)`` removes one apostrophe under the same condition and leaves every other
  cell untouched (so a genuine ``'quoted`` text from someone else's file survives).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

FORMULA_TRIGGERS: frozenset[str] = frozenset("=+-@\t\r\0")
"""First characters that make a spreadsheet evaluate a cell (R17, OWASP CSV injection)."""
ESCAPE_PREFIX = "'"
MAX_CSV_BYTES = 256 * 1024 * 1024
"""Largest label file we read (EyePACS' 35k rows are ~0.5 MB); bounds memory on bad input."""
MAX_CELL_CHARS = 65_536
"""Longest cell we accept; csv's own limit (131,072) would otherwise raise mid-file."""


class CsvFormatError(ValueError):
    """A label file that is not readable CSV text. The message names the file and line.

    Attributes:
        source: file name (or label) shown to the grader.
        line: 1-based physical line where the problem starts, or 0 for the whole file.
        reason: what is wrong, in words.
    """

    def __init__(self, source: str, line: int, reason: str) -> None:
        where = f"{source}, line {line}" if line else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


def _needs_escape(value: str) -> bool:
    rest = value.lstrip(ESCAPE_PREFIX)
    return bool(rest) and rest[0] in FORMULA_TRIGGERS


def escape_cell(value: str) -> str:
    """Escape one free-text cell against formula injection (R17).

    Args:
        value: the original text (any Unicode).

    Returns:
        ``value`` with one leading ``'`` added when, after its own leading apostrophes, it
        starts with ``= + - @``, TAB, CR or NUL; otherwise ``value`` unchanged.
    """
    return ESCAPE_PREFIX + value if _needs_escape(value) else value


def unescape_cell(cell: str) -> str:
    """Invert :func:`escape_cell`: ``unescape_cell(escape_cell(v)) == v`` for every ``v``."""
    if cell.startswith(ESCAPE_PREFIX) and _needs_escape(cell[1:]):
        return cell[1:]
    return cell


def iter_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """RFC 4180 CSV lines (each ending in ``\\n``), header first, quoting only where needed.

    Cells are written as given: callers escape free-text cells with :func:`escape_cell` and
    format numbers themselves, because only they know which columns are numeric. Lines are
    yielded one by one so large exports stream into their (atomic) file.
    """
    # csv quotes a cell only for characters of its line terminator, so with "\n" a bare CR
    # would go out unquoted and split the row on reading; write with "\r\n" (which quotes
    # both) and swap each row's terminator for "\n".
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    for row in itertools.chain((header,), rows):
        writer.writerow(row)
        yield buffer.getvalue()[:-2] + "\n"
        buffer.seek(0)
        buffer.truncate()


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """The whole of :func:`iter_table` as one string."""
    return "".join(iter_table(header, rows))


@dataclass(frozen=True, slots=True)
class Table:
    """A parsed CSV file: the header as written and the data rows with their line numbers.

    Attributes:
        header: header cells exactly as in the file (BOM removed).
        rows: ``(line, cells)`` per non-blank data row; ``line`` is the 1-based physical
            line where the record starts (a quoted cell may span lines).
    """

    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]


def parse_table(text: str, *, source: str) -> Table:
    """Split CSV text into a header and rows, refusing binary data and oversize cells.

    Args:
        text: the decoded file content; a leading BOM is ignored.
        source: name used in error messages.

    Raises:
        CsvFormatError: empty file, NUL bytes (binary data), unterminated quotes, a cell
            longer than :data:`MAX_CELL_CHARS`.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise CsvFormatError(source, line, "contains NUL bytes: this is binary data, not CSV text")
    # Raising csv's limit lets us report an oversize cell ourselves, with its line number.
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, MAX_CELL_CHARS + 1))
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header: tuple[str, ...] | None = None
        rows: list[tuple[int, tuple[str, ...]]] = []
        start = 1
        try:
            for record in reader:
                line = start
                start = reader.line_num + 1
                # Blank-looking lines (nothing, a lone run of spaces, only commas) carry no
                # row; a row of space cells is kept (a space can be a value).
                if all(not cell for cell in record) or (len(record) == 1 and not record[0].strip()):
                    continue
                if any(len(cell) > MAX_CELL_CHARS for cell in record):
                    raise CsvFormatError(source, line, f"a cell is longer than {MAX_CELL_CHARS}")
                if header is None:
                    header = tuple(record)
                else:
                    rows.append((line, tuple(record)))
        except csv.Error as exc:
            raise CsvFormatError(source, start, f"not valid CSV ({exc})") from exc
    finally:
        csv.field_size_limit(old_limit)
    if header is None:
        raise CsvFormatError(source, 0, "the file is empty (no header row)")
    return Table(header=header, rows=tuple(rows))


def decode_csv_bytes(data: bytes, *, source: str) -> str:
    """Decode a label file: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252.

    Excel on Windows saves "CSV" as Windows-1252 and "Unicode text" as UTF-16, so both occur
    in the wild; anything that is none of these is refused rather than guessed.

    Raises:
        CsvFormatError: undecodable bytes or NUL bytes (binary data).
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise CsvFormatError(source, 0, "broken UTF-16 text") from exc
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise CsvFormatError(source, line, "contains NUL bytes: this is binary data, not CSV text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # A file with real UTF-8 characters and one stray byte (a paste from elsewhere) is not
        # Windows-1252: read that way, every accented name in it would silently change.
        if any(ord(c) > 0x7F for c in data.decode("utf-8", errors="ignore")):
            line = data.count(b"\n", 0, exc.start) + 1
            raise CsvFormatError(
                source,
                line,
                f"is UTF-8 text with a byte that is not UTF-8 (0x{data[exc.start]:02X}); "
                "save the file as UTF-8 and import it again",
            ) from exc
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(source, 0, "not a text file (neither UTF-8 nor Windows-1252)") from exc


def read_csv_text(path: str | os.PathLike[str], *, max_bytes: int = MAX_CSV_BYTES) -> str:
    """Read and decode a label file with a size cap.

    Raises:
        CsvFormatError: unreadable, too large, or not text. ``OSError`` never escapes.
    """
    target = Path(path)
    try:
        with target.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise CsvFormatError(target.name, 0, f"cannot be read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise CsvFormatError(target.name, 0, f"is larger than {max_bytes // (1024 * 1024)} MB")
    return decode_csv_bytes(data, source=target.name)


def normalise_header(cell: str) -> str:
    """Header key used for matching only: stripped, case-folded (docs/grading-conventions.md)."""
    return cell.strip().casefold()


def parse_int_cell(cell: str, allowed: Sequence[int]) -> int | None:
    """Parse a numeric grade cell: blank -> None (never 0); ``2``, `` 2 `` or ``2.0`` -> 2.

    A sign is refused, ``-0`` and ``+0`` included: every grade scale starts at 0, so a signed
    cell is a typo or a different quantity (a score, a difference), not a grade.

    Raises:
        ValueError: not an unsigned integer, or not in ``allowed``; the message quotes the cell.
    """
    text = cell.strip()
    if not text:
        return None
    if text[0] in "+-":
        raise ValueError(
            f"{cell!r} is out of range {min(allowed)}-{max(allowed)}: a grade has no sign"
        )
    whole, dot, fraction = text.partition(".")
    if not whole.isascii() or not whole.isdigit() or (dot and fraction.strip("0")):
        raise ValueError(f"{cell!r} is not a whole number")
    if len(whole) > 6:
        raise ValueError(f"{cell!r} is out of range {min(allowed)}-{max(allowed)}")
    value = int(whole)
    if value not in allowed:
        raise ValueError(f"{value} is out of range {min(allowed)}-{max(allowed)}")
    return value


def parse_bool_cell(cell: str) -> bool | None:
    """Parse a 0/1 flag cell: blank -> None; ``1``/``true``/``yes`` -> True; ``0``/``false``/``no``
    -> False (case-insensitive).

    Raises:
        ValueError: anything else.
    """
    text = cell.strip().casefold()
    if not text:
        return None
    if text in ("1", "1.0", "true", "yes"):
        return True
    if text in ("0", "0.0", "false", "no"):
        return False
    raise ValueError(f"{cell!r} is not 0 or 1")


def format_int_cell(value: int | None) -> str:
    """Blank for None (unknown or ungradable), never 0."""
    return "" if value is None else str(value)


def format_bool_cell(value: bool | None) -> str:
    """``1``/``0``, blank for unknown."""
    return "" if value is None else ("1" if value else "0")


def header_problem(table: Table, expected: tuple[str, ...], *, source: str) -> str | None:
    """The error message when ``table`` does not carry exactly the ``expected`` header, else None.

    For the strict readers of files we write ourselves (manifest, canonical CSV).
    """
    if table.header == expected:
        return None
    return f"{source}, line 1: header must be {','.join(expected)}, got {','.join(table.header)}"
