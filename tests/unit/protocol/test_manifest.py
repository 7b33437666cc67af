"""The frozen training manifest: golden header, round trip, strict parsing with line numbers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.protocol.manifest import (
    MANIFEST_COLUMNS,
    SPLITS,
    ManifestError,
    ManifestRow,
    format_manifest,
    manifest_digest,
    parse_manifest,
    read_manifest,
)

SHA_A, SHA_B = "a" * 64, "0123456789abcdef" * 4
GOLDEN_HEADER = "image_path,sha256,patient_id,laterality,dr_grade,amd_grade,gradable,split"


def test_golden_header() -> None:
    assert ",".join(MANIFEST_COLUMNS) == GOLDEN_HEADER
    assert format_manifest([]) == GOLDEN_HEADER + "\n"


def test_blank_means_unknown_and_ungradable_is_blank_never_zero() -> None:
    rows = [
        ManifestRow("img/1.jpg", SHA_A, "p1", "L", 2, None, True, "val"),
        ManifestRow("img/2.jpg", SHA_B, gradable=False, split="holdout"),
    ]
    text = format_manifest(rows)
    assert text.splitlines()[1:] == [
        f"img/1.jpg,{SHA_A},p1,L,2,,1,val",
        f"img/2.jpg,{SHA_B},,,,,0,holdout",
    ]
    assert parse_manifest(text) == rows


rows_strategy = st.builds(
    ManifestRow,
    image_path=st.text(min_size=1).filter(lambda s: s.strip() and "\0" not in s),
    sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
    patient_id=st.text().filter(lambda s: "\0" not in s),
    laterality=st.sampled_from(["R", "L", "B", ""]),
    dr_grade=st.none() | st.integers(0, 4),
    amd_grade=st.none() | st.integers(0, 3),
    gradable=st.sampled_from([None, True]),
    split=st.sampled_from(SPLITS),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(rows_strategy, max_size=8, unique_by=lambda r: r.sha256))
def test_round_trip(rows: list[ManifestRow]) -> None:
    assert parse_manifest(format_manifest(rows)) == rows


def test_free_text_cells_are_formula_escaped() -> None:
    text = format_manifest([ManifestRow("=cmd|'/c calc'!A1", SHA_A, patient_id="+44")])
    line = text.splitlines()[1]
    assert line.startswith("'=cmd")
    assert ",'+44," in line
    assert parse_manifest(text)[0].patient_id == "+44"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (f"x.jpg,{SHA_A},,,5,,,train", "line 2: column dr_grade"),
        (f"x.jpg,{SHA_A},,,,x,,train", "line 2: column amd_grade"),
        (f"x.jpg,{SHA_A},,,,,maybe,train", "line 2: column gradable"),
        (f"x.jpg,{SHA_A},,,,,,training", "line 2: split"),
        (f"x.jpg,{SHA_A},,Q,,,,train", "laterality"),
        (f"x.jpg,{SHA_A.upper()},,,,,,train", "sha256"),
        (f"x.jpg,{SHA_A},,,1,,0,train", "ungradable"),
        (f"x.jpg,{SHA_A},,,", "line 2: expected 8 cells"),
        (f"x.jpg,{SHA_A},,,,,,train\ny.jpg,{SHA_A},,,,,,val", "line 3, column sha256"),
    ],
)
def test_malformed_rows_name_line_and_column(body: str, fragment: str) -> None:
    with pytest.raises(ManifestError, match=fragment):
        parse_manifest(GOLDEN_HEADER + "\n" + body + "\n", source="m.csv")


def test_wrong_header_and_binary_are_errors_not_crashes(tmp_path) -> None:
    with pytest.raises(ManifestError, match="header must be"):
        parse_manifest("image,level\n1,2\n")
    path = tmp_path / "m.csv"
    path.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(ManifestError, match="binary"):
        read_manifest(path)


def test_digest_changes_with_any_byte() -> None:
    text = format_manifest([ManifestRow("a.jpg", SHA_A, dr_grade=1)])
    assert manifest_digest(text) == manifest_digest(str(text))
    assert manifest_digest(text) != manifest_digest(text.replace("\n", "\r\n"))
    assert len(manifest_digest(text)) == 64


def test_read_manifest_accepts_a_bom(tmp_path) -> None:
    path = tmp_path / "m.csv"
    text = format_manifest([ManifestRow("a.jpg", SHA_A, dr_grade=0, gradable=True)])
    path.write_text("\ufeff" + text, encoding="utf-8")
    assert read_manifest(path)[0].dr_grade == 0


def test_protocol_imports_only_the_standard_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import training.protocol.manifest, training.protocol.canonical; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'torch', 'model_zoo', 'sall_desktop')]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
