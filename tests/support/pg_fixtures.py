"""pytest plugin: one PostgreSQL server per run (``pg_server``), an empty database per test
(``pg_url``).

Registered from the root ``tests/conftest.py`` with
``pytest_plugins = ["tests.support.pg_fixtures"]``. Tests that kill or restart a server build
their own :class:`~tests.support.pg_server.PgServer` rather than disturb the shared one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterator

import pytest

from tests.support.pg_server import PgServer

_counter = itertools.count(1)
MAX_IDENTIFIER = 63
"""PostgreSQL truncates longer names (NAMEDATALEN - 1), which could make two names collide."""


def database_name(hint: str) -> str:
    """A unique, valid, lower-case database name that still says which test made it."""
    # The pid keeps names apart should two runs ever share a server; the counter within a run.
    prefix = f"t{os.getpid()}_{next(_counter)}_"
    readable = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_")
    return (prefix + readable)[:MAX_IDENTIFIER]


@contextlib.contextmanager
def fresh_database(server: PgServer, hint: str = "db") -> Iterator[str]:
    """An empty database (from template0) for the block; dropped after it, even if still in use."""
    name = database_name(hint)
    url = server.create_database(name)
    try:
        yield url
    finally:
        # A test that failed while holding a connection must not turn into a teardown error.
        if server.running:
            server.drop_database(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The run's shared server; never kill or restart it (build your own PgServer for that)."""
    with PgServer() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A ``postgresql://`` URL of an empty database of this test alone, as the superuser."""
    with fresh_database(pg_server, request.node.name) as url:
        yield url
