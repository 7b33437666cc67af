"""No file the app writes for the user may replace the label database, its SQLite and lock files,
the site pseudonym key or anything else in the data folder (issue 22): the guard itself, and the
service calls the workstation's export and import dialogs use."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import Grading, ImageRecord
from sall_desktop.services.adapters.report import ImportReport
from sall_desktop.services.labels_io import export_labels, import_labels
from sall_desktop.services.paths import (
    DB_SIDECARS,
    ProtectedTargetError,
    refuse_protected_target,
    store_file,
)
from sall_desktop.store import SqliteLabelStore, open_store

IMAGE = ImageRecord(f"{1:064x}", "/data/10_left.jpeg")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(folder))
    return folder


@pytest.fixture
def store(tmp_path: Path, home: Path) -> Iterator[SqliteLabelStore]:
    # Outside the data folder, as with --db: only the database rule protects it.
    with open_store(tmp_path / "work" / "labels.sqlite") as opened:
        opened.upsert_image(IMAGE)
        opened.add_grading(Grading(IMAGE.sha256, "Ann", dr_grade=2))
        yield opened


@pytest.fixture
def db(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    path = folder / "labels.sqlite"
    path.write_bytes(b"SQLite format 3\0")
    return path


@pytest.mark.parametrize("suffix", ["", *DB_SIDECARS])
def test_the_database_and_its_files_are_refused(suffix: str, db: Path, home: Path) -> None:
    with pytest.raises(ProtectedTargetError, match="the label database"):
        refuse_protected_target(Path(f"{db}{suffix}"), db=db)


def test_relative_and_dotted_spellings_are_resolved_first(
    db: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(db.parent)
    for spelling in ("labels.sqlite", "./labels.sqlite", "../work/labels.sqlite-wal"):
        with pytest.raises(ProtectedTargetError):
            refuse_protected_target(Path(spelling), db=db)
    with pytest.raises(ProtectedTargetError):  # the database given relative, the target not
        refuse_protected_target(db, db=Path("labels.sqlite"))
    refuse_protected_target(Path("labels.csv"), db=db)
    refuse_protected_target(Path("labels.sqlite.csv"), db=db)


@pytest.mark.skipif(sys.platform == "win32", reason="links need privileges on Windows")
def test_links_to_the_database_are_refused(db: Path, home: Path, tmp_path: Path) -> None:
    symlink = tmp_path / "export.csv"
    symlink.symlink_to(db)
    hardlink = tmp_path / "hard.csv"
    os.link(db, hardlink)
    folder_link = tmp_path / "elsewhere"
    folder_link.symlink_to(db.parent)
    for target in (symlink, hardlink, folder_link / "labels.sqlite"):
        with pytest.raises(ProtectedTargetError):
            refuse_protected_target(target, db=db)


def test_the_data_folder_and_everything_in_it_are_refused(home: Path, tmp_path: Path) -> None:
    for target in (home, home / "site_key.bin", home / "x.csv", home / "models" / "new" / "a.csv"):
        with pytest.raises(ProtectedTargetError, match="data folder") as caught:
            refuse_protected_target(target, db=None)
        assert "\n" not in str(caught.value)
        assert isinstance(caught.value, PermissionError)  # reported wherever OSError is
    refuse_protected_target(tmp_path / "home-export.csv", db=None)  # a sibling is fine
    refuse_protected_target(tmp_path / "x.csv", db=None)


def test_an_export_refuses_its_own_database_and_writes_nothing(
    store: SqliteLabelStore, home: Path
) -> None:
    # The export dialog passes no database: the store's own file is protected anyway.
    before = store.path.read_bytes()
    assert store_file(store) == store.path
    for target in (store.path, Path(f"{store.path}-wal"), home / "site_key.bin"):
        with pytest.raises(ProtectedTargetError):
            export_labels(store, "canonical", target, identified=True)
    with pytest.raises(ProtectedTargetError):  # de-identified into the data folder, as before
        export_labels(store, "eyepacs", home / "labels.csv")
    assert store.path.read_bytes() == before
    assert not (home / "site_key.bin").exists() and not (home / "labels.csv").exists()
    summary = export_labels(store, "eyepacs", store.path.with_name("fine.csv"))
    assert summary.rows == 1


def test_an_import_report_refuses_the_database_it_was_imported_into(
    store: SqliteLabelStore, tmp_path: Path, home: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("image,level\n10_left,2\n404_left,1\n")
    report = import_labels(store, labels, "eyepacs", [IMAGE], as_grader="Bob")
    assert report.store_file == store.path and report.issues
    before = store.path.read_bytes()
    with pytest.raises(ProtectedTargetError):  # the import dialog's "Save report as CSV"
        report.write_csv(store.path)
    with pytest.raises(ProtectedTargetError):
        report.write_csv(home / "report.csv")
    with pytest.raises(ProtectedTargetError):  # another database named by the caller
        ImportReport("x", "eyepacs", "Bob", "id").write_csv(tmp_path / "o.db", db=tmp_path / "o.db")
    assert store.path.read_bytes() == before
    report.write_csv(tmp_path / "report.csv")
    assert "404_left" in (tmp_path / "report.csv").read_text()


@pytest.mark.parametrize(
    "name",
    [
        "labels.sqlite.backups",
        "labels.sqlite.backups/labels-20260301-090000Z.sqlite",
        "labels.sqlite.backups/export.csv",
        "labels.sqlite.schema2-20260301T090000Z.bak",
        "labels.sqlite.replaced-20260301-090000Z",
    ],
)
def test_the_backups_and_the_replaced_databases_are_refused(
    name: str, db: Path, home: Path
) -> None:
    with pytest.raises(ProtectedTargetError, match="backup"):
        refuse_protected_target(db.parent / name, db=db)
    refuse_protected_target(db.parent / "labels.sqlite.backups.csv", db=db)
