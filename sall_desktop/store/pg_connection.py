"""The connection half of the PostgreSQL team store: a pool, serialised writes, errors.

Every write transaction first takes one transaction-scoped advisory lock, so writes from all
workstations commit one at a time: the audit chain stays one line (each row links to the row
committed before it), and ids grow in commit order, as on SQLite. Reads take no lock. The
pool hands out autocommit connections; a write opens its own transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from sall_desktop.store.audit import ChainReport
from sall_desktop.store.errors import StoreError, StoreWriteError
from sall_desktop.store.sql import PgSql, SqlConnection

CONNECT_TIMEOUT_S = 10
"""How long libpq tries to reach the server, and a save waits for the pool, before it says the
team store cannot be reached (psycopg_pool's own default wait is 30 s)."""

WRITE_LOCK = 0x5A11_0001
"""The advisory lock key every write transaction holds until it commits (one per database)."""


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a connection URL, never its password (for messages and titles)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the team store (the address could not be read)"
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def team_url_problem(text: str) -> str:
    """Why ``text`` cannot name a team store to remember in the settings ("" when it can).

    The settings file is plain text on the workstation, so an address with a password in it is
    refused: libpq finds the password in ``~/.pgpass`` or ``PGPASSWORD`` instead.
    """
    text = text.strip()
    if not text.startswith(("postgresql://", "postgres://")):
        return "A team store's address starts with postgresql:// (e.g. postgresql://grader@server/screening)."
    try:
        info = psycopg.conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "not readable"
        return f"The team store's address cannot be read ({first})."
    if info.get("password"):
        return (
            "Passwords are never kept in the settings: leave it out of the address and put it "
            "in ~/.pgpass (or PGPASSWORD)."
        )
    return ""


def _problem(err: BaseException) -> tuple[str, bool]:
    """A psycopg error as (grader-readable cause, retryable)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, PoolTimeout | psycopg.OperationalError):
        return f"the team store cannot be reached ({first})", True
    if isinstance(err, pg_errors.InsufficientPrivilege):
        return f"the team store refused: this account may not do that ({first})", False
    if isinstance(err, pg_errors.RaiseException):
        return f"the team store refused the change ({first})", False
    if isinstance(err, psycopg.IntegrityError):
        return f"the database refused an invalid value ({first})", False
    if isinstance(err, psycopg.DataError):
        return f"the text or a value cannot be stored ({first})", False
    if isinstance(err, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
        return "another workstation was saving at the same moment", True
    return f"the team store reported an error ({first})", True


class PgStoreConnection:
    """A connection pool to one team-store database; the base of ``PgLabelStore``.

    Attributes:
        url: the connection URL as given (libpq finds the password: environment, ~/.pgpass).
        where: ``host:port/dbname``, for messages.
        read_only / read_only_reason / warnings: as for the SQLite store.
        app_version: written into every audit row.
    """

    path: Path | None = None
    corrupt = False
    unclean_shutdown = False
    startup_check: str | None = None
    chain_report: ChainReport | None = None
    journal_mode = "server"
    workstation = ""

    def __init__(
        self,
        url: str,
        pool: ConnectionPool[Any],
        *,
        app_version: str,
        read_only: bool = False,
        read_only_reason: str = "",
    ) -> None:
        self.url = url
        self.where = describe_url(url)
        self._pool = pool
        self.app_version = app_version
        self.read_only = read_only
        self.read_only_reason = read_only_reason
        self.warnings: list[str] = []
        self._closed = False
        self._pool_failing = False

    @contextlib.contextmanager
    def _connection(self, what: str, *, write: bool) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise (StoreWriteError if write else StoreError)(
                f"Could not {'save' if write else 'read'} {what}: the store is closed"
            )
        with contextlib.ExitStack() as stack:
            conn: psycopg.Connection[Any] | None = None
            # After an outage the pool reconnects only on its own back-off (1, 2, 4 ... s, for
            # up to its reconnect timeout), so saves would go on failing long after the server
            # is back: until the pool holds a connection again, go to the server directly.
            if not self._pool_failing or self._pool.get_stats().get("pool_available", 0):
                try:
                    conn = stack.enter_context(self._pool.connection(timeout=CONNECT_TIMEOUT_S))
                    self._pool_failing = False
                except PoolTimeout:
                    self._pool_failing = True
            if conn is None:
                conn = stack.enter_context(
                    psycopg.connect(
                        self.url,
                        autocommit=True,
                        connect_timeout=CONNECT_TIMEOUT_S,
                        application_name="sall-desktop",
                    )
                )
                # The server answers again: after a long outage the pool has given up and
                # shrunk to nothing; this makes it refill, so the next call uses it again.
                self._pool.check()
            yield conn

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[SqlConnection]:
        """One write transaction holding :data:`WRITE_LOCK`, rolled back whole on failure."""
        if self.read_only or self._closed:
            why = "the store is closed" if self._closed else self.read_only_reason
            raise StoreWriteError(f"Could not save {what}: {why}", retryable=False)
        try:
            with self._connection(what, write=True) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield PgSql(conn)
        except (psycopg.Error, PoolTimeout) as err:
            cause, retryable = _problem(err)
            hint = " It is kept as pending; it will be retried." if retryable else ""
            raise StoreWriteError(
                f"Could not save {what}: {cause}.{hint}", retryable=retryable
            ) from err

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[SqlConnection]:
        try:
            with self._connection(what, write=False) as conn:
                yield PgSql(conn)
        except (psycopg.Error, PoolTimeout) as err:
            cause, _ = _problem(err)
            raise StoreError(f"Could not read {what}: {cause}.") from err
        except ValueError as err:  # a stored value the domain types refuse
            raise StoreError(
                f"Could not read {what}: the database holds an invalid value ({err})."
            ) from err

    def integrity_check(self, *, quick: bool = False) -> str:
        """ "ok" when the server answers; the server keeps its own pages consistent."""
        try:
            with self._read("the database") as conn:
                conn.execute("SELECT 1").fetchone()
        except StoreError as err:
            return str(err)
        return "ok"

    def connection_settings(self) -> dict[str, str]:
        """The server's durability settings that matter for acknowledged grades."""
        with self._read("the settings") as conn:
            names = ("synchronous_commit", "fsync", "server_version")
            return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}

    def backup_to(self, dest: Path) -> None:
        """Refused: a team store is backed up on its server (``pg_dump``), not by one client."""
        raise StoreWriteError(
            f"The team store {self.where} is backed up on its server (pg_dump), "
            "not by a workstation.",
            retryable=False,
        )

    def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
