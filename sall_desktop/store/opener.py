"""``open_store``: the one way to open the label database, with every safety check at open.

Order matters: probe the filesystem (R2), take the one-writer lock (R2), read the unclean
shutdown marker (R7), connect with the R1 PRAGMAs, check integrity when warranted (R7),
back up and migrate, then verify the audit chain (R8) and, when one is due, take the periodic
verified backup (``store/backups.py``). Any damage found makes the store read-only with a
reason instead of raising, so the app can still show what it has. An empty (0-byte) file is
refused: it lost its contents, and making it a new database would hide that.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sall_desktop.store import db, fs_probe, migrations
from sall_desktop.store.audit import ChainReport
from sall_desktop.store.backup import integrity
from sall_desktop.store.backups import BackupPolicy, backup_due, take_periodic_backup
from sall_desktop.store.errors import StoreError, StoreLockedError, is_corruption
from sall_desktop.store.sqlite_repository import SqliteLabelStore

StartupCheck = Literal["auto", "quick", "full", "none"]

SECOND_INSTANCE_WAIT_S = 5.0
"""How long a second instance waits for the first one to create a new database file."""

QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024
"""With ``startup_check="auto"``, databases up to this size get a ``quick_check`` at every open
(a damaged copy is then caught at once); bigger ones only after an unclean shutdown."""


EMPTY_FILE = (
    "The label database {} is empty (0 bytes), so it was neither opened nor made into a new "
    "database: restore a backup with `sall-desktop restore --from BACKUP` (`sall-desktop "
    "backups` lists them), or move the empty file away to start a new database."
)

NOT_BACKED_UP = "No backup was taken, so the earlier backups are kept."

DEFAULT_BACKUPS = BackupPolicy()
"""A periodic backup when the newest is a day old, seven kept (frozen: shared safely)."""


def _backup_before_migration(store: SqliteLabelStore) -> Callable[[int, int], None]:
    def backup(old: int, new: int) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        store.backup_to(store.path.with_name(f"{store.path.name}.schema{old}-{stamp}.bak"))

    return backup


_READ_ONLY_MEDIUM = (
    "The label database is on a disk or folder that cannot be written ({}), so it opened "
    "read-only: you can look but not grade. Copy it through the app's backup to a local folder."
)


def _not_writable(path: Path) -> str | None:
    """Why ``path`` (or its folder, where SQLite creates its -wal file) refuses writes, if so."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _READ_ONLY_MEDIUM.format(err.strerror)
    if path.exists() and not os.access(path, os.W_OK):
        return _READ_ONLY_MEDIUM.format("the file is read-only")
    if not os.access(folder, os.W_OK):
        return _READ_ONLY_MEDIUM.format("the folder is read-only")
    return None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _wait_for_creation(path: Path, seconds: float) -> None:
    # Two instances started together: the lock holder may still be creating the file, which
    # is empty between SQLite creating it and writing its first page.
    deadline = time.monotonic() + seconds
    while not _size(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def _in_use_by(path: Path) -> str:
    holder = db.read_running_marker(path) or {}
    who = f" (process {holder['pid']})" if "pid" in holder else ""
    return f"Another SALL Desktop window{who} is using this label database"


def open_store(
    path: Path,
    *,
    read_only: bool = False,
    app_version: str = "0.1.0",
    startup_check: StartupCheck = "auto",
    verify_audit: bool = True,
    require_writer: bool = False,
    probe: Callable[[Path], str] | None = None,
    backups: BackupPolicy | None = DEFAULT_BACKUPS,
) -> SqliteLabelStore:
    """Open (creating and migrating if needed) the label database at ``path``.

    Args:
        path: the database file. Its folder is created when missing.
        read_only: open for reading only. A second instance, a symlinked path, a damaged file
            or a file from a newer app version also open read-only; ``read_only_reason`` says
            which.
        app_version: recorded in every audit row.
        startup_check: "auto" runs ``quick_check`` after an unclean shutdown and on databases
            up to :data:`QUICK_CHECK_MAX_BYTES`; "quick" always; "full" runs
            ``integrity_check``; "none" skips it.
        verify_audit: verify the audit hash chain at open (result in ``chain_report``; a
            broken chain adds a warning).
        require_writer: raise :class:`StoreLockedError` instead of opening read-only when
            another instance writes the database (for command-line imports).
        probe: filesystem probe (tests pass a fake); defaults to
            :func:`~sall_desktop.store.fs_probe.filesystem_type`.
        backups: when a writable open takes a periodic verified backup and how many are
            kept (:mod:`~sall_desktop.store.backups`); None takes none. A database created by
            this open is not backed up: it holds nothing yet.

    Returns:
        The store. Close it (or use it as a context manager) to mark a clean shutdown.

    Raises:
        StoreError: no database exists at ``path`` for a read-only open, the file is empty
            (0 bytes), the file is not a SALL Desktop database, or a migration failed.
        StoreLockedError: ``require_writer`` and another instance holds the database.

    Example:
        >>> with open_store(Path("labels.sqlite3")) as store:
        ...     store.add_grading(Grading(image_sha256=sha, grader="Dr A", dr_grade=2))
    """
    path = Path(path).absolute()
    policy = fs_probe.journal_policy((probe or fs_probe.filesystem_type)(path))
    warnings = [policy.warning] if policy.warning else []
    reason = "Opened read-only on request." if read_only else ""
    if not read_only and path.is_symlink():
        read_only, reason = (
            True,
            (
                "The label database path is a symbolic link; SQLite cannot protect a linked "
                "database, so it opened read-only. Open the real file instead."
            ),
        )
    lock: db.InstanceLock | None = None
    if not read_only and (problem := _not_writable(path)):
        read_only, reason = True, problem
    if not read_only:
        lock = db.InstanceLock(db.lock_path(path))
        try:
            acquired = lock.acquire()
        except OSError as err:
            acquired, read_only, reason = False, True, _READ_ONLY_MEDIUM.format(err.strerror)
        if not acquired:
            lock = None
            if not read_only:
                if require_writer:
                    raise StoreLockedError(f"{_in_use_by(path)}; close it and try again.")
                read_only, reason = (
                    True,
                    (
                        f"{_in_use_by(path)}, so this one opened it read-only: you can look "
                        "but not grade. Close the other window to grade here."
                    ),
                )
                _wait_for_creation(path, SECOND_INSTANCE_WAIT_S)
    try:
        if read_only and not path.exists():
            raise StoreError(f"There is no label database at {path}.")
        if _size(path) == 0:
            raise StoreError(EMPTY_FILE.format(path))
        return _open_locked(
            path,
            lock,
            read_only,
            reason,
            warnings,
            policy.journal_mode,
            app_version,
            startup_check,
            verify_audit,
            backups,
        )
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _open_locked(
    path: Path,
    lock: db.InstanceLock | None,
    read_only: bool,
    reason: str,
    warnings: list[str],
    journal_mode: str,
    app_version: str,
    startup_check: StartupCheck,
    verify_audit: bool,
    backups: BackupPolicy | None,
) -> SqliteLabelStore:
    unclean = False
    if lock is not None:
        unclean = db.read_running_marker(path) is not None
        try:
            db.write_running_marker(path, app_version)
        except OSError as err:  # e.g. the disk is full: nothing can be saved here anyway
            lock.release()
            lock, read_only, reason = None, True, _READ_ONLY_MEDIUM.format(err.strerror)
    conn: sqlite3.Connection | None = None
    try:
        conn = db.connect(path, read_only=read_only, journal_mode=journal_mode)
    except sqlite3.DatabaseError as err:
        if is_corruption(err):
            pass  # conn stays None: the store opens read-only as damaged
        elif read_only or "readonly" not in f"{getattr(err, 'sqlite_errorname', '')} {err}".lower():
            raise StoreError(f"Could not open the label database: {err}.") from err
        else:  # a medium that refuses writes although the permissions looked fine
            read_only, reason = True, _READ_ONLY_MEDIUM.format(err)
            conn = db.connect(path, read_only=True, journal_mode=journal_mode)
    store = SqliteLabelStore(
        path=path,
        conn=conn,
        read_only=read_only,
        read_only_reason=reason,
        warnings=warnings,
        journal_mode=journal_mode,
        app_version=app_version,
        lock=lock,
        unclean_shutdown=unclean,
    )
    try:
        created = _check_and_migrate(store, conn, startup_check, unclean)
        if not store.corrupt and conn is not None:
            if backups is not None and not created and not store.read_only:
                _verify_and_back_up(store, backups, verify_audit)
            elif verify_audit:
                _verify_audit(store)
    except BaseException:
        store.close()
        raise
    return store


def _check_and_migrate(
    store: SqliteLabelStore, conn: sqlite3.Connection | None, check: StartupCheck, unclean: bool
) -> bool:
    """Check and migrate; True when this open created the database (it had no schema)."""
    if conn is None:
        store.mark_corrupt("the file is not a readable SQLite database")
        return False
    size = store.path.stat().st_size if store.path.exists() else 0
    mode = check
    if check == "auto":
        mode = "quick" if unclean or size <= QUICK_CHECK_MAX_BYTES else "none"
    if mode != "none":
        try:
            store.startup_check = integrity(conn, quick=mode == "quick")
        except sqlite3.DatabaseError as err:
            store.startup_check = str(err)
        if store.startup_check != "ok":
            lines = [ln for ln in store.startup_check.splitlines() if not ln.startswith("***")]
            store.mark_corrupt(lines[0] if lines else store.startup_check)
            return False
    if store.read_only:
        version = migrations.schema_version(conn)
        if version < migrations.latest_version():
            store.warnings.append(
                "This label database has an older layout; the window that writes it will "
                "upgrade it. Some information may be missing here until then."
            )
        return False
    version, latest = migrations.schema_version(conn), migrations.latest_version()
    if version > latest:
        store.read_only, store.read_only_reason = (
            True,
            (
                f"This label database was written by a newer SALL Desktop (schema {version}; "
                f"this version knows up to {latest}). It opened read-only; update the app to "
                "grade in it."
            ),
        )
        return False
    before, _ = migrations.migrate(conn, backup=_backup_before_migration(store))
    return before == 0


def _verify_audit(store: SqliteLabelStore) -> None:
    with contextlib.suppress(StoreError):  # a read failure already marked the store damaged
        report = store.verify_chain()
        store.chain_report = report
        if not report.ok:
            store.warnings.append(report.message)


def _verify_and_back_up(store: SqliteLabelStore, policy: BackupPolicy, verify_audit: bool) -> None:
    """The audit check at open, and the periodic backup when one is due.

    ``verify()`` (the chain and every grading against it) costs about twice the chain check
    alone, so it runs only when a backup is due, in place of the chain check: a store that
    verifies is backed up; one that does not keeps its older backups and says why.
    """
    if not backup_due(store.path, policy):
        if verify_audit:
            _verify_audit(store)
        return
    try:
        report = store.verify()
    except StoreError:  # a read failure marked the store damaged; its reason says so
        return
    if report.ok:
        if verify_audit:
            rows = report.audit_rows
            store.chain_report = ChainReport(True, rows, None, f"{rows} audit rows verified.")
        take_periodic_backup(store, policy)
        return
    if verify_audit:
        _verify_audit(store)
    chain = store.chain_report
    if chain is not None and not chain.ok:  # its warning already says what is wrong
        store.warnings.append(NOT_BACKED_UP)
    else:
        store.warnings.append(
            f"The label database did not verify ({report.problems[0]}). {NOT_BACKED_UP} "
            "`sall-desktop verify` lists every problem."
        )
