"""Issue 22: periodic verified backups at open, rotation, and never a damaged store's copy;
an empty (0-byte) database file is refused, never made a new database.

Every clock is injected (``BackupPolicy.now``): no test depends on how long anything takes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sall_desktop.domain.grades import Grading
from sall_desktop.store import StoreError, db, open_store
from sall_desktop.store.backups import (
    BackupPolicy,
    backup_due,
    backups_folder,
    list_backups,
    migration_backups,
    periodic_backups,
)

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def filled(db_path: Path, grading: Callable[..., Grading]) -> Path:
    """A database with gradings, created without any periodic backup."""
    with open_store(db_path, backups=None) as store:
        for i in range(3):
            store.add_grading(grading(i, dr_grade=i))
    return db_path


def _open(path: Path, clock: Clock, keep: int = 7, **kwargs: object):  # type: ignore[no-untyped-def]
    return open_store(path, backups=BackupPolicy(keep=keep, now=clock), **kwargs)  # type: ignore[arg-type]


def _times(path: Path) -> list[datetime]:
    return [b.taken_at for b in periodic_backups(path)]


def _tamper(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER gradings_no_update")
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute(sql)
    conn.commit()
    conn.close()


# ---------------------------------------------------------------------- 0-byte files


@pytest.mark.parametrize("read_only", [False, True])
def test_an_empty_file_is_refused_and_left_as_it_is(db_path: Path, read_only: bool) -> None:
    db_path.write_bytes(b"")
    with pytest.raises(StoreError) as caught:
        open_store(db_path, read_only=read_only)
    message = str(caught.value)
    assert str(db_path) in message and "empty (0 bytes)" in message
    assert "sall-desktop restore" in message
    assert db_path.read_bytes() == b""  # not initialised
    lock = db.InstanceLock(db.lock_path(db_path))
    assert lock.acquire()  # the refusal released the writer lock
    lock.release()


def test_a_missing_file_still_becomes_a_new_database_without_a_backup(
    db_path: Path, clock: Clock
) -> None:
    with _open(db_path, clock) as store:
        assert not store.read_only and store.warnings == []
    assert db_path.stat().st_size > 0
    assert list_backups(db_path) == []  # nothing in it yet: nothing to back up


# ---------------------------------------------------------------------- when a backup is taken


def test_a_backup_is_taken_when_due_and_not_while_the_newest_is_fresh(
    filled: Path, clock: Clock, grading: Callable[..., Grading]
) -> None:
    with _open(filled, clock) as store:
        assert store.warnings == [] and store.chain_report is not None and store.chain_report.ok
    assert _times(filled) == [T0]
    backup = periodic_backups(filled)[0].path
    assert backup.parent == backups_folder(filled)
    assert backup.name == "labels-20260301-090000Z.sqlite"

    clock.advance(hours=23, minutes=59)
    with _open(filled, clock) as store:
        store.add_grading(grading(9))
    assert _times(filled) == [T0]

    clock.advance(minutes=1)
    with _open(filled, clock):
        pass
    assert _times(filled) == [T0 + timedelta(hours=24), T0]
    # The backup holds what the database held when it was taken.
    with open_store(periodic_backups(filled)[0].path, read_only=True) as copy:
        assert len(copy.current_gradings()) == 4 and copy.verify().ok


def test_the_interval_is_configurable_and_read_only_opens_take_none(
    filled: Path, clock: Clock
) -> None:
    hourly = BackupPolicy(interval=timedelta(hours=1), now=clock)
    open_store(filled, backups=hourly).close()
    clock.advance(hours=1)
    open_store(filled, backups=hourly, read_only=True).close()
    assert _times(filled) == [T0]
    open_store(filled, backups=hourly).close()
    assert len(_times(filled)) == 2


def test_a_pre_migration_backup_counts_as_the_newest(filled: Path, clock: Clock) -> None:
    (filled.parent / f"{filled.name}.schema2-20260301T080000Z.bak").write_bytes(b"x")
    assert not backup_due(filled, BackupPolicy(now=clock))
    clock.advance(hours=23)
    assert backup_due(filled, BackupPolicy(now=clock))
    # A newest backup dated in the future (the clock was set back) does not stop backups.
    assert backup_due(filled, BackupPolicy(now=lambda: T0 - timedelta(days=1)))


def test_rotation_keeps_the_newest_n_and_never_other_files(filled: Path, clock: Clock) -> None:
    folder = backups_folder(filled)
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    migration = filled.parent / f"{filled.name}.schema1-20200101T000000Z.bak"
    migration.write_bytes(b"old")
    for _ in range(5):
        _open(filled, clock, keep=3).close()
        clock.advance(days=1)
    assert _times(filled) == [T0 + timedelta(days=d) for d in (4, 3, 2)]
    assert (folder / "notes.txt").read_text() == "mine" and migration.exists()
    assert [b.path for b in migration_backups(filled)] == [migration]
    assert [b.kind for b in list_backups(filled)] == [
        "periodic",
        "periodic",
        "periodic",
        "before upgrade (schema 1)",
    ]


def test_keep_and_interval_are_checked() -> None:
    with pytest.raises(ValueError):
        BackupPolicy(keep=0)
    with pytest.raises(ValueError):
        BackupPolicy(interval=timedelta(hours=-1))


# ---------------------------------------------------------------------- never a damaged copy


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("UPDATE gradings SET dr_grade = 4 WHERE id = 1", "did not verify (grading 1 differs"),
        ("UPDATE audit_log SET new_value = '4' WHERE id = 2", "The audit trail was altered"),
    ],
    ids=["edited-grading", "edited-audit-row"],
)
def test_a_store_that_does_not_verify_is_never_backed_up_over_good_ones(
    filled: Path, clock: Clock, sql: str, said: str
) -> None:
    for _ in range(2):
        _open(filled, clock, keep=2).close()
        clock.advance(days=1)
    good = periodic_backups(filled)
    _tamper(filled, sql)
    for _ in range(3):
        with _open(filled, clock, keep=2) as store:
            assert any(said in w for w in store.warnings), store.warnings
            assert any("No backup was taken" in w for w in store.warnings)
        clock.advance(days=1)
    assert periodic_backups(filled) == good
    for backup in good:
        with open_store(backup.path, read_only=True) as copy:
            assert copy.verify().ok


def _flip_page(path: Path, table: str) -> None:
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    conn.close()
    with open(path, "r+b") as f:
        f.seek((root[0] - 1) * page_size + 3)
        f.write(b"\xff\xf0\xff\xf0")


def test_damage_found_by_the_backup_check_keeps_the_old_backups_and_marks_the_store(
    filled: Path, clock: Clock
) -> None:
    _open(filled, clock).close()
    good = periodic_backups(filled)
    with open_store(filled, backups=None) as store:
        for i in range(200):  # a settings table of its own pages, which verify() never reads
            store.set_setting(f"key{i}", "v" * 40)
    _flip_page(filled, "settings")
    clock.advance(days=2)
    # A big database is not checked at open ("none" here): the backup's check finds the damage.
    with _open(filled, clock, startup_check="none") as store:
        assert store.corrupt and store.read_only
        assert any("periodic backup could not be written" in w for w in store.warnings)
    assert periodic_backups(filled) == good
    assert not any(p.name.startswith(".sall-tmp-") for p in backups_folder(filled).iterdir())


def test_a_backup_killed_half_way_leaves_nothing_behind_the_next_one(
    filled: Path, clock: Clock
) -> None:
    folder = backups_folder(filled)
    folder.mkdir()
    for name in (".sall-tmp-labels-20260228-090000Z.sqlite.99", ".sall-tmp-x.sqlite.99-wal"):
        (folder / name).write_bytes(b"half a copy")
    _open(filled, clock).close()
    assert [p.name for p in folder.iterdir()] == ["labels-20260301-090000Z.sqlite"]
