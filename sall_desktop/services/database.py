"""Opening the label database for headless commands: writable, or read-only, always closed.

Every problem a command meets with the database is raised as :class:`DatabaseError`, whose
message is one line in a terminal user's words: a missing file or folder, a folder given as the
database, a file that is not a SALL Desktop database or is damaged, a database another process
writes, a read-only file or disk, and store errors raised while the command uses the database.
The store's own ``read_only_reason`` is written for the workstation's window ("you can look
but not grade"), so it is not shown as it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sall_desktop.store import SqliteLabelStore, StoreError, StoreLockedError, open_store
from sall_desktop.store.db import read_running_marker


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
        "restore a backup or give another --db"
    )


def _check_path(path: Path, *, create: bool) -> None:
    """Refuse a path no command can use, before the store touches it."""
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder; --db needs the label database file")
    if path.exists():
        if not os.access(path, os.R_OK):
            raise DatabaseError(f"cannot read the label database {path} (permission denied)")
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
def writable_store(path: Path) -> Iterator[SqliteLabelStore]:
    """Open the label database for writing (creating it in an existing folder) and close it.

    Raises:
        DatabaseLockedError: another process writes the database.
        ReadOnlyDatabaseError: the file, its folder or its disk refuses writes, or it is
            damaged, linked or from a newer version (the message says which).
        DatabaseError: no folder for a new database, a folder given as the database, a file
            that is not a SALL Desktop database, or a store error while in use.
    """
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
        with _translated(path):
            yield store
    finally:
        store.close()


@contextlib.contextmanager
def readable_store(path: Path) -> Iterator[SqliteLabelStore]:
    """Open an existing label database read-only (exports, reports) and close it afterwards.

    Raises:
        DatabaseError: no database at ``path``, a folder, an unreadable or damaged file, a file
            that is not a SALL Desktop database, or a store error while in use.
    """
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
        with _translated(path):
            yield store
    finally:
        store.close()
