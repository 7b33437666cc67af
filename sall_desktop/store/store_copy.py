"""Moving a workstation's SQLite label store into an empty PostgreSQL team store.

``sall-desktop migrate-store`` (ADR 0013). The audit trail is a hash chain whose rows embed ids
(their own ``id`` and ``grading_id``), so every row keeps its id and each identity sequence is
then moved past the largest one. In order:

* The source is read in one SQLite read transaction (one snapshot), under its writer lock when
  it can be taken (nothing is graded into it meanwhile), and must pass its integrity check and
  ``verify``: a copy would carry its damage into the store every workstation trusts.
* The target gets the latest schema; then ONE PostgreSQL transaction, holding the team store's
  write lock (no workstation writes meanwhile), refuses a target with rows in any table (a
  merge would renumber ids and break the chain), copies every table, and checks the counts,
  ``verify`` and the chain head before it commits: any difference rolls it all back.
* After the commit the target is opened as the app opens it and checked again (:class:`CopyReport`).

Every failure is a :class:`StoreError` with a one-line message and leaves no copied row behind
(at most the empty schema, which is what ``--init`` makes anyway).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from sall_desktop.store import db, migrations
from sall_desktop.store.backup import integrity
from sall_desktop.store.errors import StoreError
from sall_desktop.store.pg_connection import WRITE_LOCK, describe_url
from sall_desktop.store.pg_migrations import migrate_pg
from sall_desktop.store.pg_repository import CONNECT_TIMEOUT_S, open_team_store
from sall_desktop.store.sql import PgSql
from sall_desktop.store.verify import chain_head, verify_store

Progress = Callable[[str, int], None]
"""``progress(table, rows copied so far)``: called as a table's rows go out, and at its end."""

PROGRESS_EVERY = 10_000
"""Rows between two progress calls within one table."""

_PgConn = psycopg.Connection[TupleRow]


@dataclass(frozen=True, slots=True)
class TableCount:
    """Rows of one table in the source and in the team store after the copy."""

    table: str
    source: int
    target: int


@dataclass(frozen=True, slots=True)
class CopyReport:
    """A committed copy and the checks made on it afterwards.

    ``target`` is ``host:port/dbname``; ``tables`` the per-table counts in copy order; the heads
    are "" for an empty trail; ``gradings``/``audit_rows`` what ``verify`` checked on the team
    store; ``verified``: it verifies and every count and the head agree, else ``problems`` say
    what does not; ``copy_seconds``: the copy transaction; ``seconds``: all, checks included.
    """

    source: str
    target: str
    schema_version: int
    tables: tuple[TableCount, ...]
    source_head: str
    target_head: str
    gradings: int
    audit_rows: int
    verified: bool
    problems: tuple[str, ...]
    copy_seconds: float
    seconds: float

    @property
    def rows(self) -> int:
        """Rows copied (the source's, all tables together)."""
        return sum(t.source for t in self.tables)


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    order_by: tuple[str, ...]
    rows: int


def _q(name: str) -> str:
    """``name`` as an SQLite identifier (the names come from the file being read)."""
    return '"' + name.replace('"', '""') + '"'


def _one_line(err: BaseException) -> str:
    diag = getattr(err, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = str(primary or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ------------------------------------------------------------------ the source


def table_order(conn: sqlite3.Connection) -> list[str]:
    """Every table of the SQLite schema, each after the tables its foreign keys name.

    Ties keep the order the tables were created in, which the migrations already wrote in
    foreign-key order; deriving it still catches a later migration that is not.

    Raises:
        StoreError: the foreign keys form a cycle (no insert order exists).
    """
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
        )
    ]
    needs = {
        name: {str(fk[2]) for fk in conn.execute(f"PRAGMA foreign_key_list({_q(name)})")} - {name}
        for name in names
    }
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and needs[n] <= set(order)]
        if not ready:
            raise StoreError("The label database's tables refer to each other in a cycle.")
        order.append(ready[0])
    return order


def _describe(conn: sqlite3.Connection, name: str) -> _Table:
    info = conn.execute(f"PRAGMA table_info({_q(name)})").fetchall()
    columns = tuple(str(c[1]) for c in info)
    keys = tuple(str(c[1]) for c in sorted(info, key=lambda c: int(c[5])) if int(c[5]) > 0)
    # One scan counts the rows and finds BLOBs: the team store has no binary column, and a
    # BLOB would otherwise arrive as its hex text, changed without an error.
    blob = " OR ".join(f"typeof({_q(c)}) = 'blob'" for c in columns)
    count, blobs = conn.execute(f"SELECT count(*), total({blob}) FROM {_q(name)}").fetchone()
    if blobs:
        raise StoreError(
            f"The label database's table {name} holds binary values, which no SALL Desktop "
            "writes; nothing was copied."
        )
    return _Table(name, columns, keys or ("rowid",), int(count))


def _check_source(conn: sqlite3.Connection, path: Path) -> tuple[list[_Table], str]:
    """Refuse a source that is not a verified, current SALL Desktop store; list its tables."""
    version, latest = migrations.schema_version(conn), migrations.latest_version()
    if version == 0:
        raise StoreError(f"{path} is not a SALL Desktop label database.")
    if version > latest:
        raise StoreError(
            f"The label database {path} was written by a newer SALL Desktop (schema {version}; "
            f"this version knows up to {latest}); update the app to migrate it."
        )
    if version < latest:
        raise StoreError(
            f"The label database {path} has the older schema {version}; open it once with this "
            "version of SALL Desktop (which upgrades it after a backup), then migrate it."
        )
    verdict = integrity(conn, quick=True)
    if verdict != "ok":
        raise StoreError(
            f"The label database {path} is damaged ({verdict.splitlines()[0]}); nothing was "
            "copied. Restore a backup first (`sall-desktop backups`)."
        )
    report = verify_store(conn)
    if not report.ok:
        raise StoreError(
            f"The label database {path} does not verify ({report.problems[0]}), so nothing was "
            f"copied; `sall-desktop verify --db {path}` lists every problem."
        )
    return [_describe(conn, name) for name in table_order(conn)], report.chain_head


def _writer_lock(path: Path) -> db.InstanceLock | None:
    """The source's one-writer lock, so nothing is graded into it during the copy.

    None when the lock file cannot be made (a read-only disk): then nothing can write there.
    """
    lock = db.InstanceLock(db.lock_path(path))
    try:
        acquired = lock.acquire()
    except OSError:
        return None
    if not acquired:
        holder = db.read_running_marker(path) or {}
        who = f" (process {holder['pid']})" if "pid" in holder else ""
        raise StoreError(
            f"The label database {path} is open in another SALL Desktop program{who}; close it "
            "first, so that no grading made during the copy is left behind."
        )
    return lock


@contextlib.contextmanager
def _source_snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection inside one read transaction: every read sees one snapshot."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder; give the label database file.")
    if not path.exists():
        raise StoreError(f"There is no label database at {path}.")
    if path.stat().st_size == 0:
        raise StoreError(f"The label database {path} is empty (0 bytes).")
    lock = _writer_lock(path)
    try:
        try:
            conn = db.connect(path, read_only=True)
        except sqlite3.Error as err:
            raise StoreError(f"Could not open the label database {path}: {err}.") from err
        try:
            # Deferred: the first SELECT fixes the snapshot until the connection closes.
            conn.execute("BEGIN")
            yield conn
        except sqlite3.Error as err:
            raise StoreError(f"Could not read the label database {path}: {err}.") from err
        finally:
            conn.close()
    finally:
        if lock is not None:
            lock.release()


# ------------------------------------------------------------------ the target


def _connect(url: str) -> _PgConn:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as err:
        raise StoreError(
            f"Could not reach the team store {describe_url(url)}: {_one_line(err)}"
        ) from err


def init_team_store(url: str, *, app_version: str) -> int:
    """Create (or upgrade) the team store's schema at ``url``; return its schema version.

    Run by the administrator (the database owner): graders' logins may not change the schema.

    Raises:
        StoreError: the server cannot be reached, the login may not create the schema, the
            database belongs to another program or to a newer SALL Desktop.
    """
    with _connect(url) as conn:
        try:
            _, after = migrate_pg(conn, app_version=app_version)
        except psycopg.Error as err:
            raise StoreError(
                f"Could not set up the team store {describe_url(url)}: {_one_line(err)}"
            ) from err
    return after


def _pg_columns(cur: psycopg.Cursor[TupleRow]) -> dict[str, dict[str, bool]]:
    """The team store's tables: name -> {column: is an identity column}."""
    rows = cur.execute(
        "SELECT c.relname, a.attname, a.attidentity <> '' FROM pg_attribute AS a "
        "JOIN pg_class AS c ON c.oid = a.attrelid "
        "WHERE c.relkind = 'r' "
        "AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
        "AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'schema_version' "
        "ORDER BY c.relname, a.attnum"
    ).fetchall()
    tables: dict[str, dict[str, bool]] = {}
    for table, column, identity in rows:
        tables.setdefault(str(table), {})[str(column)] = bool(identity)
    return tables


def _match_schema(tables: Sequence[_Table], pg: dict[str, dict[str, bool]]) -> None:
    """Refuse a team store whose tables or columns are not the source's, name for name."""
    if set(pg) != {t.name for t in tables}:
        differ = sorted(set(pg) ^ {t.name for t in tables})
        raise StoreError(f"The team store's tables differ from the label database's: {differ}.")
    for table in tables:
        if set(pg[table.name]) != set(table.columns):
            differ = sorted(set(pg[table.name]) ^ set(table.columns))
            raise StoreError(f"The team store's table {table.name} differs in columns {differ}.")


def _refuse_data(cur: psycopg.Cursor[TupleRow], tables: Sequence[_Table], where: str) -> None:
    # Any row refuses, not only gradings: copied ids would collide with (or silently sit
    # beside) rows a workstation already wrote there.
    exists = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})")
    held: list[str] = []
    for t in tables:
        row = cur.execute(exists.format(sql.Identifier(t.name))).fetchone()
        if row is not None and row[0]:
            held.append(t.name)
    if held:
        more = f" and {len(held) - 3} more tables" if len(held) > 3 else ""
        raise StoreError(
            f"The team store {where} already holds data (in {', '.join(held[:3])}{more}); "
            "migrate-store copies only into an empty team store and never merges two stores. "
            "Nothing was copied."
        )


def _copy_table(
    src: sqlite3.Connection, cur: psycopg.Cursor[TupleRow], table: _Table, progress: Progress
) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table.name), columns)
    names = ", ".join(_q(c) for c in table.columns)
    order = ", ".join(_q(c) if c != "rowid" else c for c in table.order_by)
    done = 0
    progress(table.name, 0)
    # COPY's text format: psycopg writes each value as text and the server parses it with the
    # column's own type (a TEXT uuid becomes a UUID); identity columns take the given ids.
    with cur.copy(statement) as copy:
        for row in src.execute(f"SELECT {names} FROM {_q(table.name)} ORDER BY {order}"):
            copy.write_row(row)
            done += 1
            if done % PROGRESS_EVERY == 0:
                progress(table.name, done)
    progress(table.name, done)


def _advance_sequences(cur: psycopg.Cursor[TupleRow], pg: dict[str, dict[str, bool]]) -> None:
    """Move every identity sequence past the largest copied id: the next row gets a fresh one."""
    for table, columns in pg.items():
        for column, identity in columns.items():
            if identity:
                cur.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence(%s, %s), "
                        "coalesce((SELECT max({}) FROM {}), 0) + 1, false)"
                    ).format(sql.Identifier(column), sql.Identifier(table)),
                    (table, column),
                )


def _counts(cur: psycopg.Cursor[TupleRow], tables: Sequence[_Table]) -> list[TableCount]:
    found: list[TableCount] = []
    for t in tables:
        row = cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t.name))
        ).fetchone()
        found.append(TableCount(t.name, t.rows, int(row[0]) if row is not None else 0))
    return found


def _differences(counts: Sequence[TableCount], source_head: str, target_head: str) -> list[str]:
    problems = [
        f"{c.table}: {c.source} rows in the label database, {c.target} in the team store"
        for c in counts
        if c.source != c.target
    ]
    if source_head != target_head:
        problems.append(
            f"the chain heads differ ({source_head or '(empty)'} / {target_head or '(empty)'})"
        )
    return problems


def _copy_all(
    conn: _PgConn,
    src: sqlite3.Connection,
    tables: Sequence[_Table],
    source_head: str,
    where: str,
    progress: Progress,
) -> None:
    """The one transaction: lock, refuse data, copy, advance sequences, check; or roll back."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        # One COPY of a big audit trail may outlast a server's statement_timeout (about 60k
        # rows/s): the administrator's one-off copy must not be cut off half way for that.
        cur.execute("SET LOCAL statement_timeout = 0")
        pg = _pg_columns(cur)
        _match_schema(tables, pg)
        _refuse_data(cur, tables, where)
        for table in tables:
            _copy_table(src, cur, table, progress)
        _advance_sequences(cur, pg)
        # Checked before the commit, so a copy that differs is rolled back, not left behind.
        problems = _differences(_counts(cur, tables), source_head, chain_head(PgSql(conn)))
        report = verify_store(PgSql(conn))
        if not report.ok:
            problems.append(f"the copy does not verify: {report.problems[0]}")
        if problems:
            raise StoreError(f"The copy was rolled back: {problems[0]}.")


def _check_after(
    url: str, conn: _PgConn, tables: Sequence[_Table], source_head: str, app_version: str
) -> tuple[list[TableCount], str, int, int, list[str]]:
    """Open the committed copy as a workstation would and check it again."""
    with open_team_store(url, app_version=app_version, read_only=True, pool_size=1) as store:
        report = store.verify()
        head = store.chain_head()
    with conn.cursor() as cur:
        counts = _counts(cur, tables)
    problems = list(report.problems) + _differences(counts, source_head, head)
    return counts, head, report.gradings, report.audit_rows, problems


def copy_sqlite_to_team(
    source: Path, url: str, *, app_version: str, progress: Progress | None = None
) -> CopyReport:
    """Copy the label database ``source`` into the empty team store at ``url``.

    Args:
        source: the workstation's SQLite file (read only; its writer lock is held meanwhile).
        url: the team store's ``postgresql://`` URL, as its owner (the schema is created or
            upgraded, and the identity sequences are set).
        app_version: recorded with the schema steps this applies.
        progress: told each table's progress (see :data:`Progress`).

    Raises:
        StoreError: the source is missing, damaged, out of date, in use or does not verify;
            the target cannot be reached or migrated, holds data already, or the copy failed
            or did not check out (then it was rolled back). One line.
    """
    started = time.perf_counter()
    source = Path(source).absolute()
    where = describe_url(url)
    with _source_snapshot(source) as src:
        tables, source_head = _check_source(src, source)
        with _connect(url) as conn:
            try:
                _, version = migrate_pg(conn, app_version=app_version)
                copy_started = time.perf_counter()
                _copy_all(conn, src, tables, source_head, where, progress or (lambda t, n: None))
            except psycopg.Error as err:
                owner = isinstance(err, psycopg.errors.InsufficientPrivilege)
                raise StoreError(
                    f"Could not copy into the team store {where} (nothing was kept): "
                    f"{_one_line(err)}{'; run it as the database owner' if owner else ''}"
                ) from err
            copy_seconds = time.perf_counter() - copy_started
            try:
                counts, head, gradings, audit_rows, problems = _check_after(
                    url, conn, tables, source_head, app_version
                )
            except (psycopg.Error, StoreError) as err:
                raise StoreError(
                    f"The copy into {where} committed but could not be checked: {_one_line(err)}"
                ) from err
    return CopyReport(
        source=str(source),
        target=where,
        schema_version=version,
        tables=tuple(counts),
        source_head=source_head,
        target_head=head,
        gradings=gradings,
        audit_rows=audit_rows,
        verified=not problems,
        problems=tuple(problems),
        copy_seconds=copy_seconds,
        seconds=time.perf_counter() - started,
    )


__all__ = [
    "CopyReport",
    "Progress",
    "TableCount",
    "copy_sqlite_to_team",
    "init_team_store",
    "table_order",
]
