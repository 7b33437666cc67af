"""Schema migrations: user_version, ordered files, one transaction each, backup first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sall_desktop.store import StoreError, open_store
from sall_desktop.store import migrations as mig
from sall_desktop.store.migrations import Migration


def test_bundled_migrations_load_in_order_through_importlib_resources() -> None:
    loaded = mig.load_migrations()
    assert [m.version for m in loaded] == list(range(1, len(loaded) + 1))
    assert loaded[0].name == "0001_initial.sql" and "CREATE TABLE gradings" in loaded[0].sql


def test_new_database_gets_the_latest_schema(db_path: Path) -> None:
    open_store(db_path).close()
    conn = sqlite3.connect(db_path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")}
    conn.close()
    assert version == mig.latest_version()
    assert {
        "images",
        "image_locations",
        "graders",
        "gradings",
        "predictions",
        "audit_log",
        "models",
        "training_runs",
        "import_extras",
        "settings",
    } <= tables
    assert "current_gradings" in views


def _with_extra(monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    loaded = mig.load_migrations()
    monkeypatch.setattr(
        mig, "load_migrations", lambda: [*loaded, Migration(len(loaded) + 1, "0099_x.sql", sql)]
    )


def test_existing_database_is_backed_up_before_migrating(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, grading
) -> None:
    with open_store(db_path) as store:
        store.add_grading(grading(1))
    base = mig.latest_version()
    _with_extra(monkeypatch, "ALTER TABLE settings ADD COLUMN extra TEXT;")
    with open_store(db_path) as store:
        assert len(store.current_gradings()) == 1
    backups = list(db_path.parent.glob(f"{db_path.name}.schema{base}-*.bak"))
    assert len(backups) == 1
    conn = sqlite3.connect(backups[0])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == base
    assert conn.execute("SELECT count(*) FROM gradings").fetchone()[0] == 1
    conn.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == base + 1
    conn.close()


def test_a_failing_migration_is_rolled_back_entirely(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(db_path).close()
    base = mig.latest_version()
    _with_extra(monkeypatch, "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;")
    with pytest.raises(StoreError, match="upgrade"):
        open_store(db_path)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == base
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "half_done" not in names
    monkeypatch.undo()
    with open_store(db_path) as store:  # the lock was released, the file still opens
        assert not store.read_only


def test_a_database_from_a_newer_version_opens_read_only(db_path: Path) -> None:
    open_store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with open_store(db_path) as store:
        assert store.read_only and "newer SALL Desktop" in store.read_only_reason


def test_a_foreign_sqlite_file_is_refused(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.close()
    with pytest.raises(StoreError, match="not a SALL Desktop label database"):
        open_store(db_path)


def test_migration_file_numbering_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeEntry:
        def __init__(self, name: str) -> None:
            self.name = name

        def read_text(self, encoding: str) -> str:
            return ""

    class FakeFolder:
        def iterdir(self):
            return [FakeEntry("0001_a.sql"), FakeEntry("0003_c.sql"), FakeEntry("README.md")]

    class FakeRoot:
        def joinpath(self, name: str) -> FakeFolder:
            return FakeFolder()

    monkeypatch.setattr(mig.resources, "files", lambda package: FakeRoot())
    with pytest.raises(RuntimeError, match="numbered"):
        mig.load_migrations()
