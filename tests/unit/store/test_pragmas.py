"""R1: every connection the store opens carries the durability PRAGMAs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sall_desktop.store import StoreThread, db, migrations, open_store
from sall_desktop.store.migrations import Migration

REQUIRED = {
    "journal_mode": "wal",
    "synchronous": "2",  # FULL
    "foreign_keys": "1",
    "busy_timeout": str(db.BUSY_TIMEOUT_MS),
    "secure_delete": "1",
}


def test_every_connection_the_store_opens_has_the_pragmas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grading
) -> None:
    raw_calls: list[str] = []
    checked: list[dict[str, str]] = []
    inside_factory = [0]
    real_sqlite_connect = sqlite3.connect
    real_factory = db.connect

    def spy_sqlite_connect(*args, **kwargs):
        raw_calls.append(str(args[0]))
        assert inside_factory[0] == 1, "sqlite3.connect called outside store.db.connect"
        return real_sqlite_connect(*args, **kwargs)

    def spy_factory(*args, **kwargs):
        inside_factory[0] += 1
        try:
            conn = real_factory(*args, **kwargs)
        finally:
            inside_factory[0] -= 1
        checked.append(db.connection_settings(conn))
        return conn

    monkeypatch.setattr(sqlite3, "connect", spy_sqlite_connect)
    monkeypatch.setattr(db, "connect", spy_factory)

    path = tmp_path / "labels.sqlite3"
    with open_store(path) as store:  # new database
        store.add_grading(grading(1))
        store.backup_to(tmp_path / "backup.sqlite3")  # backup target connection
        with open_store(path) as second:  # second instance: read-only connection
            assert second.read_only
    # An existing database with a pending migration: the pre-migration backup connection.
    loaded = migrations.load_migrations()
    extra = Migration(len(loaded) + 1, "0099_test.sql", "CREATE TABLE test_extra (x INTEGER);")
    monkeypatch.setattr(migrations, "load_migrations", lambda: [*loaded, extra])
    thread = StoreThread(path)
    thread.wait_open()
    thread.submit(lambda s: s.add_grading(grading(2))).result()
    thread.close()
    assert list(tmp_path.glob(f"labels.sqlite3.schema{len(loaded)}-*.bak"))

    assert len(raw_calls) == len(checked) >= 5
    for settings in checked:
        assert settings == REQUIRED
