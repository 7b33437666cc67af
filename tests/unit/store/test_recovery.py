"""R7: unclean shutdowns are detected and checked; damaged files open read-only, no crash."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sall_desktop.store import StoreError, StoreWriteError, db, open_store
from tests.unit.store.conftest import HANG_GUARD_S


def _page_of(path: Path, table: str) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    return root, page_size


def _flip(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture
def damaged_copy(tmp_path: Path, grading) -> Path:
    """A backup whose gradings b-tree page has its header bytes flipped (SQLite's corruptC)."""
    with open_store(tmp_path / "live.sqlite3") as store:
        for i in range(40):
            store.add_grading(grading(i, notes="n" * 50))
        store.backup_to(tmp_path / "copy.sqlite3")
    copy = tmp_path / "copy.sqlite3"
    root, page_size = _page_of(copy, "gradings")
    page_start = (root - 1) * page_size
    # Cell count and cell-content offset of the page header: the page no longer parses.
    _flip(copy, page_start + 3, b"\xff\xf0\xff\xf0")
    return copy


def test_damaged_copy_opens_read_only_with_a_reason(damaged_copy: Path, grading) -> None:
    with open_store(damaged_copy) as store:
        assert store.read_only and store.corrupt
        assert "damaged" in store.read_only_reason and "backup" in store.read_only_reason
        assert store.startup_check != "ok"
        assert store.integrity_check(quick=True) != "ok"
        with pytest.raises(StoreWriteError, match="damaged"):
            store.add_grading(grading(99))
        with pytest.raises(StoreError):
            store.current_gradings()  # reading the bad page is an error, not a crash
        assert store.graders() == ["Dr A"]  # undamaged tables still read
    # A damaged store keeps its marker, so the next start checks again.
    assert db.running_marker_path(damaged_copy).exists()


def test_a_file_that_is_not_a_database_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite3"
    path.write_bytes(b"this is not a database, just text" * 200)
    with open_store(path) as store:
        assert store.read_only and "damaged" in store.read_only_reason
        assert store.integrity_check() != "ok"
        with pytest.raises(StoreError):
            store.list_images()
    assert path.read_bytes().startswith(b"this is not")  # left untouched for recovery


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sall_desktop.domain.grades import Grading
    from sall_desktop.store import open_store
    store = open_store(Path(sys.argv[1]))
    row = store.add_grading(Grading(image_sha256="ab" * 32, grader="Dr K", dr_grade=3))
    print(row, flush=True)
    time.sleep(3600)  # until the test kills it
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_unclean_shutdown_is_detected_checked_and_loses_nothing(db_path: Path) -> None:
    open_store(db_path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=HANG_GUARD_S)
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the grade is only in the WAL so far
    with open_store(db_path, startup_check="auto") as store:
        assert store.unclean_shutdown and store.startup_check == "ok" and not store.read_only
        rows = store.grading_rows("ab" * 32)
        assert [r.id for r in rows] == [acknowledged] and rows[0].grading is not None
        assert rows[0].grading.dr_grade == 3
    with open_store(db_path, startup_check="none") as store:
        assert not store.unclean_shutdown and store.startup_check is None


def test_clean_close_leaves_no_marker_and_never_removes_sqlite_files(db_path: Path) -> None:
    store = open_store(db_path)
    assert db.running_marker_path(db_path).exists() and db.lock_path(db_path).exists()
    store.close()
    assert not db.running_marker_path(db_path).exists()
    with open_store(db_path) as again:
        assert not again.unclean_shutdown


def test_read_only_open_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no label database"):
        open_store(tmp_path / "missing.sqlite3", read_only=True)
