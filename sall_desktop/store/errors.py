"""Store exceptions. Their messages are shown to graders, so they say what happened in words."""

from __future__ import annotations

import sqlite3


class StoreError(Exception):
    """Base class of every error the label store raises; ``str(err)`` is grader-readable."""


class StoreWriteError(StoreError):
    """A write did not commit (disk full, read-only medium, I/O error, locked, corrupt).

    Nothing of the write was kept: its transaction was rolled back, so the caller keeps the item
    pending and may retry (R4).

    Attributes:
        retryable: True when the same write may succeed later (disk full, locked, I/O);
            False when it never will (read-only store, a value the schema rejects).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class StoreLockedError(StoreError):
    """Another process holds the writer lock of this database (R2)."""


def _problem(err: sqlite3.Error) -> tuple[str, bool]:
    """Translate an SQLite error into (grader-readable cause, retryable)."""
    # Python >= 3.11 carries the SQLite code name; fall back on the message for errors raised by
    # hand (tests, wrappers) that have none.
    text = f"{getattr(err, 'sqlite_errorname', '')} {err}".lower()
    if isinstance(err, sqlite3.IntegrityError):
        return f"the database refused an invalid value ({err})", False
    if "full" in text:
        return "the disk is full", True
    if "readonly" in text or "read-only" in text:
        return "the database is on a read-only disk or folder", False
    if "locked" in text or "busy" in text:
        return "another program is using the database", True
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return "the database file is damaged", False
    if "i/o" in text or "disk" in text:
        return "the disk reported an input/output error", True
    return f"the database reported an error ({err})", True


def write_error(err: sqlite3.Error, what: str) -> StoreWriteError:
    """Build the :class:`StoreWriteError` for a failed write of ``what`` (e.g. "the grade")."""
    cause, retryable = _problem(err)
    hint = " It is kept as pending; it will be retried." if retryable else ""
    return StoreWriteError(f"Could not save {what}: {cause}.{hint}", retryable=retryable)


def read_error(err: sqlite3.Error, what: str) -> StoreError:
    """Build the :class:`StoreError` for a failed read of ``what``."""
    cause, _ = _problem(err)
    return StoreError(f"Could not read {what}: {cause}.")


def is_corruption(err: sqlite3.Error) -> bool:
    """True when SQLite says the file is damaged (the store then turns read-only, R7)."""
    text = f"{getattr(err, 'sqlite_errorname', '')} {err}".lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text
