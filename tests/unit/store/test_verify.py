"""``verify``: every kind of tampering with gradings is found (issue 22: edit, insert, delete,
truncate, rename), and an untouched store verifies."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from sall_desktop.__main__ import main
from sall_desktop.domain.grades import Grading
from sall_desktop.store import open_store

SHA = [hashlib.sha256(f"v{i}".encode()).hexdigest() for i in range(4)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "labels.sqlite"
    store = open_store(path, app_version="test")
    for i, sha in enumerate(SHA):
        store.add_grading(Grading(sha, "Dr A", dr_grade=i, amd_grade=0))
    store.add_grading(Grading(SHA[0], "Dr A", dr_grade=4, amd_grade=1))  # a change
    store.add_grading(Grading(SHA[1], "Dr B", dr_grade=1, amd_grade=0))
    store.retract_grading(SHA[1], "Dr B")
    store.close()
    return path


def _tamper(db: Path, *sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER gradings_no_update")
    conn.execute("DROP TRIGGER gradings_no_delete")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_an_untouched_store_verifies(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(db, app_version="test", read_only=True)
    report = store.verify()
    assert report.ok and report.gradings == 7 and report.chain_head == store.chain_head()
    store.close()
    assert main(["--db", str(db), "verify"]) == 0
    assert "verified: 7 gradings" in capsys.readouterr().out


TAMPERING: dict[str, Callable[[Path], None]] = {
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
    db: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    TAMPERING[kind](db)
    store = open_store(db, app_version="test", read_only=True)
    report = store.verify()
    store.close()
    assert not report.ok and report.problems
    assert main(["--db", str(db), "verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT verified") and report.problems[0] in out


def test_every_export_prints_the_chain_head_to_keep(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(db, app_version="test", read_only=True)
    head = store.chain_head()
    store.close()
    assert len(head) == 64
    assert main(["--db", str(db), "export", "--format", "canonical", "--out",
                 str(tmp_path / "labels.csv")]) == 0  # fmt: skip
    assert f"audit chain head: {head}" in capsys.readouterr().out
