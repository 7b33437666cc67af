"""The team store's security acceptance: a grader's login cannot change history, and a history
changed behind the app's back (by someone with the server's superuser) is caught by ``verify``."""

from __future__ import annotations

import hashlib
import itertools

import psycopg
import pytest
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from sall_desktop.__main__ import main
from sall_desktop.domain.grades import Grading
from sall_desktop.store import open_team_store
from tests.support.pg_server import PgServer

SHA = [hashlib.sha256(f"s{i}".encode()).hexdigest() for i in range(3)]
_ROLES = itertools.count()


@pytest.fixture
def grader_url(pg_server: PgServer, pg_url: str) -> str:
    """The store made by its administrator, and a grader's own login (a sall_grader member)."""
    open_team_store(pg_url, app_version="test").close()  # the administrator's first open
    role = f"grader_{next(_ROLES)}_{conninfo_to_dict(pg_url)['dbname']}"[:63]
    pg_server.execute_as_superuser(f'CREATE ROLE "{role}" LOGIN IN ROLE sall_grader'.encode())
    return pg_server.url(str(conninfo_to_dict(pg_url)["dbname"]), user=role)


def test_a_grader_grades_through_the_app_but_the_server_refuses_changing_history(
    grader_url: str,
) -> None:
    store = open_team_store(grader_url, app_version="test")
    store.add_grading(Grading(SHA[0], "Dr A", dr_grade=2, amd_grade=0))
    store.add_grading(Grading(SHA[0], "Dr A", dr_grade=3, amd_grade=0))  # a correction: a row
    store.retract_grading(SHA[0], "Dr A")
    assert store.verify().ok
    store.close()
    with psycopg.connect(grader_url, autocommit=True) as conn:
        for statement in (
            "UPDATE gradings SET dr_grade = 0",
            "DELETE FROM gradings",
            "TRUNCATE gradings CASCADE",
            "UPDATE audit_log SET new_value = '0'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement.encode())
        assert conn.execute("SELECT count(*) FROM gradings").fetchone() == (3,)


def test_an_audit_row_tampered_by_a_superuser_is_found_by_verify(
    grader_url: str, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_team_store(grader_url, app_version="test")
    for i, sha in enumerate(SHA):
        store.add_grading(Grading(sha, "Dr A", dr_grade=i, amd_grade=0))
    store.close()
    assert main(["--db", grader_url, "verify"]) == 0
    assert "verified: 3 gradings" in capsys.readouterr().out
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SET session_replication_role = replica")  # past the triggers
        admin.execute("UPDATE audit_log SET new_value = '4' WHERE field = 'dr_grade' AND id > 1")
    assert main(["--db", grader_url, "verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT verified") and "edited" in out
