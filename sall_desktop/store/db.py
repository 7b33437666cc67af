"""Opening SQLite connections safely: PRAGMAs, the one-writer lock and the running marker.

Every connection the store opens comes from :func:`connect`, so every one of them carries the
PRAGMAs of R1 (WAL, ``synchronous=FULL``, foreign keys, a busy timeout, secure delete).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path

from model_zoo.fileio import atomic_write_text
from sall_desktop.domain.grades import utc_now

BUSY_TIMEOUT_MS = 5000
"""How long a connection waits for another one's lock before SQLITE_BUSY (milliseconds)."""

LOCK_SUFFIX = ".lock"
RUNNING_SUFFIX = ".running"


def connect(
    path: Path, *, read_only: bool = False, journal_mode: str = "WAL"
) -> sqlite3.Connection:
    """Open ``path`` with the store's PRAGMAs.

    Args:
        path: database file; created when missing unless ``read_only``.
        read_only: open with ``mode=ro`` (the file must exist).
        journal_mode: "WAL" normally, "DELETE" on network shares (R2). A read-only
            connection keeps whatever mode the file has.

    Returns:
        A connection in autocommit mode (``isolation_level=None``): the store issues
        ``BEGIN IMMEDIATE``/``COMMIT`` itself, so a transaction spans exactly one change.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
    """
    if read_only:
        target, uri = f"{path.absolute().as_uri()}?mode=ro", True
    else:
        target, uri = str(path), False
    conn = sqlite3.connect(target, uri=uri, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        apply_pragmas(conn, read_only=read_only, journal_mode=journal_mode)
    except BaseException:
        conn.close()
        raise
    return conn


def apply_pragmas(conn: sqlite3.Connection, *, read_only: bool, journal_mode: str) -> None:
    """Set the per-connection PRAGMAs of R1 and R20 (and two cheap hardening ones)."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # FULL: in WAL mode NORMAL may lose the last commits on power loss; FULL does not.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA secure_delete = ON")
    # A tampered schema cannot call functions with side effects; cells are sanity-checked on
    # read, which turns some corruption into an error instead of garbage.
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA cell_size_check = ON")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA journal_mode").fetchone()  # reads the header: fails on non-databases
    else:
        conn.execute(f"PRAGMA journal_mode = {journal_mode}").fetchone()


def connection_settings(conn: sqlite3.Connection) -> dict[str, str]:
    """The PRAGMA values that R1 requires, as text (for diagnostics and tests)."""
    names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "secure_delete")
    return {name: str(conn.execute(f"PRAGMA {name}").fetchone()[0]).lower() for name in names}


def lock_path(db_path: Path) -> Path:
    """The advisory lock file beside the database ("<db>.lock")."""
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


def running_marker_path(db_path: Path) -> Path:
    """The marker that exists while a writer has the database open ("<db>.running")."""
    return db_path.with_name(db_path.name + RUNNING_SUFFIX)


class InstanceLock:
    """An exclusive, non-blocking OS advisory lock on "<db>.lock": one writer process (R2).

    The OS drops the lock when the process dies, even by SIGKILL, so a crash never leaves a
    stale lock. POSIX uses ``flock`` (per open file, so two opens in one process also exclude
    each other); Windows uses ``msvcrt.locking`` on the first byte.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> bool:
        """Try to take the lock; return False at once if another holder has it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                os.close(fd)
                return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock (the lock file stays: removing it would race with a new holder)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            _unlock(fd)
        os.close(fd)


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def read_running_marker(db_path: Path) -> dict[str, object] | None:
    """The marker a writer left ({"pid", "started_at", "app_version"}), or None if absent.

    A marker found by a process that just took the lock means the last writer did not close
    cleanly (crash, kill, power loss): R7's unclean-shutdown signal.
    """
    marker = running_marker_path(db_path)
    try:
        text = marker.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def write_running_marker(db_path: Path, app_version: str) -> None:
    """Record (atomically) that this process now writes the database."""
    payload = {"pid": os.getpid(), "started_at": utc_now(), "app_version": app_version}
    atomic_write_text(running_marker_path(db_path), json.dumps(payload) + "\n")


def clear_running_marker(db_path: Path) -> None:
    """Mark a clean shutdown. Only our own marker is removed, never SQLite's files."""
    with contextlib.suppress(FileNotFoundError):
        running_marker_path(db_path).unlink()
