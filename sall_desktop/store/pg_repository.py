"""PostgreSQL implementation of :class:`~sall_desktop.store.repository.LabelRepository`.

The team store: the same queries as the SQLite store (:class:`~sall_desktop.store.
label_queries.LabelQueries`) over a psycopg connection pool. Open it with
:func:`open_team_store`; a workstation reaches it through ``StoreThread`` like the SQLite one.
"""

from __future__ import annotations

import socket
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from sall_desktop.store.errors import StoreError
from sall_desktop.store.label_queries import LabelQueries
from sall_desktop.store.pg_connection import CONNECT_TIMEOUT_S, PgStoreConnection, describe_url
from sall_desktop.store.pg_migrations import migrate_pg

__all__ = ["CONNECT_TIMEOUT_S", "PgLabelStore", "is_team_url", "open_team_store"]

URL_PREFIXES = ("postgresql://", "postgres://")


def is_team_url(db: object) -> bool:
    """True when a ``--db`` value names a PostgreSQL server rather than a SQLite file."""
    return isinstance(db, str) and db.startswith(URL_PREFIXES)


# As in sqlite_repository.py: mypy compares the two _write/_read declarations by name.
class PgLabelStore(LabelQueries, PgStoreConnection):  # type: ignore[misc]
    """The team store (see LabelRepository). Create it with ``open_team_store(url)``.

    Settings are the one place its behaviour differs from a workstation's own store: a window
    setting (``gui.*``: the last folder and image) belongs to the workstation, so it is kept
    under this workstation's name; ten workstations would otherwise reopen each other's image.
    """

    def _setting_key(self, key: str) -> str:
        return f"{self.workstation}/{key}" if key.startswith("gui.") else key

    def get_setting(self, key: str) -> str | None:
        """A setting; a window setting (``gui.*``) of this workstation."""
        return super().get_setting(self._setting_key(key))

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting; a window setting (``gui.*``) for this workstation only."""
        super().set_setting(self._setting_key(key), value)


def open_team_store(
    url: str,
    *,
    app_version: str = "0.1.0",
    read_only: bool = False,
    pool_size: int = 4,
    workstation: str = "",
) -> PgLabelStore:
    """Connect to a team store, bring its schema up to date, and return it.

    Credentials and TLS come from the URL and libpq's usual places (``PGPASSWORD``,
    ``~/.pgpass``, ``PGSERVICE``, ``sslmode=...``); nothing is written anywhere by the app.

    Args:
        workstation: this workstation's name for its own window settings (default: the host
            name).

    Raises:
        StoreError: the server cannot be reached, refuses the login, or holds a schema this
            version cannot use; the message names ``host:port/dbname``, never a password.
    """
    where = describe_url(url)
    pool: ConnectionPool[Any] = ConnectionPool(
        url,
        min_size=1,
        max_size=pool_size,
        open=False,
        kwargs={
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "sall-desktop",
        },
        check=ConnectionPool.check_connection,
        timeout=CONNECT_TIMEOUT_S,
        name=f"sall-{where}",
    )
    try:
        # One direct connection first: a pool would keep retrying a wrong password in the
        # background; this fails at once with libpq's own words.
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            if not read_only:
                migrate_pg(conn, app_version=app_version)
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    except (psycopg.Error, PoolTimeout) as err:
        pool.close()
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StoreError(f"Could not open the team store {where}: {first}") from err
    except BaseException:
        pool.close()
        raise
    reason = "opened read-only on request" if read_only else ""
    store = PgLabelStore(
        url, pool, app_version=app_version, read_only=read_only, read_only_reason=reason
    )
    store.workstation = workstation or socket.gethostname()
    return store
