"""Builders shared by the label-store tests, and their hang guard (docs/testing.md)."""

from __future__ import annotations

import hashlib
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


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Any]:
    """The store on each backend in turn: a SQLite file, then a fresh team-store database.

    Contract-test modules rebind ``store`` to it, so one test body checks both (ADR 0013).
    """
    if request.param == "sqlite":
        s: Any = open_store(db_path, app_version="9.9.9-test")
    else:
        from sall_desktop.store.pg_repository import open_team_store

        s = open_team_store(request.getfixturevalue("pg_url"), app_version="9.9.9-test")
    yield s
    s.close()


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
