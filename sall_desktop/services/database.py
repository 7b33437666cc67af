"""Opening the label database for headless commands: writable, or read-only, always closed.

Every problem a command meets with the database is raised as :class:`DatabaseError`, whose
message is one line in a terminal user's words: a missing file or folder, a folder given as the
database, a file that is not a SALL Desktop database or is damaged, a database another process
writes, a read-only file or disk, and store errors raised while the command uses the database.
The store's own ``read_only_reason`` is written for the workstation's window ("you can look
but not grade"), so it is not shown as it is. The warnings the store found at open (an altered
audit trail, a network share, a backup that could not be taken) are passed to ``warn``, one
line each (on stderr by default), once the database has opened.

It also lists the database's backups and restores one (``sall-desktop backups`` / ``restore``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from sall_desktop.store import (
    LabelStore,
    SqliteLabelStore,
    StoreError,
    StoreLockedError,
    open_store,
)
from sall_desktop.store.backups import BackupInfo, list_backups
from sall_desktop.store.db import read_running_marker
from sall_desktop.store.pg_connection import describe_url
from sall_desktop.store.pg_repository import PgLabelStore, is_team_url, open_team_store
from sall_desktop.store.restore import BackupCheck, RestoreResult, check_backup, restore_database

__all__ = [
    "BackupCheck",
    "BackupInfo",
    "DatabaseError",
    "LabelStore",
    "StoreTarget",
    "DatabaseLockedError",
    "ReadOnlyDatabaseError",
    "RestoreResult",
    "database_backups",
    "is_team_url",
    "readable_store",
    "restore_backup",
    "store_target",
    "warn_on_stderr",
    "writable_store",
]

RESTORE_HINT = (
    "restore a backup (`sall-desktop backups` lists them, "
    "`sall-desktop restore --from BACKUP` puts one back)"
)


StoreTarget = Path | str
"""What ``--db`` names: a SQLite file, or a team store's ``postgresql://`` URL."""


def store_target(db: str | None) -> StoreTarget:
    """What ``--db`` names: a team store's address as given, the path given, or the default
    database in the user's data folder."""
    from sall_desktop.services.paths import default_db_path

    if is_team_url(db):
        return str(db)
    return Path(db) if db else default_db_path()


def warn_on_stderr(message: str) -> None:
    """Print one warning as one stderr line, the way the command line reports its failures."""
    if sys.stderr is not None:
        print(f"sall-desktop: warning: {' '.join(message.split())}", file=sys.stderr)


class DatabaseError(RuntimeError):
    """The label database cannot be used by a command; ``str(err)`` is one line for a terminal."""


class ReadOnlyDatabaseError(DatabaseError):
    """The database could not be opened for writing (a read-only file or disk, damage, ...)."""


class DatabaseLockedError(ReadOnlyDatabaseError):
    """Another SALL Desktop process (the workstation or a command) is writing the database."""


def _clause(message: str) -> str:
    """The first sentence of a store message, as a clause: "the disk is full" (no period)."""
    text = " ".join(str(message).split())
    first = text.split(". ")[0].rstrip(".")
    if first[1:2].islower():
        first = first[:1].lower() + first[1:]
    return first


def _damaged(path: Path) -> DatabaseError:
    return DatabaseError(
        f"the label database {path} is damaged or is not a SALL Desktop database; "
        f"{RESTORE_HINT} or give another --db"
    )


def _check_path(path: Path, *, create: bool) -> None:
    """Refuse a path no command can use, before the store touches it."""
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder; --db needs the label database file")
    if path.exists():
        if not os.access(path, os.R_OK):
            raise DatabaseError(f"cannot read the label database {path} (permission denied)")
        if path.stat().st_size == 0:  # lost its contents: never made a new, empty database
            raise DatabaseError(
                f"the label database {path} is empty (0 bytes), so it was not opened; "
                f"{RESTORE_HINT}, or move the empty file away to start a new database"
            )
        return
    if not create:
        raise DatabaseError(
            f"there is no label database at {path} "
            "(`sall-desktop scan FOLDER` creates one; check --db)"
        )
    if not path.parent.is_dir():
        raise DatabaseError(
            f"cannot create the label database {path}: the folder {path.parent} does not exist"
        )


def _check_writable(path: Path) -> None:
    """Refuse a file or folder that does not allow writing (SQLite writes files beside it)."""
    if path.exists() and not os.access(path, os.W_OK):
        raise ReadOnlyDatabaseError(f"cannot write to the label database {path}: it is read-only")
    if not os.access(path.parent, os.W_OK):
        raise ReadOnlyDatabaseError(
            f"cannot write to the label database {path}: its folder {path.parent} is read-only"
        )


def _in_use(path: Path) -> DatabaseLockedError:
    holder = read_running_marker(path) or {}
    who = f" (process {holder['pid']})" if "pid" in holder else ""
    return DatabaseLockedError(
        f"the label database {path} is being written by another SALL Desktop program{who}; "
        "close it (or let its command finish) and run this command again"
    )


def _read_only_error(store: SqliteLabelStore, path: Path) -> DatabaseError:
    if store.corrupt:
        return _damaged(path)
    if path.is_symlink():
        return ReadOnlyDatabaseError(
            f"the label database {path} is a symbolic link; give the path of the real file"
        )
    return ReadOnlyDatabaseError(
        f"cannot write to the label database {path}: {_clause(store.read_only_reason)}"
    )


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    """Store errors raised while a command uses the database, as one line for a terminal."""
    try:
        yield
    except StoreError as exc:
        raise DatabaseError(f"label database {path}: {_clause(str(exc))}") from exc


@contextlib.contextmanager
def _team_store(
    url: str, *, read_only: bool, warn: Callable[[str], None]
) -> Iterator[PgLabelStore]:
    """Open a team store for a command; its problems become one-line :class:`DatabaseError`."""
    where = describe_url(url)
    try:
        store = open_team_store(url, read_only=read_only)
    except StoreError as exc:
        raise DatabaseError(_clause(str(exc))) from exc
    try:
        for message in store.warnings:
            warn(message)
        try:
            yield store
        except StoreError as exc:
            raise DatabaseError(f"team store {where}: {_clause(str(exc))}") from exc
    finally:
        store.close()


@contextlib.contextmanager
def writable_store(
    path: StoreTarget, *, warn: Callable[[str], None] = warn_on_stderr
) -> Iterator[LabelStore]:
    """Open the label database for writing (creating it in an existing folder) and close it.

    Opening it may take the periodic verified backup (``store/backups.py``); its warnings go to
    ``warn`` once it is open.

    Raises:
        DatabaseLockedError: another process writes the database.
        ReadOnlyDatabaseError: the file, its folder or its disk refuses writes, or it is
            damaged, linked or from a newer version (the message says which).
        DatabaseError: no folder for a new database, a folder given as the database, a file
            that is not a SALL Desktop database, or a store error while in use.
    """
    if is_team_url(path):
        with _team_store(str(path), read_only=False, warn=warn) as team:
            yield team
        return
    path = Path(path).absolute()
    _check_path(path, create=True)
    _check_writable(path)
    try:
        store = open_store(path, require_writer=True)
    except StoreLockedError:
        raise _in_use(path) from None
    except StoreError as exc:
        raise DatabaseError(f"cannot open the label database {path}: {_clause(str(exc))}") from exc
    try:
        if store.read_only:
            raise _read_only_error(store, path)
        for message in store.warnings:
            warn(message)
        with _translated(path):
            yield store
    finally:
        store.close()


@contextlib.contextmanager
def readable_store(
    path: StoreTarget, *, warn: Callable[[str], None] = warn_on_stderr
) -> Iterator[LabelStore]:
    """Open an existing label database read-only (exports, reports) and close it afterwards.

    The store's warnings from opening go to ``warn`` once it has opened.

    Raises:
        DatabaseError: no database at ``path``, a folder, an unreadable or damaged file, a file
            that is not a SALL Desktop database, or a store error while in use.
    """
    if is_team_url(path):
        with _team_store(str(path), read_only=True, warn=warn) as team:
            yield team
        return
    path = Path(path).absolute()
    _check_path(path, create=False)
    try:
        store = open_store(path, read_only=True)
    except StoreError as exc:
        raise DatabaseError(f"cannot open the label database {path}: {_clause(str(exc))}") from exc
    try:
        if store.corrupt:
            raise _damaged(path)
        try:
            store.graders()  # a cheap read: another program's SQLite file has no such table
        except StoreError:
            raise _damaged(path) from None
        for message in store.warnings:
            warn(message)
        with _translated(path):
            yield store
    finally:
        store.close()


def database_backups(
    path: Path, *, check: bool = False
) -> list[tuple[BackupInfo, BackupCheck | None]]:
    """The backups of the label database at ``path``, newest first, each checked if ``check``.

    A check (integrity, schema and ``verify()``, read-only) reads the whole backup: about as
    long as ``sall-desktop verify`` on the database, per backup.
    """
    path = Path(path).absolute()
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder; --db needs the label database file")
    return [(b, check_backup(b.path) if check else None) for b in list_backups(path)]


def restore_backup(path: Path, backup: Path) -> RestoreResult:
    """Put a verified copy of ``backup`` in place of the label database at ``path``.

    The current database is renamed aside (``RestoreResult.replaced``), never deleted.

    Raises:
        DatabaseLockedError: another SALL Desktop program writes the database.
        DatabaseError: the backup is missing, damaged, does not verify or is from a newer
            version (the database is unchanged), or the files could not be renamed.
    """
    path = Path(path).absolute()
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder; --db needs the label database file")
    try:
        return restore_database(path, Path(backup))
    except StoreLockedError:
        raise _in_use(path) from None
    except StoreError as exc:
        text = " ".join(str(exc).split()).rstrip(".")
        raise DatabaseError(text[:1].lower() + text[1:]) from exc
