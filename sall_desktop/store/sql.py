"""What the repository queries need of a database connection, on either backend.

The queries are written once, in the SQL that SQLite and PostgreSQL share, with ``?`` (or
``:name``) placeholders as :mod:`sqlite3` takes them. A ``sqlite3.Connection`` is already a
:class:`SqlConnection`; :class:`PgSql` makes a psycopg connection one by rewriting the
placeholders (ADR 0013).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg


class Cursor(Protocol):
    """The part of a DB-API cursor the queries use."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class SqlConnection(Protocol):
    """The part of a connection the queries use: ``sqlite3.Connection`` as it is, or PgSql."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def to_psycopg(sql: str, named: bool) -> str:
    """``sql`` with sqlite3 placeholders rewritten for psycopg (``%`` escaped first)."""
    text = sql.replace("%", "%%")
    if named:
        return _NAMED.sub(r"%(\1)s", text)
    return text.replace("?", "%s")


class PgSql:
    """A psycopg connection seen through :class:`SqlConnection` (one transaction's worth)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        named = isinstance(parameters, Mapping)
        params: Sequence[Any] | Mapping[str, Any] = parameters if named else tuple(parameters)
        return self._conn.execute(to_psycopg(sql, named), params)

    def server_now(self) -> str:
        """The server's clock, as ``utc_now()`` writes times (the audit trail's ``at_utc``)."""
        row = self._conn.execute(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
        ).fetchone()
        assert row is not None
        return str(row[0])

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        rows = [p if isinstance(p, Mapping) else tuple(p) for p in parameters]
        cur = self._conn.cursor()
        if rows:
            cur.executemany(to_psycopg(sql, isinstance(rows[0], Mapping)), rows)
        return cur
