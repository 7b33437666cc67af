"""``verify``: every kind of tampering with gradings is found (issue 22: edit, insert, delete,
truncate, rename), and an untouched store verifies, on a SQLite file and on a team store."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sall_desktop.__main__ import main
from sall_desktop.domain.grades import Grading
from sall_desktop.store import is_team_url, open_store, open_team_store

SHA = [hashlib.sha256(f"v{i}".encode()).hexdigest() for i in range(4)]


def _open(db: str, **kwargs: object) -> Any:
    if is_team_url(db):
        return open_team_store(db, app_version="test", read_only=bool(kwargs.get("read_only")))
    return open_store(Path(db), app_version="test", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def db(backend: tuple[str, str]) -> str:
    """The ``--db`` value of a store with 7 gradings: a SQLite path or a team store's URL."""
    where = backend[1]
    store = _open(where)
    for i, sha in enumerate(SHA):
        store.add_grading(Grading(sha, "Dr A", dr_grade=i, amd_grade=0))
    store.add_grading(Grading(SHA[0], "Dr A", dr_grade=4, amd_grade=1))  # a change
    store.add_grading(Grading(SHA[1], "Dr B", dr_grade=1, amd_grade=0))
    store.retract_grading(SHA[1], "Dr B")
    store.close()
    return where


def _tamper(db: str, *sql: str) -> None:
    """What someone with the database owner's rights could do, past the append-only guards."""
    if is_team_url(db):
        import psycopg

        with psycopg.connect(db, autocommit=True) as pg:
            pg.execute("SET session_replication_role = replica")  # triggers off (superuser)
            for statement in sql:
                pg.execute(statement.encode())
        return
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER gradings_no_update")
    conn.execute("DROP TRIGGER gradings_no_delete")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_an_untouched_store_verifies(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = _open(db, read_only=True)
    report = store.verify()
    assert report.ok and report.gradings == 7 and report.chain_head == store.chain_head()
    store.close()
    assert main(["--db", str(db), "verify"]) == 0
    assert "verified: 7 gradings" in capsys.readouterr().out


TAMPERING: dict[str, Callable[[str], None]] = {
    "edit": lambda db: _tamper(db, "UPDATE gradings SET dr_grade = 0 WHERE id = 5"),
    "insert": lambda db: _tamper(
        db,
        "INSERT INTO gradings (image_id, grader_id, role, source, gradable, dr_grade, "
        "amd_grade, notes, created_at) SELECT image_id, grader_id, role, source, 1, 0, 0, '', "
        "created_at FROM gradings WHERE id = 5",
    ),
    "delete": lambda db: _tamper(db, "DELETE FROM gradings WHERE id = 5"),
    "truncate": lambda db: _tamper(
        db,
        "DELETE FROM audit_log WHERE grading_id = (SELECT max(id) FROM gradings)",
    ),
    "rename": lambda db: _tamper(db, "UPDATE graders SET name = 'Dr Z' WHERE name = 'Dr A'"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_each_kind_of_tampering_is_found(
    db: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    TAMPERING[kind](db)
    store = _open(db, read_only=True)
    report = store.verify()
    store.close()
    assert not report.ok and report.problems
    assert main(["--db", str(db), "verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT verified") and report.problems[0] in out


def test_every_export_prints_the_chain_head_to_keep(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _open(db, read_only=True)
    head = store.chain_head()
    store.close()
    assert len(head) == 64
    assert main(["--db", str(db), "export", "--format", "canonical", "--out",
                 str(tmp_path / "labels.csv")]) == 0  # fmt: skip
    assert f"audit chain head: {head}" in capsys.readouterr().out
