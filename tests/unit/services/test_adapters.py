"""Label-file adapters: golden headers, round trips, header tolerance, malformed input."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    GradingSource,
    Laterality,
    UngradableReason,
)
from sall_desktop.services.adapters import (
    Adapter,
    DmeScale,
    LabelFileError,
    LabelRecord,
    adapter_names,
    get_adapter,
    register_adapter,
)
from training.protocol import canonical as proto

GOLDEN = {
    "eyepacs": "image,level",
    "aptos": "id_code,diagnosis",
    "idrid": "Image name,Retinopathy grade,Risk of macular edema ",
    "messidor2": "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable",
    "canonical": ",".join(proto.CANONICAL_COLUMNS)
    + ",how_reached,primary_grader,secondary_grader,arbiter,nhs_r,nhs_m,nhs_lossy,visit_outcome",
    "manifest": "image_path,sha256,patient_id,laterality,dr_grade,amd_grade,gradable,split",
}
SHA = "ab" * 32


def test_every_format_is_registered() -> None:
    assert set(adapter_names()) == {*GOLDEN, "imagefolder"}


@pytest.mark.parametrize("fmt", sorted(GOLDEN))
def test_golden_header(fmt: str) -> None:
    text = get_adapter(fmt).write([])
    assert text == GOLDEN[fmt] + "\n"


def test_idrid_header_keeps_its_trailing_space() -> None:
    header = (
        get_adapter("idrid").write([LabelRecord("IDRiD_001", dr_grade=2, dme=1)]).split("\n")[0]
    )
    assert header.endswith("edema ")


def test_registry_refuses_duplicates_and_names_known_formats() -> None:
    class Again(Adapter):
        name = "eyepacs"

    with pytest.raises(ValueError, match="twice"):
        register_adapter(Again)
    with pytest.raises(LabelFileError, match="known formats: aptos"):
        get_adapter("kaggle")


# ------------------------------------------------------------------ round trips

ids = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1
).filter(lambda s: s.strip() == s and s)
dr = st.none() | st.integers(0, 4)


@st.composite
def records_for(draw: st.DrawFn, fmt: str) -> LabelRecord:
    image_id = draw(ids)
    if fmt in ("eyepacs", "aptos"):
        return LabelRecord(image_id, dr_grade=draw(dr))
    if fmt == "idrid":
        return LabelRecord(image_id, dr_grade=draw(dr), dme=draw(st.none() | st.integers(0, 2)))
    if fmt == "messidor2":
        gradable = draw(st.sampled_from([None, True, False]))
        if gradable is False:
            return LabelRecord(image_id, gradable=False, dme_scale=DmeScale.BINARY)
        return LabelRecord(
            image_id,
            dr_grade=draw(dr),
            dme=draw(st.none() | st.integers(0, 1)),
            dme_scale=DmeScale.BINARY,
            gradable=gradable,
        )
    if fmt == "manifest":
        gradable = draw(st.sampled_from([None, True, False]))
        graded = gradable is not False
        return LabelRecord(
            image_id,
            sha256=draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
            file_path=image_id,
            patient_id=draw(st.text().filter(lambda s: "\0" not in s)),
            laterality=draw(st.sampled_from(list(Laterality))),
            gradable=gradable,
            dr_grade=draw(dr) if graded else None,
            amd_grade=draw(st.none() | st.integers(0, 3)) if graded else None,
            split=draw(st.sampled_from(["train", "val", "test", "holdout"])),
        )
    gradable = draw(st.sampled_from([None, True, False]))
    graded = gradable is not False
    free = st.text().filter(lambda s: "\0" not in s)
    return LabelRecord(
        image_id,
        sha256=draw(st.sampled_from(["", SHA])),
        file_path=draw(free),
        patient_id=draw(free),
        laterality=draw(st.sampled_from(list(Laterality))),
        laterality_source=draw(st.sampled_from(list(FieldSource))),
        gradable=gradable,
        ungradable_reason=None if graded else draw(st.none() | st.sampled_from(UngradableReason)),
        dr_grade=draw(dr) if graded else None,
        amd_grade=draw(st.none() | st.integers(0, 3)) if graded else None,
        dme=draw(st.none() | st.integers(0, 2)) if graded else None,
        grader=draw(free),
        grader_role=draw(st.none() | st.sampled_from(GraderRole)),
        source=draw(st.none() | st.sampled_from(GradingSource)),
        timestamp=draw(st.sampled_from(["", "2026-01-02T03:04:05.000001+00:00"])),
        model_version=draw(free),
        notes=draw(free),
    )


@pytest.mark.parametrize("fmt", sorted(GOLDEN))
def test_round_trip(fmt: str) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(records_for(fmt), max_size=6, unique_by=lambda r: r.sha256 or r.image_id))
    def check(records: list[LabelRecord]) -> None:
        text = get_adapter(fmt).write(records)
        assert get_adapter(fmt).read(text) == records

    check()


def test_round_trip_through_a_file_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "trainLabels.csv"
    records = [LabelRecord("10_left", dr_grade=0), LabelRecord("10_right", dr_grade=None)]
    path.write_text(get_adapter("eyepacs").write(records), encoding="utf-8")
    read = get_adapter("eyepacs").read(path)
    assert read == records
    assert [r.line for r in read] == [2, 3]


# ------------------------------------------------------------------ escaping and blanks


def test_injection_cells_are_escaped_and_numbers_are_not() -> None:
    records = [LabelRecord('=HYPERLINK("x")', dr_grade=3), LabelRecord("-evil", dr_grade=0)]
    text = get_adapter("eyepacs").write(records)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[1:] == [['\'=HYPERLINK("x")', "3"], ["'-evil", "0"]]
    assert get_adapter("eyepacs").read(text) == records


def test_ungradable_is_blank_never_zero_in_every_format() -> None:
    ungradable = LabelRecord("x.png", sha256=SHA, file_path="x.png", gradable=False)
    expected = {
        "eyepacs": "x.png,",
        "aptos": "x.png,",
        "idrid": "x.png,,",
        "messidor2": "x.png,,,0",
        "manifest": f"x.png,{SHA},,,,,0,train",
        "canonical": f"x.png,x.png,{SHA},,,,0," + "," * 17,
    }
    for fmt, line in expected.items():
        text = get_adapter(fmt).write([ungradable])
        assert text.splitlines()[1] == line, fmt
        back = get_adapter(fmt).read(text)[0]
        assert (back.dr_grade, back.amd_grade, back.dme) == (None, None, None)


def test_blank_is_not_read_as_zero() -> None:
    records = get_adapter("idrid").read(
        "Image name,Retinopathy grade,Risk of macular edema \nIDRiD_001,,\n"
    )
    assert records[0].dr_grade is None and records[0].dme is None
    assert not records[0].has_label


# ------------------------------------------------------------------ header tolerance


def test_headers_match_stripped_and_case_insensitive_keeping_unknown_columns() -> None:
    text = "\ufeff IMAGE , Level ,Quality\n10_left,2,good\n10_right,1,\n"
    parsed = get_adapter("eyepacs").parse(text)
    assert parsed.header == (" IMAGE ", " Level ", "Quality")
    assert [(r.image_id, r.dr_grade) for r in parsed.records] == [("10_left", 2), ("10_right", 1)]
    assert parsed.records[0].extras == (("Quality", "good"),)
    assert parsed.records[1].extras == ()


def test_idrid_tolerates_stray_empty_columns_and_a_missing_trailing_space() -> None:
    text = (
        "Image name,Retinopathy grade,Risk of macular edema,,,\n"
        "IDRiD_001,3,2,,,\n"
        "IDRiD_002,0,0\n"
        "IDRiD_003,4,1,,,note\n"
    )
    parsed = get_adapter("idrid").parse(text)
    assert [(r.image_id, r.dr_grade, r.dme) for r in parsed.records] == [
        ("IDRiD_001", 3, 2),
        ("IDRiD_002", 0, 0),
        ("IDRiD_003", 4, 1),
    ]
    assert parsed.records[2].extras == (("column 6", "note"),)
    assert parsed.issues == ()


def test_messidor2_dme_stays_on_its_binary_scale() -> None:
    parsed = get_adapter("messidor2").parse(GOLDEN["messidor2"] + "\na.png,2,1,1\nb.png,1,2,1\n")
    assert parsed.records[0].dme == 1 and parsed.records[0].dme_scale is DmeScale.BINARY
    assert parsed.issues[0].line == 3 and "adjudicated_dme" in parsed.issues[0].message
    with pytest.raises(ValueError, match="consent"):
        get_adapter("messidor2").write([LabelRecord("a.png", dme=2)])


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("image,level\n10_left,5\n", 2, "out of range"),
        ("image,level\n10_left,two\n", 2, "whole number"),
        ("image,level\n10_left,-1\n", 2, "out of range"),
        ("image,level\n10_left,1.5\n", 2, "whole number"),
        ("image,level\n10_left\n", 2, "cells"),
        ("image,level\n10_left,1,extra\n", 2, "cells"),
        ("image,level\n,1\n", 2, "no image id"),
        ("image,level\n10_left,1\n10_right,9\n", 3, "out of range"),
        (GOLDEN["messidor2"] + "\nx.png,2,,0\n", 2, "ungradable"),
        (GOLDEN["messidor2"] + "\nx.png,2,,maybe\n", 2, "0 or 1"),
    ],
)
def test_bad_rows_become_issues_with_line_numbers(text: str, line: int, fragment: str) -> None:
    fmt = "messidor2" if text.startswith("image_id") else "eyepacs"
    parsed = get_adapter(fmt).parse(text)
    assert [i.line for i in parsed.issues] == [line]
    assert fragment in parsed.issues[0].message
    with pytest.raises(LabelFileError, match=f"line {line}"):
        get_adapter(fmt).read(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("id_code,diagnosis\na,1\n", "missing column(s) 'image', 'level'"),
        ("image,image,level\n", "appears twice"),
        ("", "empty"),
        ('image,level\n"10_left,1\n', "not valid CSV"),
    ],
)
def test_whole_file_problems_raise_a_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(LabelFileError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        get_adapter("eyepacs").parse(text, source="labels.csv")


def test_binary_garbage_and_undecodable_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)))
    with pytest.raises(LabelFileError, match="labels.csv"):
        get_adapter("eyepacs").read(path)
    with pytest.raises(LabelFileError, match="export-only"):
        get_adapter("imagefolder").read("a,b\n")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_fuzzed_input_gives_records_or_label_file_error(data: bytes | str) -> None:
    from training.protocol.csvsafe import CsvFormatError, decode_csv_bytes

    for fmt in GOLDEN:
        try:
            text = decode_csv_bytes(data, source="f") if isinstance(data, bytes) else data
            get_adapter(fmt).parse(text)
        except (LabelFileError, CsvFormatError):
            pass
