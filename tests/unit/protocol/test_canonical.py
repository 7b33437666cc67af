"""The canonical label CSV: golden header, round trip, blank-never-zero, strict parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.protocol.canonical import (
    CANONICAL_COLUMNS,
    GRADER_ROLES,
    GRADING_SOURCES,
    LATERALITY_SOURCES,
    UNGRADABLE_REASONS,
    CanonicalError,
    CanonicalRow,
    format_canonical,
    parse_canonical,
)

GOLDEN_HEADER = (
    "image_id,file_path,sha256,patient_id,laterality,laterality_source,gradable,"
    "ungradable_reason,dr_icdr,amd_grade,dme,grader_id,grader_role,source,timestamp,"
    "model_version,notes"
)
SHA = "f" * 64


def test_golden_header() -> None:
    assert ",".join(CANONICAL_COLUMNS) == GOLDEN_HEADER
    assert format_canonical([]).splitlines() == [GOLDEN_HEADER]


def test_ungradable_is_written_blank_never_zero() -> None:
    row = CanonicalRow(image_id="a.png", sha256=SHA, gradable=False, ungradable_reason="blur")
    line = format_canonical([row]).splitlines()[1]
    assert line == f"a.png,,{SHA},,,,0,blur,,,,,,,,,"
    assert parse_canonical(format_canonical([row])) == [row]


text_st = st.text().filter(lambda s: "\0" not in s)


@st.composite
def rows(draw: st.DrawFn) -> CanonicalRow:
    gradable = draw(st.sampled_from([None, True, False]))
    graded = gradable is not False
    return CanonicalRow(
        image_id=draw(text_st.filter(bool)),
        file_path=draw(text_st),
        sha256=draw(st.sampled_from(["", SHA])),
        patient_id=draw(text_st),
        laterality=draw(st.sampled_from(["R", "L", "B", ""])),
        laterality_source=draw(st.sampled_from(LATERALITY_SOURCES)),
        gradable=gradable,
        ungradable_reason="" if graded else draw(st.sampled_from(UNGRADABLE_REASONS)),
        dr_icdr=draw(st.none() | st.integers(0, 4)) if graded else None,
        amd_grade=draw(st.none() | st.integers(0, 3)) if graded else None,
        dme=draw(st.none() | st.integers(0, 2)) if graded else None,
        grader_id=draw(text_st),
        grader_role=draw(st.sampled_from(GRADER_ROLES)),
        source=draw(st.sampled_from(GRADING_SOURCES)),
        timestamp=draw(st.sampled_from(["", "2026-11-25T17:50:01.123456+00:00"])),
        model_version=draw(text_st),
        notes=draw(text_st),
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(rows(), max_size=6))
def test_round_trip_exact_for_arbitrary_text(values: list[CanonicalRow]) -> None:
    assert parse_canonical(format_canonical(values)) == values


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "image_id or a sha256"),
        ({"image_id": "a", "dr_icdr": 5}, "dr_icdr"),
        ({"image_id": "a", "gradable": False, "dr_icdr": 0}, "blank grades"),
        ({"image_id": "a", "ungradable_reason": "blur"}, "only allowed"),
        ({"image_id": "a", "laterality": "left"}, "laterality"),
        ({"image_id": "a", "grader_role": "boss"}, "grader_role"),
        ({"image_id": "a", "notes": "x\0y"}, "NUL"),
    ],
)
def test_invalid_rows_are_refused(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(CanonicalError, match=fragment):
        CanonicalRow(**kwargs)  # type: ignore[arg-type]


def test_parse_reports_line_and_column() -> None:
    text = GOLDEN_HEADER + "\n" + "a,,,,,,1,,7,,,,,,,,\n"
    with pytest.raises(CanonicalError, match="line 2: column dr_icdr"):
        parse_canonical(text, source="c.csv")
    with pytest.raises(CanonicalError, match="header must be"):
        parse_canonical("image,level\n")


def test_whitespace_and_quotes_survive_exactly() -> None:
    values = [
        CanonicalRow(image_id=" ", notes="  "),
        CanonicalRow(image_id='a "b", c', notes="line\r\nbreak\rcr"),
        CanonicalRow(image_id="'quoted", notes="''=twice"),
    ]
    assert parse_canonical(format_canonical(values)) == values
