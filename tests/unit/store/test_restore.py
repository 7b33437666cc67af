"""Issue 22: restoring a backup checks it first, keeps the replaced database, and refuses a
damaged or altered backup (the database left exactly as it was) and a database in use."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sall_desktop.domain.grades import Grading
from sall_desktop.store import StoreError, StoreLockedError, open_store
from sall_desktop.store import migrations as mig
from sall_desktop.store.migrations import Migration
from sall_desktop.store.restore import check_backup, restore_database

WHEN = datetime(2026, 3, 2, 10, 30, 0, tzinfo=UTC)


@pytest.fixture
def saved(db_path: Path, tmp_path: Path, grading: Callable[..., Grading]) -> tuple[Path, Path]:
    """(database, backup): the backup holds 3 gradings; the database has 2 more since."""
    backup = tmp_path / "kept" / "labels-backup.sqlite"
    with open_store(db_path, backups=None) as store:
        for i in range(3):
            store.add_grading(grading(i, dr_grade=i))
        store.backup_to(backup)
        store.add_grading(grading(7, dr_grade=4))
        store.add_grading(grading(8, dr_grade=3))
    return db_path, backup


def _gradings(path: Path) -> list[tuple[str, int | None]]:
    with open_store(path, read_only=True) as store:
        return sorted((g.image_sha256, g.dr_grade) for g in store.current_gradings())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".sall-tmp-"))


def test_restore_round_trip_keeps_the_replaced_database(saved: tuple[Path, Path]) -> None:
    db_path, backup = saved
    at_backup = _gradings(backup)
    replaced_before = _gradings(db_path)
    backup_bytes = backup.read_bytes()

    result = restore_database(db_path, backup, now=WHEN)

    assert result.check.ok and result.check.gradings == 3 and result.migrated_from is None
    assert _gradings(db_path) == at_backup
    assert result.replaced == db_path.with_name("labels.sqlite3.replaced-20260302-103000Z")
    assert _gradings(result.replaced) == replaced_before  # kept, whole
    assert backup.read_bytes() == backup_bytes  # the backup is only read
    assert _leftovers(db_path.parent) == []
    with open_store(db_path, backups=None) as store:  # the restored file opens for writing
        assert not store.read_only and store.verify().ok
        assert store.chain_head() == result.check.chain_head


def test_a_crash_left_wal_moves_aside_with_the_replaced_database(
    saved: tuple[Path, Path],
) -> None:
    db_path, backup = saved
    wal = db_path.with_name(db_path.name + "-wal")
    wal.write_bytes(b"frames of the replaced database")
    result = restore_database(db_path, backup, now=WHEN)
    assert not wal.exists()  # never replayed into the restored file
    assert result.replaced is not None
    kept = result.replaced.with_name(result.replaced.name + "-wal")
    assert kept.read_bytes() == b"frames of the replaced database"
    assert _gradings(db_path) == _gradings(backup)


def test_a_second_restore_in_the_same_second_keeps_both_replaced_files(
    saved: tuple[Path, Path],
) -> None:
    db_path, backup = saved
    first = restore_database(db_path, backup, now=WHEN).replaced
    second = restore_database(db_path, backup, now=WHEN).replaced
    assert first is not None and second is not None and first != second
    assert first.exists() and second.exists()


def test_an_empty_or_missing_database_is_restored_too(saved: tuple[Path, Path]) -> None:
    db_path, backup = saved
    db_path.write_bytes(b"")
    result = restore_database(db_path, backup, now=WHEN)
    assert result.replaced is not None and result.replaced.read_bytes() == b""
    db_path.rename(db_path.with_name("moved.sqlite3"))
    assert restore_database(db_path, backup, now=WHEN).replaced is None
    assert _gradings(db_path) == _gradings(backup)


def _flip(path: Path, table: str) -> None:
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    conn.close()
    with open(path, "r+b") as f:
        f.seek((root[0] - 1) * page_size + 3)
        f.write(b"\xff\xf0\xff\xf0")


def _edit_grading(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER gradings_no_update")
    conn.execute("UPDATE gradings SET dr_grade = 4 WHERE id = 1")
    conn.commit()
    conn.close()


BAD_BACKUPS: dict[str, tuple[Callable[[Path], None], str]] = {
    "damaged": (lambda p: _flip(p, "gradings"), "could not be copied intact"),
    "altered": (_edit_grading, "does not verify: grading 1 differs"),
    "not-a-database": (lambda p: p.write_bytes(b"hello" * 1000), "not a readable SQLite"),
    "other-sqlite": (
        lambda p: (p.unlink(), sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.close()),
        "not a SALL Desktop label database",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_BACKUPS))
def test_a_bad_backup_is_refused_and_the_database_is_untouched(
    saved: tuple[Path, Path], kind: str
) -> None:
    db_path, backup = saved
    spoil, said = BAD_BACKUPS[kind]
    spoil(backup)
    before = db_path.read_bytes()
    names = sorted(p.name for p in db_path.parent.iterdir())
    with pytest.raises(StoreError, match="was not restored") as caught:
        restore_database(db_path, backup, now=WHEN)
    assert said in str(caught.value)
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == names  # nothing aside, no temp
    assert not check_backup(backup).ok


def test_restore_is_refused_while_another_program_writes_the_database(
    saved: tuple[Path, Path],
) -> None:
    db_path, backup = saved
    with open_store(db_path, backups=None) as holder:
        with pytest.raises(StoreLockedError):
            restore_database(db_path, backup, now=WHEN)
        assert len(holder.current_gradings()) == 5
    assert len(_gradings(db_path)) == 5


def test_the_database_itself_and_a_missing_file_are_refused(saved: tuple[Path, Path]) -> None:
    db_path, _ = saved
    with pytest.raises(StoreError, match="itself"):
        restore_database(db_path, db_path)
    with pytest.raises(StoreError, match="no backup file"):
        restore_database(db_path, db_path.with_name("none.sqlite"))


def test_an_older_schema_backup_is_upgraded_in_the_copy(
    saved: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path, _ = saved
    base = mig.latest_version()
    loaded = mig.load_migrations()
    monkeypatch.setattr(
        mig,
        "load_migrations",
        lambda: [*loaded, Migration(base + 1, "0099_x.sql", "ALTER TABLE settings ADD x TEXT;")],
    )
    open_store(db_path).close()  # upgrades, leaving its pre-migration backup
    old = next(db_path.parent.glob(f"{db_path.name}.schema{base}-*.bak"))
    assert check_backup(old).ok and check_backup(old).schema == base
    result = restore_database(db_path, old, now=WHEN)
    assert result.migrated_from == base and result.check.schema == base + 1
    assert check_backup(old).schema == base  # the backup itself is unchanged
    with open_store(db_path, backups=None) as store:
        assert len(store.current_gradings()) == 5 and store.verify().ok
