"""Schema migrations: ``PRAGMA user_version`` plus ordered ``migrations/NNNN_name.sql`` files.

Each file is applied in one transaction together with its ``user_version`` bump, so a crash
mid-migration leaves the previous version intact. The files are package data read through
``importlib.resources``, so they are found in an installed wheel and in a frozen build.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from sall_desktop.store.errors import StoreError

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``version`` is the ``user_version`` after it is applied."""

    version: int
    name: str
    sql: str


def load_migrations(folder_name: str = "migrations") -> list[Migration]:
    """Read the bundled migration files of ``folder_name`` in version order (``migrations``:
    SQLite's; ``pg_migrations``: the team store's).

    Raises:
        RuntimeError: versions are not exactly 1, 2, ..., N (a packaging or naming mistake).
    """
    folder = resources.files("sall_desktop.store").joinpath(folder_name)
    found = [
        Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if (match := _NAME.fullmatch(entry.name))
    ]
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration files must be numbered 0001, 0002, ...; found {versions}")
    return found


def latest_version() -> int:
    """The schema version this build of the app writes."""
    return len(load_migrations())


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's ``PRAGMA user_version`` (0 for a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _has_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return int(row[0]) > 0


def migrate(
    conn: sqlite3.Connection, *, backup: Callable[[int, int], None] | None = None
) -> tuple[int, int]:
    """Bring the schema up to :func:`latest_version`.

    Args:
        conn: a read-write connection in autocommit mode, holding the instance lock.
        backup: called as ``backup(old_version, new_version)`` before the first step when the
            database already has a schema (so, data); it must take a ``Connection.backup()``.

    Returns:
        (version before, version after).

    Raises:
        StoreError: the file is not a SALL Desktop database, was written by a newer version,
            or a step failed (that step was rolled back; earlier steps stay applied).
    """
    migrations = load_migrations()
    current = schema_version(conn)
    target = len(migrations)
    if current > target:
        raise StoreError(
            f"This label database was written by a newer SALL Desktop (schema {current}; this "
            f"version knows up to {target}). Update the app to grade in it."
        )
    if current == target:
        return current, current
    if current == 0 and _has_tables(conn):
        raise StoreError("This file is an SQLite database, but not a SALL Desktop label database.")
    if current > 0 and backup is not None:
        backup(current, target)
    for step in migrations[current:]:
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{step.sql}\n;PRAGMA user_version = {step.version};\nCOMMIT;"
            )
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(
                f"Could not upgrade the label database to schema {step.version} "
                f"({step.name}): {err}. The database was left at schema {step.version - 1}."
            ) from err
    return current, target
