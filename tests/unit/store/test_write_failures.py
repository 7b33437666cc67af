"""R4: a failed write raises StoreWriteError with a readable message and writes nothing."""

from __future__ import annotations

import sqlite3

import pytest

from sall_desktop.store import StoreWriteError, db, open_store
from sall_desktop.store import label_queries as repo_mod


def test_read_only_store_refuses_writes_without_touching_the_file(db_path, grading) -> None:
    with open_store(db_path) as s:
        s.add_grading(grading(1))
    size = db_path.stat().st_size
    with open_store(db_path, read_only=True) as s:
        assert s.read_only and "read-only" in s.read_only_reason
        with pytest.raises(StoreWriteError, match="Could not save the grade") as err:
            s.add_grading(grading(2))
        assert not err.value.retryable
        with pytest.raises(StoreWriteError):
            s.set_setting("k", "v")
        assert len(s.current_gradings()) == 1
    assert db_path.stat().st_size == size


def test_sqlite_readonly_error_becomes_store_write_error(db_path, grading) -> None:
    with open_store(db_path) as s:
        s.add_grading(grading(1))
    with open_store(db_path, read_only=True) as s:
        s.read_only = False  # pretend the guard missed it: SQLite itself refuses the write
        with pytest.raises(StoreWriteError, match="read-only disk") as err:
            s.add_grading(grading(2))
        assert not err.value.retryable
        assert len(s.current_gradings()) == 1


def test_disk_full_rolls_back_and_a_retry_after_freeing_space_commits(store, grading, sha) -> None:
    store.add_grading(grading(0))
    conn = store._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is now full
    acknowledged = []
    with pytest.raises(StoreWriteError, match="disk is full") as err:
        for i in range(1, 10_000):
            acknowledged.append(store.add_grading(grading(i, notes="x" * 500)))
    assert err.value.retryable
    failed = len(acknowledged) + 1
    assert store.current_grading(sha(failed), "Dr A") is None
    assert {r.image_sha256 for r in store.audit_log()} == {sha(i) for i in range(failed)}
    assert store.integrity_check() == "ok"
    conn.execute(f"PRAGMA max_page_count = {pages * 100}")  # space freed: retry
    store.add_grading(grading(failed, notes="x" * 500))
    assert store.current_grading(sha(failed), "Dr A") is not None


def test_a_failure_mid_transaction_leaves_nothing_half_written(
    store, grading, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_grading(grading(1))

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(repo_mod.audit, "append_audit_rows", full)
    with pytest.raises(StoreWriteError) as err:
        store.add_grading(grading(2, "Dr New"))  # new image and grader rows would come first
    assert "disk is full" in str(err.value) and "pending" in str(err.value)
    monkeypatch.undo()
    assert [i.sha256 for i in store.list_images()] == [grading(1).image_sha256]
    assert store.graders() == ["Dr A"]
    assert len(store.grading_history(grading(2).image_sha256)) == 0
    store.add_grading(grading(2, "Dr New"))  # the retry commits
    assert len(store.current_gradings()) == 2


def test_a_locked_database_is_a_retryable_write_error(db_path, grading) -> None:
    with open_store(db_path) as s:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        assert s._conn is not None
        s._conn.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(StoreWriteError, match="another program") as err:
            s.add_grading(grading(1))
        assert err.value.retryable
        other.execute("ROLLBACK")
        other.close()
        s.add_grading(grading(1))
        assert len(s.current_gradings()) == 1


def test_a_medium_that_refuses_writes_opens_read_only(
    db_path, grading, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(db_path) as s:
        s.add_grading(grading(1))
    real_connect = db.connect

    def refusing_connect(path, *, read_only=False, journal_mode="WAL"):
        if not read_only:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(path, read_only=True, journal_mode=journal_mode)

    monkeypatch.setattr(db, "connect", refusing_connect)
    with open_store(db_path) as s:
        assert s.read_only and "cannot be written" in s.read_only_reason
        assert len(s.current_gradings()) == 1
        with pytest.raises(StoreWriteError, match="cannot be written"):
            s.add_grading(grading(2))


def test_a_read_only_folder_opens_read_only(
    db_path, grading, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    with open_store(db_path) as s:
        s.add_grading(grading(1))
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode)
    )
    with open_store(db_path) as s:
        assert s.read_only and "cannot be written" in s.read_only_reason
        assert len(s.current_gradings()) == 1
