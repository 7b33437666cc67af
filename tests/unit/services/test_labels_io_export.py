"""Label export: grading choice, de-identification (R19), R6 renames, atomic replace (R3)."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sall_desktop.domain.grades import (
    GraderRole,
    Grading,
    GradingSource,
    ImageRecord,
    Laterality,
    UngradableReason,
)
from sall_desktop.services.adapters import LabelFileError, get_adapter
from sall_desktop.services.labels_io import export_labels, import_labels
from sall_desktop.store import SqliteLabelStore, open_store
from training.protocol.manifest import read_manifest

KEY = b"k" * 32
PHI = "DOE^JANE"


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


@pytest.fixture
def folder(tmp_path: Path) -> list[ImageRecord]:
    """Five real image files (distinct bytes) with a patient id and laterality."""
    records = []
    for n in range(5):
        path = tmp_path / "images" / f"{PHI}_{n}_left.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"\xff\xd8\xff\xe0" + bytes([n]) * 64
        path.write_bytes(data)
        records.append(
            ImageRecord(
                hashlib.sha256(data).hexdigest(),
                str(path),
                laterality=Laterality.LEFT,
                patient_id=f"{PHI}-MRN{n}",
            )
        )
    return records


@pytest.fixture
def store(tmp_path: Path, folder: list[ImageRecord]) -> Iterator[SqliteLabelStore]:
    with open_store(tmp_path / "labels.sqlite3") as opened:
        for image in folder:
            opened.upsert_image(image)
        yield opened


def test_identified_export_writes_native_ids_and_blank_ungradable(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path
) -> None:
    a, b, c = folder[:3]
    store.add_grading(Grading(a.sha256, "Ann", dr_grade=3, amd_grade=1, dme=2))
    store.add_grading(
        Grading(b.sha256, "Ann", gradable=False, ungradable_reason=UngradableReason.BLUR)
    )
    store.add_grading(Grading(c.sha256, "Ann", amd_grade=2))
    for fmt, expected in {
        "idrid": [f"{PHI}_0_left,3,2", f"{PHI}_1_left,,", f"{PHI}_2_left,,"],
        "messidor2": [f"{PHI}_0_left.jpg,3,,1", f"{PHI}_1_left.jpg,,,0", f"{PHI}_2_left.jpg,,,1"],
    }.items():
        out = tmp_path / f"{fmt}.csv"
        summary = export_labels(store, fmt, out, identified=True)
        assert out.read_text(encoding="utf-8").splitlines()[1:] == expected, fmt
        assert summary.rows == 3 and summary.identified
        assert summary.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert "lossy" in " ".join(summary.notes)


@pytest.mark.parametrize(
    ("fmt", "header"), [("eyepacs", "image,level"), ("aptos", "id_code,diagnosis")]
)
def test_eyepacs_and_aptos_skip_ungradable_and_dr_blank_images(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path, fmt: str, header: str
) -> None:
    # Their readers expect 0-4 in every row and there is no gradability column.
    a, b, c = folder[:3]
    store.add_grading(Grading(a.sha256, "Ann", dr_grade=3))
    store.add_grading(
        Grading(b.sha256, "Ann", gradable=False, ungradable_reason=UngradableReason.BLUR)
    )
    store.add_grading(Grading(c.sha256, "Ann", amd_grade=2))
    out = tmp_path / f"{fmt}.csv"
    summary = export_labels(store, fmt, out, identified=True)
    assert out.read_text(encoding="utf-8").splitlines() == [header, f"{PHI}_0_left,3"]
    assert summary.rows == 1
    reasons = dict(summary.skipped)
    assert reasons[b.sha256].startswith("ungradable") and "0-4" in reasons[b.sha256]
    assert reasons[c.sha256].startswith("no DR grade")
    assert "1 written" in summary.format() and "2 skipped" in summary.format()


def test_messidor2_dme_mapping_needs_consent(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path
) -> None:
    store.add_grading(Grading(folder[0].sha256, "Ann", dr_grade=1, dme=2))
    out = tmp_path / "m2.csv"
    refused = export_labels(store, "messidor2", out, identified=True)
    assert out.read_text().splitlines()[1].split(",")[2] == ""
    assert "not accepted" in refused.notes[0]
    accepted = export_labels(store, "messidor2", out, identified=True, accept_lossy=True)
    assert out.read_text().splitlines()[1].split(",")[2] == "1"
    assert "accepted" in accepted.notes[0]


def test_grading_choice_latest_human_arbiter_wins_reference_never_implicit(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path
) -> None:
    a, b, c = (image.sha256 for image in folder[:3])
    store.add_grading(Grading(a, "Ann", dr_grade=1, created_at="2026-01-01T00:00:00+00:00"))
    store.add_grading(Grading(a, "Bob", dr_grade=2, created_at="2026-01-02T00:00:00+00:00"))
    store.add_grading(Grading(b, "Bob", dr_grade=2, created_at="2026-01-03T00:00:00+00:00"))
    store.add_grading(
        Grading(
            b, "Arb", dr_grade=3, role=GraderRole.ARBITER, created_at="2026-01-01T00:00:00+00:00"
        )
    )
    store.add_grading(
        Grading(
            c,
            "reference:eyepacs",
            dr_grade=4,
            role=GraderRole.REFERENCE,
            source=GradingSource.IMPORT,
        )
    )
    out = tmp_path / "e.csv"
    summary = export_labels(store, "eyepacs", out, identified=True)
    assert out.read_text().splitlines()[1:] == [f"{PHI}_0_left,2", f"{PHI}_1_left,3"]
    assert summary.grader_rule == "latest human grading per image"
    export_labels(store, "eyepacs", out, identified=True, grader="Ann")
    assert out.read_text().splitlines()[1:] == [f"{PHI}_0_left,1"]
    export_labels(store, "eyepacs", out, identified=True, grader="reference:eyepacs")
    assert out.read_text().splitlines()[1:] == [f"{PHI}_2_left,4"]


def test_de_identified_by_default(
    store: SqliteLabelStore,
    folder: list[ImageRecord],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))
    for image in folder:
        store.add_grading(Grading(image.sha256, "Ann", dr_grade=1, notes=f"told {PHI}"))
    out = tmp_path / "export" / "canonical.csv"
    summary = export_labels(store, "canonical", out)
    text = out.read_text(encoding="utf-8")
    assert not summary.identified
    assert PHI not in text and "MRN" not in text and "images" not in text
    assert all(image.sha256 not in text for image in folder)
    table = rows(out)
    assert len({r["image_id"] for r in table}) == 5 and all(r["file_path"] == "" for r in table)
    assert {len(r["timestamp"]) for r in table} == {4}  # year only
    assert all(r["patient_id"] and r["notes"] == "" for r in table)
    # The same site key gives the same pseudonyms; another site's key different ones.
    again = tmp_path / "export" / "again.csv"
    export_labels(store, "canonical", again)
    assert [r["image_id"] for r in rows(again)] == [r["image_id"] for r in table]
    export_labels(store, "canonical", again, site_key=KEY)
    assert not {r["image_id"] for r in rows(again)} & {r["image_id"] for r in table}
    assert (tmp_path / "home" / "site_key.bin").exists()
    with pytest.raises(ValueError, match="notes"):
        export_labels(store, "canonical", again, include_notes=True, site_key=KEY)


def test_manifest_export_is_identified_and_readable_by_training(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path
) -> None:
    store.add_grading(Grading(folder[0].sha256, "Ann", dr_grade=2, amd_grade=0))
    store.add_grading(
        Grading(folder[1].sha256, "Ann", gradable=False, ungradable_reason=UngradableReason.FIELD)
    )
    out = tmp_path / "manifest.csv"
    export_labels(store, "manifest", out, splits={folder[1].sha256: "val"})
    manifest = read_manifest(out)
    assert [(m.image_path, m.sha256, m.dr_grade, m.gradable, m.split) for m in manifest] == [
        (folder[0].path, folder[0].sha256, 2, True, "train"),
        (folder[1].path, folder[1].sha256, None, False, "val"),
    ]


def test_renamed_and_moved_images_keep_their_labels(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path
) -> None:
    for n, image in enumerate(folder):
        store.add_grading(Grading(image.sha256, "Ann", dr_grade=n % 5, amd_grade=n % 4))
    before = tmp_path / "before.csv"
    export_labels(store, "canonical", before, identified=True)

    moved_dir = tmp_path / "moved" / "deeper"
    shutil.move(str(tmp_path / "images"), str(moved_dir))
    moved = []
    for n, image in enumerate(folder):
        old = moved_dir / Path(image.path).name
        new = old.with_name(f"renamed_{n}.jpg")
        old.rename(new)
        moved.append(replace(image, path=str(new)))
    after = tmp_path / "after.csv"
    export_labels(store, "canonical", after, identified=True, images=moved)
    old_rows, new_rows = rows(before), rows(after)
    by_sha = {r["sha256"]: r for r in old_rows}
    assert len(new_rows) == 5
    for row in new_rows:
        assert row["file_path"].startswith(str(moved_dir)) and row["image_id"].startswith(
            "renamed_"
        )
        old = by_sha[row["sha256"]]
        assert (row["dr_icdr"], row["amd_grade"]) == (old["dr_icdr"], old["amd_grade"])

    # Importing the old export against the moved folder reattaches by content, not by path.
    report = import_labels(store, before, "canonical", moved, as_grader="Copy")
    assert report.added == 5 and report.ok


def test_export_refuses_ids_naming_two_images_and_respects_overwrite(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path
) -> None:
    twin = replace(folder[1], path=str(Path(folder[0].path).with_suffix(".png")))
    store.add_grading(Grading(folder[0].sha256, "Ann", dr_grade=1))
    store.add_grading(Grading(folder[1].sha256, "Ann", dr_grade=2))
    store.add_grading(Grading(folder[2].sha256, "Ann", dr_grade=3))
    out = tmp_path / "e.csv"
    summary = export_labels(
        store, "eyepacs", out, identified=True, images=[folder[0], twin, folder[2]]
    )
    assert out.read_text().splitlines()[1:] == [f"{PHI}_2_left,3"]
    assert len(summary.skipped) == 2 and "2 different images" in summary.skipped[0][1]
    with pytest.raises(LabelFileError, match="exists"):
        export_labels(store, "eyepacs", out, identified=True, overwrite=False)


def test_imagefolder_through_the_service(
    store: SqliteLabelStore, folder: list[ImageRecord], tmp_path: Path
) -> None:
    store.add_grading(Grading(folder[0].sha256, "Ann", dr_grade=4))
    store.add_grading(
        Grading(folder[1].sha256, "Ann", gradable=False, ungradable_reason=UngradableReason.BLUR)
    )
    out = tmp_path / "tree"
    summary = export_labels(store, "imagefolder", out, identified=True, task="dr")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [f"all/4/{PHI}_0_left.jpg"]
    assert summary.rows == 1 and summary.skipped == ((folder[1].sha256, "ungradable"),)
    assert summary.sha256 == ""
    assert get_adapter("imagefolder").name == summary.fmt
