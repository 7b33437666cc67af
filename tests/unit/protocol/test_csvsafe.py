"""R17 formula-injection escaping and the safe CSV reader of ``training.protocol.csvsafe``."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.protocol.csvsafe import (
    FORMULA_TRIGGERS,
    MAX_CELL_CHARS,
    CsvFormatError,
    decode_csv_bytes,
    escape_cell,
    format_table,
    parse_int_cell,
    parse_table,
    read_csv_text,
    unescape_cell,
)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("\0x", "'\0x"),
        ("'=x", "''=x"),
        ("'plain", "'plain"),
        ("plain", "plain"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_escape_cell_examples(value: str, escaped: str) -> None:
    assert escape_cell(value) == escaped
    assert unescape_cell(escaped) == value


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=6))
def test_escaped_row_round_trips_through_csv_and_starts_with_no_trigger(values: list[str]) -> None:
    text = format_table(["c"] * len(values), [[escape_cell(v) for v in values]])
    header, row = list(csv.reader(io.StringIO(text, newline="")))
    assert all(not cell or cell[0] not in FORMULA_TRIGGERS for cell in row)
    assert [unescape_cell(cell) for cell in row] == values


def test_numeric_cells_are_not_prefixed() -> None:
    text = format_table(["grade", "x"], [[str(-0.5), escape_cell("-0.5")]])
    assert text.splitlines()[1] == "-0.5,'-0.5"


def test_parse_table_reports_line_numbers_and_skips_blank_lines() -> None:
    table = parse_table('\ufeffa,b\n\n1,"two\nlines"\n3,4\n', source="f.csv")
    assert table.header == ("a", "b")
    assert table.rows == ((3, ("1", "two\nlines")), (5, ("3", "4")))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("a,b\n1,\0\n", "NUL"),
        ('a,b\n1,"unterminated\n', "not valid CSV"),
        ("a\n" + "x" * (MAX_CELL_CHARS + 1) + "\n", "longer"),
    ],
)
def test_parse_table_refuses_bad_input_with_a_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(CsvFormatError, match=fragment) as info:
        parse_table(text, source="bad.csv")
    assert "bad.csv" in str(info.value)


def test_decode_accepts_utf8_bom_utf16_and_cp1252_and_refuses_binary() -> None:
    assert decode_csv_bytes("\ufeffé,1".encode(), source="s") == "é,1"
    assert decode_csv_bytes("é,1".encode("utf-16"), source="s") == "é,1"
    assert decode_csv_bytes("é,1".encode("cp1252"), source="s") == "é,1"
    with pytest.raises(CsvFormatError, match="binary"):
        decode_csv_bytes(b"\x89PNG\r\n\x1a\n\0\0\0", source="s")
    with pytest.raises(CsvFormatError, match="not a text file"):
        decode_csv_bytes(b"\x81\x8d\x8f\x90\x9d", source="s")


def test_read_csv_text_caps_size_and_reports_missing_files(tmp_path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"1\n" * 100)
    with pytest.raises(CsvFormatError, match="larger than"):
        read_csv_text(path, max_bytes=50)
    with pytest.raises(CsvFormatError, match="cannot be read"):
        read_csv_text(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("cell", "value"), [("", None), (" ", None), ("3", 3), (" 2.0 ", 2), (" 0 ", 0), ("0.0", 0)]
)
def test_parse_int_cell_blank_is_none_never_zero(cell: str, value: int | None) -> None:
    assert parse_int_cell(cell, (0, 1, 2, 3, 4)) == value


@pytest.mark.parametrize(
    "cell", ["5", "-1", "2.5", "x", "１", "9" * 400, "nan", "-0", "+0", "+2", "- 0", "-0.0"]
)
def test_parse_int_cell_rejects_bad_numbers(cell: str) -> None:
    with pytest.raises(ValueError):
        parse_int_cell(cell, (0, 1, 2, 3, 4))


def test_utf8_with_one_stray_byte_is_refused_not_read_as_cp1252() -> None:
    data = "image,grader\nœil_gauche,Dr Müller\n".encode() + b"x\x81y,Dr A\n"
    with pytest.raises(CsvFormatError, match=r"line 3.*not UTF-8 \(0x81\)"):
        decode_csv_bytes(data, source="labels.csv")
    # A whole Windows-1252 file (no UTF-8 character in it) is still read as such.
    assert decode_csv_bytes("Müller,1\n".encode("cp1252"), source="s") == "Müller,1\n"
