"""Exports in a screening programme: final grades, how they were reached, NHS codes, privacy.

A store with a programme (no normals sampled, so routing is fully determined by the grades)
and three graders; each image below ends in a known state. The expected values are written out
here, not computed with the code under test.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    Grading,
    ImageRecord,
    Laterality,
    UngradableReason,
)
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.adapters import LabelRecord, get_adapter
from sall_desktop.services.adapters.derived import DERIVED_COLUMNS, DerivedColumns
from sall_desktop.services.adapters.export_rows import missing_gradings
from sall_desktop.services.adapters.privacy import pseudonym
from sall_desktop.services.adapters.report import IssueKind
from sall_desktop.services.labels_io import export_labels, import_labels
from sall_desktop.store import SqliteLabelStore, open_store
from training.protocol.canonical import CANONICAL_COLUMNS

KEY = b"k" * 32
P, S, A = "Dr Primrose", "Dr Secunda", "Dr Arbuthnot"
DAY = "20260105"


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def image(name: str, patient: str, eye: Laterality) -> ImageRecord:
    return ImageRecord(
        sha(name),
        f"/clinic/{name}.jpg",
        laterality=eye,
        laterality_source=FieldSource.DICOM_TAG,
        patient_id=patient,
        study_date=DAY if patient else "",
    )


R, L = Laterality.RIGHT, Laterality.LEFT
IMAGES = {
    "single": image("single", "P1", R),  # normal, not sampled: the primary grade stands
    "agreed": image("agreed", "P1", L),  # referable, the secondary agrees: secondary's grade
    "arbitrated": image("arbitrated", "P2", R),  # disagreement on referable: arbiter's grade
    "wait2": image("wait2", "P2", L),  # abnormal, no second grading yet
    "waitA": image("waitA", "P3", R),  # disagreement, no arbiter yet
    "ungradable": image("ungradable", "P4", R),  # both levels say ungradable
    "nopatient": image("nopatient", "", R),  # normal, single, no patient id: no visit
    "ungraded": image("ungraded", "P5", R),  # nobody graded it
}


def grading(name: str, grader: str, role: GraderRole, **values: object) -> Grading:
    return Grading(sha(name), grader, role=role, **values)  # type: ignore[arg-type]


PRIMARY, SECONDARY, ARBITER = GraderRole.PRIMARY, GraderRole.SECONDARY, GraderRole.ARBITER
BLUR = {"gradable": False, "ungradable_reason": UngradableReason.BLUR}


def grade_everything(store: SqliteLabelStore) -> None:
    for name, dr, amd, dme in (
        ("single", 0, 0, 0),
        ("agreed", 3, 0, 1),
        ("arbitrated", 1, 0, 0),
        ("wait2", 1, 0, 0),
        ("waitA", 0, 2, 0),
        ("nopatient", 0, 0, None),
    ):
        store.add_grading(grading(name, P, PRIMARY, dr_grade=dr, amd_grade=amd, dme=dme))
    store.add_grading(grading("ungradable", P, PRIMARY, **BLUR))
    store.add_grading(grading("agreed", S, SECONDARY, dr_grade=2, amd_grade=0, dme=1))
    store.add_grading(grading("arbitrated", S, SECONDARY, dr_grade=3, amd_grade=0, dme=0))
    store.add_grading(grading("waitA", S, SECONDARY, dr_grade=2, amd_grade=2, dme=0))
    store.add_grading(grading("ungradable", S, SECONDARY, **BLUR))
    store.add_grading(grading("arbitrated", A, ARBITER, dr_grade=4, amd_grade=0, dme=1))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLabelStore]:
    with open_store(tmp_path / "labels.sqlite3") as opened:
        opened.upsert_images(list(IMAGES.values()))
        opened.set_programme_rules(RoutingRules(normal_fraction=0.0, seed=11), actor="QA")
        for grader, role in ((P, ProgrammeRole.PRIMARY), (S, ProgrammeRole.SECONDARY)):
            opened.set_programme_role(grader, role, actor="QA")
        opened.set_programme_role(A, ProgrammeRole.ARBITER, actor="QA")
        grade_everything(opened)
        yield opened


def table(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def by_name(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["image_id"].removesuffix(".jpg"): row for row in rows}


# What each exported image's row must say: the grade that stands, its grader and role, how it
# was reached, the level graders, and the NHS columns (nhs_r, nhs_m, nhs_lossy, visit_outcome).
EXPECTED = {
    "single": ("0", P, "primary", "single", (P, "", ""), ("R0", "M0", "0", "R1/R2M0*")),
    "agreed": ("2", S, "secondary", "agreed", (P, S, ""), ("R1/R2", "M0", "1", "R1/R2M0*")),
    "arbitrated": ("4", A, "arbiter", "arbitrated", (P, S, A), ("R3a", "M0", "1", "")),
    "ungradable": ("", S, "secondary", "agreed", (P, S, ""), ("", "", "0", "U")),
    "nopatient": ("0", P, "primary", "single", (P, "", ""), ("R0", "", "0", "")),
}


def test_identified_canonical_export_writes_final_grades(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    out = tmp_path / "final.csv"
    summary = export_labels(store, "canonical", out, identified=True)
    rows = by_name(table(out))
    assert set(rows) == set(EXPECTED)
    for name, (dr, grader, role, how, levels, nhs) in EXPECTED.items():
        row = rows[name]
        assert (row["dr_icdr"], row["grader_id"], row["grader_role"]) == (dr, grader, role), name
        assert row["how_reached"] == how, name
        assert (row["primary_grader"], row["secondary_grader"], row["arbiter"]) == levels, name
        assert (row["nhs_r"], row["nhs_m"], row["nhs_lossy"], row["visit_outcome"]) == nhs, name
    assert rows["ungradable"]["gradable"] == "0"
    assert rows["arbitrated"]["dme"] == "1"  # the arbiter's DME, not the others'
    assert summary.rows == 5
    assert summary.grader_rule == "final grade per image (screening programme)"
    assert dict(summary.skipped) == {
        sha("wait2"): "waiting for second grading",
        sha("waitA"): "waiting for arbitration",
    }
    assert "2 skipped" in summary.format()
    assert (
        "2 rows carry an NHS code that ICDR cannot give exactly (ICDR 2 -> R1/R2, DME 1 -> M0)"
        in " ".join(summary.notes)
    )
    # The CLI's "images without a grade" hint counts the ungraded image only, not the waiting.
    assert missing_gradings(store, None) == (1, ())


def test_de_identified_export_hides_grader_names_behind_stable_pseudonyms(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    out = tmp_path / "deid.csv"
    export_labels(store, "canonical", out, site_key=KEY)
    text = out.read_text(encoding="utf-8")
    for name in (P, S, A, "Primrose", "Secunda", "Arbuthnot"):
        assert name not in text
    rows = table(out)
    alias = {name: pseudonym(KEY, name, kind="grader") for name in (P, S, A)}
    arbitrated = next(r for r in rows if r["how_reached"] == "arbitrated")
    assert (arbitrated["primary_grader"], arbitrated["secondary_grader"]) == (alias[P], alias[S])
    assert arbitrated["arbiter"] == arbitrated["grader_id"] == alias[A]
    assert {r["grader_id"] for r in rows} == set(alias.values())
    assert {r["how_reached"] for r in rows} == {"single", "agreed", "arbitrated"}
    assert sorted(r["nhs_lossy"] for r in rows) == ["0", "0", "0", "1", "1"]
    # Stable at one site, unrelated at another.
    again = tmp_path / "again.csv"
    export_labels(store, "canonical", again, site_key=KEY)
    assert again.read_bytes() == out.read_bytes()
    export_labels(store, "canonical", again, site_key=b"o" * 32)
    assert not {r["primary_grader"] for r in table(again)} & set(alias.values())


@pytest.mark.parametrize(
    ("fmt", "lines"),
    [
        ("eyepacs", ["image,level", "agreed,2", "arbitrated,4", "nopatient,0", "single,0"]),
        (
            "idrid",
            [
                "Image name,Retinopathy grade,Risk of macular edema ",
                "agreed,2,1",
                "arbitrated,4,1",
                "nopatient,0,",
                "single,0,0",
                "ungradable,,",
            ],
        ),
    ],
)
def test_public_formats_keep_their_headers_and_get_final_grades(
    store: SqliteLabelStore, tmp_path: Path, fmt: str, lines: list[str]
) -> None:
    out = tmp_path / f"{fmt}.csv"
    summary = export_labels(store, fmt, out, identified=True)
    assert out.read_text(encoding="utf-8").splitlines() == lines
    reasons = dict(summary.skipped)
    assert reasons[sha("wait2")] == "waiting for second grading"
    assert reasons[sha("waitA")] == "waiting for arbitration"
    assert not any("NHS" in note for note in summary.notes)


def test_a_chosen_grader_exports_their_own_grades_without_final_columns(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    out = tmp_path / "primary.csv"
    summary = export_labels(store, "canonical", out, identified=True, grader=P)
    rows = by_name(table(out))
    assert set(rows) == set(IMAGES) - {"ungraded"}  # waiting images included: her grades
    assert rows["agreed"]["dr_icdr"] == "3" and rows["arbitrated"]["dr_icdr"] == "1"
    assert {r["how_reached"] + r["primary_grader"] + r["visit_outcome"] for r in rows.values()} == {
        ""
    }
    assert rows["agreed"]["nhs_r"] == "R2"  # the NHS code of the row's own grades
    assert summary.skipped == () and summary.grader_rule == f"grader {P}"


def test_canonical_round_trip_never_makes_gradings_of_derived_columns(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    out = tmp_path / "final.csv"
    export_labels(store, "canonical", out, identified=True)
    images = list(IMAGES.values())
    levels_before = store.level_gradings()

    # Read back, the derived cells stay on the record as text.
    records = {r.image_id: r for r in get_adapter("canonical").read(out)}
    assert records["arbitrated.jpg"].derived == DerivedColumns(
        "arbitrated", P, S, A, "R3a", "M0", "1", ""
    )

    report = import_labels(store, out, "canonical", images, as_reference="site-b")
    assert report.ok and report.added == 5 and report.extras == ()
    imported = store.current_gradings(grader="reference:site-b")
    assert {g.role for g in imported} == {GraderRole.REFERENCE}
    assert {g.image_sha256: g.dr_grade for g in imported} == {
        sha(name): (int(v[0]) if v[0] else None) for name, v in EXPECTED.items()
    }
    assert store.level_gradings() == levels_before

    # Into a fresh store: one grading per row, all under the importing grader's name.
    with open_store(tmp_path / "fresh.sqlite3") as fresh:
        fresh.upsert_images(images)
        report = import_labels(fresh, out, "canonical", images, as_grader="Copy")
        assert report.ok and report.added == 5
        assert fresh.graders() == ["Copy"]
        assert len(fresh.current_gradings()) == 5


def test_a_row_with_only_derived_cells_is_no_label(store: SqliteLabelStore, tmp_path: Path) -> None:
    header = ",".join(CANONICAL_COLUMNS + DERIVED_COLUMNS)
    cells = {c: "" for c in CANONICAL_COLUMNS + DERIVED_COLUMNS}
    cells.update(image_id="ungraded.jpg", how_reached="arbitrated", arbiter=A, nhs_r="R3a")
    cells.update(nhs_m="M1", nhs_lossy="0", visit_outcome="R3aM1")
    path = tmp_path / "derived_only.csv"
    path.write_text(header + "\n" + ",".join(cells.values()) + "\n", encoding="utf-8")
    report = import_labels(store, path, "canonical", list(IMAGES.values()), as_grader="Copy")
    assert report.added == 0
    assert [i.kind for i in report.issues] == [IssueKind.NO_LABEL]
    assert store.current_gradings(grader="Copy") == []


def test_derived_cells_round_trip_through_the_adapter_escaped() -> None:
    adapter = get_adapter("canonical")
    derived = DerivedColumns("agreed", "=Dr P", "-S", "@A", "R1/R2", "M0", "1", "R1/R2M0*")
    original = LabelRecord("x.png", dr_grade=2, dme=0, derived=derived)
    text = adapter.write([original])
    assert "'=Dr P" in text and "'-S" in text and "'@A" in text  # formula-escaped (R17)
    assert adapter.read(text) == [original]


def programme_less(store_path: Path) -> SqliteLabelStore:
    opened = open_store(store_path)
    opened.upsert_images(list(IMAGES.values()))
    return opened


def test_without_a_programme_exports_are_as_before(tmp_path: Path) -> None:
    with programme_less(tmp_path / "plain.sqlite3") as plain:
        a, b = sha("single"), sha("agreed")
        plain.add_grading(Grading(a, "Ann", dr_grade=1, created_at="2026-01-01T00:00:00+00:00"))
        plain.add_grading(Grading(a, "Bob", dr_grade=2, created_at="2026-01-02T00:00:00+00:00"))
        plain.add_grading(Grading(b, "Bob", dr_grade=0, created_at="2026-01-03T00:00:00+00:00"))
        plain.add_grading(
            Grading(b, "Arb", dr_grade=3, role=ARBITER, created_at="2026-01-01T00:00:00+00:00")
        )
        plain.add_grading(Grading(sha("wait2"), "Ann", dr_grade=1, role=SECONDARY))
        out = tmp_path / "plain.csv"
        summary = export_labels(plain, "canonical", out, identified=True)
        lines = out.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith(",".join(CANONICAL_COLUMNS) + ",")
        old = ",1,,{dr},,,{who},{role},human,{at},,"
        assert lines[1:3] == [
            f"agreed.jpg,/clinic/agreed.jpg,{b},P1,L,dicom_tag"
            + old.format(dr=3, who="Arb", role="arbiter", at="2026-01-01T00:00:00+00:00")
            + ",,,,,R2,,0,",
            f"single.jpg,/clinic/single.jpg,{a},P1,R,dicom_tag"
            + old.format(dr=2, who="Bob", role="primary", at="2026-01-02T00:00:00+00:00")
            + ",,,,,R1/R2,,1,",
        ]
        wait2 = table(out)[2]
        assert (wait2["image_id"], wait2["grader_id"], wait2["grader_role"]) == (
            "wait2.jpg",
            "Ann",
            "secondary",
        )
        assert wait2["how_reached"] == wait2["secondary_grader"] == ""
        assert summary.rows == 3 and summary.skipped == ()
        assert summary.grader_rule == "latest human grading per image"
        eyepacs = tmp_path / "plain_eyepacs.csv"
        export_labels(plain, "eyepacs", eyepacs, identified=True)
        assert eyepacs.read_text().splitlines() == [
            "image,level",
            "agreed,3",
            "single,2",
            "wait2,1",
        ]
        assert missing_gradings(plain, None) == (5, ())
