"""Checking a backup and putting it back in place of the label database (``sall-desktop restore``).

A restore never trusts the file it is given: the backup is copied through
``Connection.backup()`` into a temporary file beside the database (the backup itself is only
read), the copy must pass ``integrity_check``, carry a SALL Desktop schema this version knows
(an older one is migrated in the copy) and pass ``verify()``. Only then, holding the writer
lock so no other SALL Desktop program writes meanwhile, is the current database renamed aside
(``<db>.replaced-<time>``, with its -wal and -shm files if a crash left them: never deleted)
and the copy renamed into its place. A refused backup leaves the database untouched.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from model_zoo.fileio import TEMP_PREFIX, fsync_dir
from sall_desktop.store import db, migrations
from sall_desktop.store.backup import backup_database, integrity
from sall_desktop.store.backups import PERIODIC_STAMP, utc_now
from sall_desktop.store.errors import StoreError, StoreLockedError
from sall_desktop.store.verify import verify_store

REPLACED_INFIX = ".replaced-"
"""The database a restore replaced is kept as "<db>.replaced-<time>"."""


@dataclass(frozen=True, slots=True)
class BackupCheck:
    """The verdict on one backup file.

    Attributes:
        ok: the file is an undamaged SALL Desktop database that verifies.
        problem: why not ("" when ok), as a clause: "it is damaged (...)".
        schema: its schema version (0 when unknown).
        gradings / audit_rows: rows verified.
        chain_head: the last audit row's hash ("" for an empty trail).
    """

    ok: bool
    problem: str
    schema: int = 0
    gradings: int = 0
    audit_rows: int = 0
    chain_head: str = ""


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore did: the check of what it installed, and where the old database went."""

    check: BackupCheck
    replaced: Path | None
    migrated_from: int | None


def _refused(problem: str, schema: int = 0) -> BackupCheck:
    return BackupCheck(False, problem, schema)


def _check_connection(conn: sqlite3.Connection, *, migrate: bool) -> tuple[BackupCheck, int]:
    """Integrity, schema and ``verify()`` of an open backup; migrates first when ``migrate``.

    Returns (the check, the schema version the file had before any migration).
    """
    try:
        verdict = integrity(conn, quick=False)
        if verdict != "ok":
            lines = [ln for ln in verdict.splitlines() if not ln.startswith("***")]
            return _refused(f"it is damaged ({(lines or [verdict])[0]})"), 0
        schema, latest = migrations.schema_version(conn), migrations.latest_version()
        if schema == 0:
            return _refused("it is not a SALL Desktop label database"), 0
        if schema > latest:
            return _refused(
                f"it was written by a newer SALL Desktop (schema {schema}; this version knows "
                f"up to {latest})",
                schema,
            ), schema
        if migrate and schema < latest:
            migrations.migrate(conn)
        report = verify_store(conn)
    except sqlite3.Error as err:
        return _refused(f"it cannot be read ({err})"), 0
    except StoreError as err:  # a migration step failed: the copy is left unused
        return _refused(f"it could not be upgraded ({err})"), 0
    if not report.ok:
        more = len(report.problems) + report.more - 1
        extra = f" and {more} more problem(s)" if more else ""
        return _refused(
            f"it does not verify: {report.problems[0].rstrip('.')}{extra}", schema
        ), schema
    version = migrations.schema_version(conn)
    check = BackupCheck(True, "", version, report.gradings, report.audit_rows, report.chain_head)
    return check, schema


def check_backup(path: Path) -> BackupCheck:
    """Check a backup file where it is, read-only: integrity, schema and ``verify()``.

    The file is never changed. A backup with an older schema is checked as it is (the audit
    trail and gradings have kept their layout).
    """
    try:
        conn = db.connect(Path(path), read_only=True)
    except sqlite3.Error as err:
        return _refused(f"it is not a readable SQLite database ({err})")
    try:
        return _check_connection(conn, migrate=False)[0]
    finally:
        conn.close()


def _copy_and_check(backup: Path, dest: Path) -> tuple[BackupCheck, int]:
    """Copy ``backup`` to ``dest`` through ``Connection.backup()`` and check the copy."""
    try:
        source = db.connect(backup, read_only=True)
    except sqlite3.Error as err:
        return _refused(f"it is not a readable SQLite database ({err})"), 0
    try:
        backup_database(source, dest, journal_mode="DELETE")
    except StoreError as err:  # the copy did not pass integrity_check, or the disk refused
        return _refused(f"it could not be copied intact ({str(err).splitlines()[0]})"), 0
    finally:
        source.close()
    try:
        conn = db.connect(dest, journal_mode="DELETE")
    except sqlite3.Error as err:
        return _refused(f"its copy cannot be read ({err})"), 0
    try:
        return _check_connection(conn, migrate=True)
    finally:
        conn.close()


def _aside_name(path: Path, when: datetime) -> Path:
    base = path.with_name(f"{path.name}{REPLACED_INFIX}{when.strftime(PERIODIC_STAMP)}")
    candidate, n = base, 1
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def _move_aside(path: Path, aside: Path) -> None:
    """Rename the database and the SQLite files beside it; nothing is deleted.

    The -wal (a crash may have left commits there) moves first and keeps its pairing with the
    main file under the new name, so the kept database opens with every commit it had.
    """
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.rename(sidecar, aside.with_name(aside.name + suffix))
    os.rename(path, aside)


def _discard_temporary(tmp: Path) -> None:
    # Our own temporary copy of the backup (rollback-journal mode: it leaves no -wal).
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def restore_database(path: Path, backup: Path, *, now: datetime | None = None) -> RestoreResult:
    """Replace the label database at ``path`` with a verified copy of ``backup``.

    Args:
        path: the database to replace (it may be missing, empty or damaged).
        backup: the backup file; it is only read.
        now: the time that names the replaced file (default: now, UTC).

    Returns:
        What was restored and where the replaced database was kept (None if there was none).

    Raises:
        StoreLockedError: another SALL Desktop program holds the writer lock.
        StoreError: the backup is missing, is the database itself, or did not pass its checks
            (the database is unchanged); or a rename failed (the message says which file is
            where).
    """
    path, backup = Path(path).absolute(), Path(backup).absolute()
    if not backup.is_file():
        raise StoreError(f"There is no backup file {backup}.")
    if path.exists() and os.path.samefile(path, backup):
        raise StoreError(f"{backup} is the label database itself, not a backup of it.")
    if not path.parent.is_dir():
        raise StoreError(f"The folder {path.parent} of the label database does not exist.")
    if path.is_symlink():
        raise StoreError(f"{path} is a symbolic link; give the path of the real database file.")
    lock = db.InstanceLock(db.lock_path(path))
    try:
        acquired = lock.acquire()
    except OSError as err:
        raise StoreError(f"Could not lock the label database {path}: {err.strerror}.") from err
    if not acquired:
        raise StoreLockedError(f"Another SALL Desktop program is using {path}.")
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.restore-{os.getpid()}")
    try:
        check, schema = _copy_and_check(backup, tmp)
        if not check.ok:
            raise StoreError(f"The backup {backup} was not restored: {check.problem}.")
        aside = _aside_name(path, now or utc_now()) if path.exists() else None
        try:
            if aside is not None:
                _move_aside(path, aside)
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as err:
            kept = f"; the replaced database is at {aside}" if aside and aside.exists() else ""
            raise StoreError(f"Could not put the backup in place: {err.strerror}{kept}.") from err
        migrated = schema if schema < check.schema else None
        return RestoreResult(check, aside, migrated)
    finally:
        _discard_temporary(tmp)
        lock.release()
