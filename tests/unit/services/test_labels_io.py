"""Label import (R5, issue 2 point 5): named grader or reference, conflicts, report, extras."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import (
    GraderRole,
    Grading,
    GradingSource,
    ImageRecord,
    UngradableReason,
)
from sall_desktop.services.adapters import LabelFileError
from sall_desktop.services.labels_io import IssueKind, import_labels
from sall_desktop.store import SqliteLabelStore, open_store


def sha(n: int) -> str:
    return f"{n:064x}"


IMAGES = [
    ImageRecord(sha(1), "/data/10_left.jpeg"),
    ImageRecord(sha(2), "/data/10_right.jpeg"),
    ImageRecord(sha(3), "/data/11_left.jpeg"),
    ImageRecord(sha(4), "/data/a/12_left.jpeg"),
    ImageRecord(sha(5), "/data/b/12_left.png"),  # same stem, other content
    ImageRecord(sha(6), "/data/x.png"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLabelStore]:
    with open_store(tmp_path / "labels.sqlite3") as opened:
        for image in IMAGES:
            opened.upsert_image(image)
        yield opened


def write(tmp_path: Path, text: str, name: str = "trainLabels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def kinds(report: object) -> list[tuple[int, IssueKind]]:
    return [(i.line, i.kind) for i in report.issues]  # type: ignore[attr-defined]


def test_import_as_named_grader_is_audited(store: SqliteLabelStore, tmp_path: Path) -> None:
    path = write(tmp_path, "image,level\n10_left,2\n10_right,0\n")
    report = import_labels(store, path, "eyepacs", IMAGES, as_grader="Dr Ada")
    assert (report.added, report.replaced, report.unchanged, report.issues) == (2, 0, 0, ())
    assert report.ok
    grading = store.current_grading(sha(1), "Dr Ada")
    assert grading is not None
    assert (grading.dr_grade, grading.source, grading.role) == (
        2,
        GradingSource.IMPORT,
        GraderRole.PRIMARY,
    )
    assert store.current_grading(sha(2), "Dr Ada").dr_grade == 0  # type: ignore[union-attr]
    reasons = {e.reason for e in store.audit_log() if e.grader == "Dr Ada"}
    assert reasons == {"import trainLabels.csv"}

    before = len(store.audit_log())
    again = import_labels(store, path, "eyepacs", IMAGES, as_grader="Dr Ada")
    assert (again.added, again.unchanged) == (0, 2)
    assert len(store.audit_log()) == before  # equal rows are not written again


def test_conflicts_are_reported_and_replace_supersedes_only_imports(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    import_labels(
        store, write(tmp_path, "image,level\n10_left,2\n"), "eyepacs", IMAGES, as_grader="B"
    )
    store.add_grading(Grading(sha(2), "B", dr_grade=1, amd_grade=0), reason="typed")
    changed = write(tmp_path, "image,level\n10_left,3\n10_right,4\n", "v2.csv")

    report = import_labels(store, changed, "eyepacs", IMAGES, as_grader="B")
    assert kinds(report) == [(2, IssueKind.CONFLICT), (3, IssueKind.CONFLICT)]
    assert report.issues[0].existing.startswith("gradable=True") and "dr_grade=2" in (
        report.issues[0].existing
    )
    assert "dr_grade=3" in report.issues[0].incoming
    assert not report.ok
    assert store.current_grading(sha(1), "B").dr_grade == 2  # type: ignore[union-attr]

    replaced = import_labels(store, changed, "eyepacs", IMAGES, as_grader="B", replace=True)
    assert replaced.replaced == 1
    assert kinds(replaced) == [(3, IssueKind.PROTECTED)]
    assert store.current_grading(sha(1), "B").dr_grade == 3  # type: ignore[union-attr]
    human = store.current_grading(sha(2), "B")
    assert human is not None and (human.dr_grade, human.source) == (1, GradingSource.HUMAN)
    assert any(e.reason == "import v2.csv (replace)" for e in store.audit_log())


def test_never_touches_another_graders_grades(store: SqliteLabelStore, tmp_path: Path) -> None:
    store.add_grading(Grading(sha(1), "Human", dr_grade=4, amd_grade=2), reason="")
    history = store.grading_history(sha(1))
    path = write(tmp_path, "image,level\n10_left,0\n")
    import_labels(store, path, "eyepacs", IMAGES, as_grader="Importer", replace=True)
    import_labels(store, path, "eyepacs", IMAGES, as_reference="eyepacs", replace=True)
    assert [g for g in store.grading_history(sha(1)) if g.grader == "Human"] == history
    assert {e.grader for e in store.audit_log() if e.image_sha256 == sha(1)} == {
        "Human",
        "Importer",
        "reference:eyepacs",
    }


def test_reference_import(store: SqliteLabelStore, tmp_path: Path) -> None:
    path = write(tmp_path, "id_code,diagnosis\n10_left,1\n")
    report = import_labels(store, path, "aptos", IMAGES, as_reference="aptos")
    assert report.grader == "reference:aptos"
    grading = store.current_grading(sha(1), "reference:aptos")
    assert grading is not None
    assert (grading.role, grading.source) == (GraderRole.REFERENCE, GradingSource.IMPORT)
    assert GraderRole.REFERENCE in store.grader_roles("reference:aptos")


def test_every_problem_row_is_in_the_report(store: SqliteLabelStore, tmp_path: Path) -> None:
    text = (
        "image,level,site\n"
        "10_left,2,Leeds\n"  # 2: ok
        "10_left,2,Leeds\n"  # 3: duplicate with the same value: fine
        "10_right,1,\n"  # 4: conflicts with line 6
        "99_left,1,\n"  # 5: unmatched
        "10_right,3,\n"  # 6
        "12_left,2,\n"  # 7: ambiguous
        "11_left,7,\n"  # 8: out of range
        "11_left,,\n"  # 9: no label
        "11_left\n"  # 10: ragged
    )
    report = import_labels(store, write(tmp_path, text), "eyepacs", IMAGES, as_grader="C")
    assert kinds(report) == [
        (4, IssueKind.DUPLICATE_CONFLICT),
        (5, IssueKind.UNMATCHED),
        (6, IssueKind.DUPLICATE_CONFLICT),
        (7, IssueKind.AMBIGUOUS),
        (8, IssueKind.MALFORMED),
        (9, IssueKind.NO_LABEL),
        (10, IssueKind.MALFORMED),
    ]
    assert report.added == 1 and report.rows_read == 9
    assert store.current_grading(sha(2), "C") is None
    assert report.extras == ((sha(1), "site", "Leeds"), (sha(1), "site", "Leeds"))
    assert report.extras_stored
    assert store.import_extras(sha(1)) == {report.import_id: {"site": "Leeds"}}

    summary = report.format_report()
    assert "9 rows, 1 added" in summary and "line 8: malformed: 11_left:" in summary
    out = tmp_path / "report.csv"
    report.write_csv(out)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [int(r["line"]) for r in rows] == [4, 5, 6, 7, 8, 9, 10]
    assert rows[0]["kind"] == "duplicate_conflict" and rows[0]["sha256"] == sha(2)


def test_messidor2_keeps_binary_dme_as_an_extra_and_ungradable_blank(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    text = (
        "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n"
        "x.png,2,1,1\n"
        "10_left.jpeg,,,0\n"
    )
    report = import_labels(store, write(tmp_path, text), "messidor2", IMAGES, as_grader="D")
    assert report.ok and report.added == 2
    assert kinds(report) == [(2, IssueKind.NOT_MAPPED)]
    graded = store.current_grading(sha(6), "D")
    assert graded is not None and (graded.dr_grade, graded.dme) == (2, None)
    assert store.import_extras(sha(6)) == {report.import_id: {"adjudicated_dme": "1"}}
    ungradable = store.current_grading(sha(1), "D")
    assert ungradable is not None and not ungradable.gradable
    assert (ungradable.dr_grade, ungradable.amd_grade, ungradable.dme) == (None, None, None)
    assert ungradable.ungradable_reason is UngradableReason.OTHER


def test_formats_with_fewer_fields_merge_without_erasing(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    store.add_grading(
        Grading(sha(1), "E", dr_grade=2, amd_grade=3, source=GradingSource.IMPORT), reason=""
    )
    same = import_labels(
        store, write(tmp_path, "image,level\n10_left,2\n"), "eyepacs", IMAGES, as_grader="E"
    )
    assert same.unchanged == 1
    path = write(tmp_path, "image,level\n10_left,4\n", "b.csv")
    import_labels(store, path, "eyepacs", IMAGES, as_grader="E", replace=True)
    grading = store.current_grading(sha(1), "E")
    assert grading is not None and (grading.dr_grade, grading.amd_grade) == (4, 3)


def test_canonical_import_resolves_by_sha256_first(store: SqliteLabelStore, tmp_path: Path) -> None:
    from training.protocol.canonical import CANONICAL_COLUMNS

    header = ",".join(CANONICAL_COLUMNS)
    text = (
        f"{header}\n"
        f"renamed.jpeg,/old/renamed.jpeg,{sha(3)},,L,user,1,,3,1,2,,,,,,seen twice\n"
        f"gone.jpeg,,{sha(9)},,,,1,,1,,,,,,,,\n"
    )
    report = import_labels(store, write(tmp_path, text), "canonical", IMAGES, as_grader="F")
    assert kinds(report) == [(3, IssueKind.UNMATCHED)]
    grading = store.current_grading(sha(3), "F")
    assert grading is not None
    assert (grading.dr_grade, grading.amd_grade, grading.dme, grading.notes) == (
        3,
        1,
        2,
        "seen twice",
    )


@pytest.mark.parametrize(
    ("data", "fmt", "fragment"),
    [
        (b"level,image\n", "aptos", "missing column"),
        (b"\x00\x01binary\xff", "eyepacs", "binary"),
        (b"image,level\n", "imagefolder", "export-only"),
        (b"image,level\n", "nope", "unknown label format"),
    ],
)
def test_unreadable_files_raise_label_file_error(
    store: SqliteLabelStore, tmp_path: Path, data: bytes, fmt: str, fragment: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    with pytest.raises(LabelFileError, match=fragment):
        import_labels(store, path, fmt, IMAGES, as_grader="G")
    assert store.current_gradings() == []


def test_needs_exactly_one_grader(store: SqliteLabelStore, tmp_path: Path) -> None:
    path = write(tmp_path, "image,level\n10_left,1\n")
    with pytest.raises(ValueError, match="exactly one"):
        import_labels(store, path, "eyepacs", IMAGES)
    with pytest.raises(ValueError, match="exactly one"):
        import_labels(store, path, "eyepacs", IMAGES, as_grader="A", as_reference="x")
    with pytest.raises(ValueError, match="named grader"):
        import_labels(store, path, "eyepacs", IMAGES, as_grader="  ")


def test_an_import_as_an_arbiter_never_takes_the_arbiters_precedence(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    from sall_desktop.services.adapters.export_rows import choose_gradings

    store.add_grader("Dr Arb", GraderRole.ARBITER)
    store.add_grading(Grading(sha(1), "Dr Human", dr_grade=3, amd_grade=0))
    path = write(tmp_path, "image,level\n10_left,0\n")
    import_labels(store, path, "eyepacs", IMAGES, as_grader="Dr Arb")
    imported = store.current_grading(sha(1), "Dr Arb")
    assert imported is not None and imported.source is GradingSource.IMPORT
    assert imported.role is GraderRole.PRIMARY  # never the arbiter's final word
    assert choose_gradings(store, None)[sha(1)].grader in ("Dr Human", "Dr Arb")
    # An imported row written as an arbiter's (an older database) does not win either.
    store.add_grading(Grading(sha(2), "Dr Human", dr_grade=2, amd_grade=0,
                              created_at="2026-12-07T10:00:00+00:00"))  # fmt: skip
    store.add_grading(Grading(sha(2), "Dr Old", dr_grade=0, amd_grade=0, role=GraderRole.ARBITER,
                              source=GradingSource.IMPORT,
                              created_at="2026-12-07T09:00:00+00:00"))  # fmt: skip
    assert choose_gradings(store, None)[sha(2)].grader == "Dr Human"
