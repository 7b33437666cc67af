"""Schema migrations of the PostgreSQL team store: ordered ``pg_migrations/NNNN_name.sql`` files
and a ``schema_version`` table (PostgreSQL has no ``user_version``).

The counterpart of :mod:`sall_desktop.store.migrations`. Each file is applied in one transaction
together with its ``schema_version`` row, so a failed step leaves the previous version intact
(PostgreSQL's DDL is transactional). Several workstations may open a fresh or older server at
the same moment, so every step runs under a transaction-scoped advisory lock and re-reads the
version once it holds it: the first opener migrates, the others wait and then find nothing to do.
The files are package data read through ``importlib.resources``, like the SQLite ones.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.rows import TupleRow, tuple_row

from sall_desktop.domain.grades import utc_now
from sall_desktop.store.errors import StoreError
from sall_desktop.store.migrations import Migration, load_migrations

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")

MIGRATION_LOCK_KEY = 0x5A11_5C4E_3A00_0001
"""``pg_advisory_xact_lock`` key that serialises migrations of one database. Advisory locks
are per database, so stores on other databases of the same server never wait on it."""

# Every query here reads rows as tuples, whatever row factory the caller's connection has.
_Cursor = psycopg.Cursor[TupleRow]

_VERSION_COLUMNS = ("version", "applied_at", "app_version")

_ADMIN_HINT = (
    "ask the team store's administrator to run `sall-desktop migrate-store --init --db URL`"
)


PgMigration = Migration
"""One schema step of the team store (the same shape as SQLite's)."""


def load_pg_migrations() -> list[Migration]:
    """Read the bundled PostgreSQL migration files in version order.

    Raises:
        RuntimeError: versions are not exactly 1, 2, ..., N (a packaging or naming mistake).
    """
    return load_migrations("pg_migrations")


def pg_latest_version() -> int:
    """The team-store schema version this build of the app writes."""
    return len(load_pg_migrations())


def _first_line(err: psycopg.Error) -> str:
    # str(err) may carry the statement's LINE/caret context on further lines; graders get one.
    primary = err.diag.message_primary
    text = primary if primary else str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _not_sall() -> StoreError:
    return StoreError(
        "This PostgreSQL database has tables, but it is not a SALL Desktop team store."
    )


def _read_version(cur: _Cursor) -> int:
    """The schema version, 0 when there is no ``schema_version`` table (inside a transaction)."""
    row = cur.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    # Another program may own a table of that name (older Flyway, for one): it is ours only
    # with our columns, and then max(version) is an integer.
    columns = cur.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'schema_version'::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    ).fetchall()
    if tuple(str(c[0]) for c in columns) != _VERSION_COLUMNS:
        raise _not_sall()
    found = cur.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(found[0]) if found is not None and found[0] is not None else 0


def pg_schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's team-store schema version (0 for a new, empty database).

    Runs in its own transaction, or in a savepoint when ``conn`` is inside one, so it leaves
    the connection as it found it.

    Raises:
        StoreError: ``schema_version`` belongs to another program, or this login may not read it.
    """
    try:
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            return _read_version(cur)
    except errors.InsufficientPrivilege as err:
        raise StoreError(
            "This login may not read the team store's schema version "
            f"({_first_line(err)}); {_ADMIN_HINT}."
        ) from err


def _has_other_tables(cur: _Cursor) -> bool:
    # Only the schema the store lives in (the first of search_path) counts: other schemas of
    # the same database are other applications' business.
    row = cur.execute(
        "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p', 'v', 'm', 'f') "
        "AND relname <> 'schema_version' "
        "AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
    ).fetchone()
    return row is not None and int(row[0]) > 0


def _newer(current: int, target: int) -> StoreError:
    return StoreError(
        f"This team store was written by a newer SALL Desktop (schema {current}; this version "
        f"knows up to {target}). Update the app to grade in it."
    )


def _locked_next_step(cur: _Cursor, migrations: list[PgMigration]) -> PgMigration | None:
    """Take the migration lock and say which step comes next; None when there is none.

    Runs inside the caller's transaction, which holds the lock until it ends.
    """
    target = len(migrations)
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
    # Read again under the lock: another workstation may have migrated while we waited.
    current = _read_version(cur)
    if current > target:
        raise _newer(current, target)
    if current == target:
        return None
    if current == 0:
        if _has_other_tables(cur):
            raise _not_sall()
        # The bookkeeping table is born with step 1, in its transaction, so a database with
        # schema_version always has the schema that version names.
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER NOT NULL, applied_at TEXT NOT NULL, app_version TEXT NOT NULL)"
        )
    return migrations[current]


def _apply(cur: _Cursor, step: PgMigration, *, app_version: str) -> None:
    # bytes: the file is not a literal (psycopg's typing wants one for str), and with no
    # parameters psycopg sends it as one simple query, so its several statements and the
    # "%" of its format() calls pass unchanged.
    cur.execute(step.sql.encode("utf-8"))
    cur.execute(
        "INSERT INTO schema_version (version, applied_at, app_version) VALUES (%s, %s, %s)",
        (step.version, utc_now(), app_version),
    )


def migrate_pg(conn: psycopg.Connection[Any], *, app_version: str) -> tuple[int, int]:
    """Bring the team store's schema up to :func:`pg_latest_version`.

    Args:
        conn: a connection outside any transaction (autocommit, or idle), of any row factory;
            when there is work to do, the database owner's (or a role that may create in its
            schema and create the ``sall_grader`` role if it is missing).
        app_version: recorded beside each applied step.

    Returns:
        (version before, version after); equal when there was nothing to do.

    Raises:
        StoreError: the database was written by a newer app, is not a SALL Desktop team store,
            this login may not change the schema, or a step failed (that step was rolled back;
            earlier steps stay applied).
        ValueError: ``conn`` is inside a transaction (each step must commit on its own).
    """
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("migrate_pg needs a connection outside any transaction")
    migrations = load_pg_migrations()
    target = len(migrations)
    before = pg_schema_version(conn)
    # Versions only grow, so these two answers need no lock; the rest is decided under it.
    if before > target:
        raise _newer(before, target)
    if before == target:
        return before, before
    while True:
        step: PgMigration | None = None
        try:
            with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
                step = _locked_next_step(cur, migrations)
                if step is not None:
                    _apply(cur, step, app_version=app_version)
        except StoreError:
            raise
        except errors.InsufficientPrivilege as err:
            raise StoreError(
                f"This login may not upgrade the team store to schema {target} "
                f"({_first_line(err)}); {_ADMIN_HINT}."
            ) from err
        except psycopg.Error as err:
            if step is None:
                raise StoreError(f"Could not upgrade the team store: {_first_line(err)}.") from err
            raise StoreError(
                f"Could not upgrade the team store to schema {step.version} ({step.name}): "
                f"{_first_line(err)}. The database was left at schema {step.version - 1}."
            ) from err
        if step is None:
            # Done, by this opener's earlier steps or by another opener while this one waited.
            return before, target
