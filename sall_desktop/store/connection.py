"""The connection half of the SQLite store: state, transactions, errors, backup and close.

:class:`~sall_desktop.store.sqlite_repository.SqliteLabelStore` adds the queries on top.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from sall_desktop.store import db
from sall_desktop.store.audit import ChainReport
from sall_desktop.store.backup import backup_database, integrity
from sall_desktop.store.errors import (
    StoreError,
    StoreWriteError,
    is_corruption,
    read_error,
    write_error,
)


class StoreConnection:
    """One SQLite connection with the store's state; the base of ``SqliteLabelStore``.

    Attributes:
        path: the database file.
        read_only: True when writes are refused; ``read_only_reason`` says why.
        warnings: grader-readable warnings from opening (network share, altered audit trail).
        journal_mode: "WAL", or "DELETE" on a network share.
        unclean_shutdown: True when the previous writer did not close (crash, kill, power cut).
        startup_check: result of the integrity check run at open, or None if none ran.
        chain_report: the audit chain check run at open, or None if skipped.
    """

    def __init__(
        self,
        *,
        path: Path,
        conn: sqlite3.Connection | None,
        read_only: bool,
        read_only_reason: str,
        warnings: list[str],
        journal_mode: str,
        app_version: str,
        lock: db.InstanceLock | None,
        unclean_shutdown: bool = False,
    ) -> None:
        self.path = path
        self._conn = conn
        self.read_only = read_only
        self.read_only_reason = read_only_reason
        self.warnings = warnings
        self.journal_mode = journal_mode
        self.app_version = app_version
        self.unclean_shutdown = unclean_shutdown
        self.startup_check: str | None = None
        self.chain_report: ChainReport | None = None
        self._lock = lock
        self._corrupt = False
        self._closed = False

    # ------------------------------------------------------------------ plumbing

    @property
    def corrupt(self) -> bool:
        """True once the file was found damaged (then the store stays read-only)."""
        return self._corrupt

    def mark_corrupt(self, detail: str) -> None:
        """Refuse writes from now on: the file is damaged (R7). Keeps the unclean marker."""
        self._corrupt = True
        self.read_only = True
        self.read_only_reason = (
            f"The label database is damaged ({detail}). It was opened read-only so nothing more "
            "is lost; restore the last verified backup with `sall-desktop restore --from BACKUP` "
            "(`sall-desktop backups` lists them)."
        )

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back entirely on failure."""
        if self._closed or self._conn is None or self.read_only:
            why = "the store is closed" if self._closed else self.read_only_reason
            raise StoreWriteError(f"Could not save {what}: {why}", retryable=False)
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                if is_corruption(exc):
                    self.mark_corrupt(str(exc))
                raise write_error(exc, what) from exc
            if isinstance(exc, UnicodeError):  # e.g. a lone surrogate pasted into the notes
                raise StoreWriteError(
                    f"Could not save {what}: the text contains characters that cannot be stored.",
                    retryable=False,
                ) from exc
            raise

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        if self._closed or self._conn is None:
            why = "the store is closed" if self._closed else self.read_only_reason
            raise StoreError(f"Could not read {what}: {why}")
        try:
            yield self._conn
        except sqlite3.Error as err:
            if is_corruption(err):
                self.mark_corrupt(str(err))
            raise read_error(err, what) from err
        except ValueError as err:  # a stored value the domain types refuse
            raise StoreError(
                f"Could not read {what}: the database holds an invalid value ({err})."
            ) from err

    def integrity_check(self, *, quick: bool = False) -> str:
        """``PRAGMA integrity_check`` (or ``quick_check``): "ok", or the problems found."""
        if self._conn is None:
            return self.read_only_reason
        try:
            return integrity(self._conn, quick=quick)
        except sqlite3.Error as err:
            return str(err)

    def connection_settings(self) -> dict[str, str]:
        """The R1 PRAGMA values of this store's connection (journal_mode, synchronous, ...)."""
        with self._read("the settings") as conn:
            return db.connection_settings(conn)

    def backup_to(self, dest: Path) -> None:
        """Write a consistent, verified copy of the database to ``dest`` (R2: never a file copy).

        Uses ``Connection.backup()`` into a temporary file beside ``dest``, runs
        ``integrity_check`` on it, switches it to a self-contained rollback journal, then
        replaces ``dest`` atomically. Safe while the store is in use.

        Raises:
            StoreWriteError: the backup could not be written or did not verify; ``dest`` is
                unchanged.
        """
        with self._read("the database for the backup") as conn:
            backup_database(conn, Path(dest), journal_mode=self.journal_mode)

    def close(self) -> None:
        """Close the connection and release the writer lock (idempotent).

        A clean close removes the running marker, so the next start skips the recovery check;
        a store found damaged keeps it, so the next start checks again.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            if self._lock is not None:
                if not self._corrupt:
                    db.clear_running_marker(self.path)
                self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
