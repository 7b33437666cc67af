"""Builders shared by the label-store tests, and their hang guard (docs/testing.md)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sall_desktop.domain.grades import Grading
from sall_desktop.store import SqliteLabelStore, open_store

HANG_GUARD_S = 120.0
"""The longest a wait on another process or thread may take before the test fails as hung;
never a measure of speed (on a busy machine the work may take any time below it)."""


def _sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture
def sha() -> Callable[[int | str], str]:
    """A valid image SHA-256 per label: sha(1), sha("left.jpg")."""
    return _sha


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "labels.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteLabelStore]:
    s = open_store(db_path, app_version="9.9.9-test")
    yield s
    s.close()


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SqliteLabelStore]:
    """The SQLite store, for what only it has (backups, the file, PRAGMAs)."""
    s = open_store(db_path, app_version="9.9.9-test")
    yield s
    s.close()


class Refused(Exception):
    """The database itself refused a statement run behind the store's back (either backend)."""


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, db_path: Path) -> tuple[str, str]:
    """(backend, where): a SQLite file path, or a fresh team-store database URL."""
    if request.param == "sqlite":
        return ("sqlite", str(db_path))
    return ("postgresql", str(request.getfixturevalue("pg_url")))


@pytest.fixture
def any_store(backend: tuple[str, str]) -> Iterator[Any]:
    """The store on each backend in turn: a SQLite file, then a fresh team-store database.

    Contract-test modules rebind ``store`` to it, so one test body checks both (ADR 0013).
    """
    kind, where = backend
    if kind == "sqlite":
        s: Any = open_store(Path(where), app_version="9.9.9-test")
    else:
        from sall_desktop.store.pg_repository import open_team_store

        s = open_team_store(where, app_version="9.9.9-test")
    yield s
    s.close()


@pytest.fixture
def raw_execute(backend: tuple[str, str]) -> Callable[[str], None]:
    """Run one statement on the store's database as its owner, as an intruder or a bug would;
    the database's own refusal comes out as :class:`Refused`."""
    kind, where = backend

    def run(sql: str) -> None:
        if kind == "sqlite":
            conn = sqlite3.connect(where, isolation_level=None)
            try:
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute(sql)
            except sqlite3.DatabaseError as err:
                raise Refused(str(err)) from err
            finally:
                conn.close()
            return
        import psycopg

        with psycopg.connect(where, autocommit=True) as pg:
            try:
                pg.execute(sql.encode())
            except psycopg.Error as err:
                raise Refused(str(err)) from err

    return run


@pytest.fixture
def grading() -> Callable[..., Grading]:
    """Grading builder with test defaults: grading(1, "Dr A", dr_grade=2)."""

    def build(image: int | str = 1, grader: str = "Dr A", **fields: Any) -> Grading:
        fields.setdefault("dr_grade", 1)
        fields.setdefault("amd_grade", 0)
        if fields.get("gradable") is False:
            fields["dr_grade"] = fields["amd_grade"] = None
        return Grading(image_sha256=_sha(image), grader=grader, **fields)

    return build
