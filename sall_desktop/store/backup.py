"""Backups through ``Connection.backup()`` (R2: the live file is never copied) and checks."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from model_zoo.fileio import TEMP_PREFIX, fsync_dir
from sall_desktop.store import db
from sall_desktop.store.errors import StoreWriteError, write_error


def integrity(conn: sqlite3.Connection, *, quick: bool) -> str:
    """Run ``PRAGMA quick_check``/``integrity_check``: "ok", or up to 20 problems, one a line."""
    pragma = "quick_check(20)" if quick else "integrity_check(20)"
    lines = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
    return "ok" if lines == ["ok"] else "\n".join(lines)


def backup_database(conn: sqlite3.Connection, dest: Path, *, journal_mode: str) -> None:
    """Copy the database behind ``conn`` to ``dest``, verified, replacing ``dest`` atomically.

    Args:
        conn: an open connection to the source database (any thread-owned connection).
        dest: the backup file; its folder is created when missing.
        journal_mode: journal mode of the temporary target while it is written.

    Raises:
        StoreWriteError: the backup failed or did not verify; ``dest`` is unchanged.
    """
    _refuse_leftover_journal(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{TEMP_PREFIX}{dest.name}.{os.getpid()}")
    try:
        target = db.connect(tmp, journal_mode=journal_mode)
        try:
            conn.backup(target)
            verdict = integrity(target, quick=False)
            # A backup must stand alone: a rollback-journal file needs no -wal beside it.
            target.execute("PRAGMA journal_mode = DELETE").fetchone()
        finally:
            target.close()
        if verdict != "ok":
            raise StoreWriteError(f"The backup did not verify: {verdict}", retryable=True)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except sqlite3.Error as err:
        raise write_error(err, "the backup") from err
    except OSError as err:
        raise StoreWriteError(f"Could not write the backup: {err.strerror}.") from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _refuse_leftover_journal(dest: Path) -> None:
    # SQLite would replay a leftover journal or WAL into the new file: refuse, never delete it.
    for sidecar in ("-wal", "-journal"):
        if dest.with_name(dest.name + sidecar).exists():
            raise StoreWriteError(
                f"Could not write the backup: {dest.name} has a leftover {sidecar} file; "
                "choose another file name.",
                retryable=False,
            )
