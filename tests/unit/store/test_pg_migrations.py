"""Team-store (PostgreSQL) migrations: versions, concurrency, privileges and SQLite parity."""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from sall_desktop.store import StoreError
from sall_desktop.store import migrations as sqlite_mig
from sall_desktop.store import pg_migrations as mig
from sall_desktop.store.pg_migrations import PgMigration, migrate_pg, pg_schema_version
from tests.support.pg_server import PgServer

HANG_GUARD_S = 120.0
"""The longest a wait on another thread may take before the test fails as hung."""
POLL_S = 0.01
LOCK_POLLS = 12_000
"""Polls of pg_locks before two waiters count as never arriving: minutes, a hang guard only
(the test waits for the condition, never for a time)."""

APP = "9.9.9-test"
SHA = "a" * 64
APPEND_ONLY = (
    "gradings",
    "predictions",
    "audit_log",
    "model_events",
    "holdout_images",
    "programme_roles",
    "routing_decisions",
    "test_set_items",
    "test_answers",
)
# What the team store has beyond the SQLite schema; anything else extra is a mistake. The team
# additions may also be in the SQLite schema (which then mirrors them), so they are allowed, not
# required, beside it.
PG_ONLY_TABLES = {"schema_version"}
TEAM_TABLES = {"leases"}
TEAM_COLUMNS = {
    "gradings": ["client_uuid"],
    "test_answers": ["client_uuid"],
    "audit_log": ["client_at_utc"],
}
# Where PostgreSQL has a stricter type than SQLite offers.
TYPE_EXCEPTIONS = {("gradings", "client_uuid"): "uuid", ("test_answers", "client_uuid"): "uuid"}
# SQLite declared type -> the PostgreSQL types it may become.
TYPE_MAP = {
    "INTEGER": {"integer", "bigint"},
    "TEXT": {"text"},
    "REAL": {"double precision"},
}

_role_counter = itertools.count(1)


def _connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, **kwargs)


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The database owner's (the superuser's) autocommit connection to a fresh database."""
    with _connect(pg_url) as c:
        yield c


@pytest.fixture
def grader_url(pg_server: PgServer, pg_url: str) -> Iterator[str]:
    """URL of the test's database as a fresh LOGIN role that is a member of sall_grader.

    The fixture migrates the database first: the migration creates sall_grader.
    """
    dbname = conninfo_to_dict(pg_url)["dbname"]
    assert isinstance(dbname, str)
    # Roles are per server: the pid and a counter keep tests (and runs) apart.
    role = f"grader_{os.getpid()}_{next(_role_counter)}"
    with _connect(pg_url) as c:
        migrate_pg(c, app_version=APP)
        c.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE sall_grader").format(sql.Identifier(role)))
    yield pg_server.url(dbname, user=role)
    with _connect(pg_url) as c:
        c.execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}"
            ).format(sql.Literal(role))
        )
        # The role's own grants in this database must go before the role can.
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _versions(c: psycopg.Connection[Any]) -> list[int]:
    return [int(r[0]) for r in c.execute("SELECT version FROM schema_version ORDER BY version")]


def _only_first_steps(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    loaded = mig.load_pg_migrations()
    monkeypatch.setattr(mig, "load_pg_migrations", lambda: loaded[:count])


def _with_extra(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    loaded = mig.load_pg_migrations()
    extra = PgMigration(len(loaded) + 1, "0099_x.sql", text)
    monkeypatch.setattr(mig, "load_pg_migrations", lambda: [*loaded, extra])


def _seed(c: psycopg.Connection[Any]) -> tuple[int, int]:
    """One image, grader, grading and audit row; (image id, grading id)."""
    image = c.execute(
        "INSERT INTO images (sha256, created_at, updated_at) VALUES (%s, 'now', 'now') "
        "RETURNING id",
        (SHA,),
    ).fetchone()
    grader = c.execute(
        "INSERT INTO graders (name, created_at) VALUES ('Dr A', 'now') RETURNING id"
    ).fetchone()
    assert image is not None and grader is not None
    grading = c.execute(
        "INSERT INTO gradings (image_id, grader_id, role, source, gradable, dr_grade, created_at)"
        " VALUES (%s, %s, 'primary', 'human', 1, 2, 'now') RETURNING id",
        (image[0], grader[0]),
    ).fetchone()
    assert grading is not None
    # Explicit id, as the audit code numbers its rows for the hash chain.
    c.execute(
        "INSERT INTO audit_log (id, at_utc, local_offset, grader, image_sha256, action, field, "
        "new_value, app_version, grading_id, prev_hash, row_hash) VALUES "
        "(1, 'now', '+00:00', 'Dr A', %s, 'create', 'dr_grade', '2', %s, %s, %s, %s)",
        (SHA, APP, grading[0], "0" * 64, "1" * 64),
    )
    return int(image[0]), int(grading[0])


# ---------------------------------------------------------------- versions


def test_bundled_pg_migrations_load_in_order_through_importlib_resources() -> None:
    loaded = mig.load_pg_migrations()
    assert [m.version for m in loaded] == list(range(1, len(loaded) + 1))
    assert loaded[0].name == "0001_schema.sql" and "CREATE TABLE gradings" in loaded[0].sql
    assert mig.pg_latest_version() == len(loaded) >= 2


def test_empty_database_migrates_to_the_latest_schema(conn: psycopg.Connection[Any]) -> None:
    assert pg_schema_version(conn) == 0
    latest = mig.pg_latest_version()
    assert migrate_pg(conn, app_version=APP) == (0, latest)
    assert pg_schema_version(conn) == latest
    assert _versions(conn) == list(range(1, latest + 1))
    apps = {r[0] for r in conn.execute("SELECT app_version FROM schema_version")}
    assert apps == {APP}
    _, grading_id = _seed(conn)
    row = conn.execute("SELECT grader, dr_grade FROM current_gradings").fetchone()
    assert row == ("Dr A", 2) and grading_id > 0


def test_version_1_with_data_upgrades_and_keeps_its_rows(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _only_first_steps(patch, 1)
        assert migrate_pg(conn, app_version="1.0") == (0, 1)
    image_id, grading_id = _seed(conn)

    assert migrate_pg(conn, app_version=APP) == (1, mig.pg_latest_version())

    assert conn.execute("SELECT id, sha256 FROM images").fetchall() == [(image_id, SHA)]
    graded = conn.execute("SELECT id, dr_grade, client_uuid FROM gradings").fetchall()
    assert graded == [(grading_id, 2, None)]
    audit = conn.execute("SELECT id, grading_id, client_at_utc FROM audit_log").fetchall()
    assert audit == [(1, grading_id, None)]
    assert [r[0] for r in conn.execute("SELECT app_version FROM schema_version")] == ["1.0", APP]


def test_second_migration_is_a_no_op(pg_url: str) -> None:
    # A dict-row connection too: the runner reads its own rows as tuples whatever the caller uses.
    with _connect(pg_url, row_factory=dict_row) as c:
        latest = mig.pg_latest_version()
        assert migrate_pg(c, app_version=APP) == (0, latest)
        assert migrate_pg(c, app_version="other") == (latest, latest)
        rows = c.execute("SELECT version, app_version FROM schema_version").fetchall()
    assert [(r["version"], r["app_version"]) for r in rows] == [
        (v, APP) for v in range(1, latest + 1)
    ]


def test_a_connection_inside_a_transaction_is_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url) as c:
        c.execute("SELECT 1")
        with pytest.raises(ValueError, match="outside any transaction"):
            migrate_pg(c, app_version=APP)


def _advisory_waiters(c: psycopg.Connection[Any]) -> int:
    row = c.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return int(row[0]) if row is not None else 0


def test_two_workstations_opening_a_fresh_store_at_once_migrate_it_once(pg_url: str) -> None:
    latest = mig.pg_latest_version()
    # Hold the migration lock so both openers are certainly past their unlocked first look
    # (version 0) and queued on the lock before either may migrate: the race, every time.
    with psycopg.connect(pg_url) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(%s)", (mig.MIGRATION_LOCK_KEY,))

        def open_store() -> tuple[int, int]:
            with _connect(pg_url) as c:
                return migrate_pg(c, app_version=APP)

        with ThreadPoolExecutor(max_workers=2) as pool, _connect(pg_url) as watcher:
            futures = [pool.submit(open_store) for _ in range(2)]
            for _ in range(LOCK_POLLS):
                if _advisory_waiters(watcher) == 2 or any(f.done() for f in futures):
                    break
                time.sleep(POLL_S)
            assert _advisory_waiters(watcher) == 2, [f.exception() for f in futures if f.done()]
            blocker.commit()
            results = [f.result(timeout=HANG_GUARD_S) for f in futures]

    assert all(before == 0 and after == latest for before, after in results)
    with _connect(pg_url) as c:
        assert _versions(c) == list(range(1, latest + 1))


# ---------------------------------------------------------------- refusals


def test_newer_schema_is_refused_with_a_clear_message(conn: psycopg.Connection[Any]) -> None:
    migrate_pg(conn, app_version=APP)
    latest = mig.pg_latest_version()
    conn.execute("INSERT INTO schema_version VALUES (%s, 'later', '99.0')", (latest + 1,))
    with pytest.raises(
        StoreError, match=rf"newer SALL Desktop \(schema {latest + 1}; .* {latest}\)"
    ):
        migrate_pg(conn, app_version=APP)


@pytest.mark.parametrize(
    "foreign",
    [
        "CREATE TABLE patients (id integer)",
        # Older Flyway kept its history in a table of the same name, with other columns.
        "CREATE TABLE schema_version (installed_rank integer, version varchar(50))",
    ],
)
def test_a_database_that_is_not_a_sall_store_is_refused(
    conn: psycopg.Connection[Any], foreign: str
) -> None:
    conn.execute(foreign.encode())
    with pytest.raises(StoreError, match="not a SALL Desktop team store") as caught:
        migrate_pg(conn, app_version=APP)
    assert "\n" not in str(caught.value)
    tables = {
        r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert "gradings" not in tables


def test_a_failing_step_is_rolled_back_and_earlier_steps_stay(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    latest = mig.pg_latest_version()
    _with_extra(monkeypatch, "CREATE TABLE half_done (a integer);\nSELECT 1 / 0;")
    with pytest.raises(StoreError, match=rf"0099_x\.sql.*left at schema {latest}\.") as caught:
        migrate_pg(conn, app_version=APP)
    assert "\n" not in str(caught.value)
    assert _versions(conn) == list(range(1, latest + 1))
    assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)


def test_a_grader_login_may_not_migrate_but_may_open_an_up_to_date_store(
    pg_server: PgServer, pg_url: str, grader_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    latest = mig.pg_latest_version()
    with _connect(grader_url) as c:
        assert migrate_pg(c, app_version=APP) == (latest, latest)
        _with_extra(monkeypatch, "CREATE TABLE later (a integer);")
        with pytest.raises(StoreError, match="administrator to run `sall-desktop migrate-store"):
            migrate_pg(c, app_version=APP)
    with _connect(pg_url) as c:
        assert _versions(c) == list(range(1, latest + 1))


def test_a_grader_login_may_not_create_a_store(pg_server: PgServer, grader_url: str) -> None:
    # grader_url's role exists server-wide; a fresh database is one no administrator prepared.
    role = conninfo_to_dict(grader_url)["user"]
    assert isinstance(role, str)
    name = f"fresh_{role}"
    pg_server.create_database(name)
    try:
        with _connect(pg_server.url(name, user=role)) as c:
            with pytest.raises(StoreError, match="may not upgrade the team store") as caught:
                migrate_pg(c, app_version=APP)
        assert "\n" not in str(caught.value)
    finally:
        pg_server.drop_database(name)


# ---------------------------------------------------------------- append-only and privileges


def test_a_grader_may_add_gradings_and_audit_rows_but_never_change_them(
    conn: psycopg.Connection[Any], grader_url: str
) -> None:
    with _connect(grader_url) as c:
        _, grading_id = _seed(c)
        c.execute(
            "INSERT INTO gradings (image_id, grader_id, role, source, retracted, created_at, "
            "client_uuid) SELECT image_id, grader_id, role, source, 1, 'later', "
            "'6f1c9c1e-4f57-4d3c-9d1b-2b7f1c0e8a11' FROM gradings WHERE id = %s "
            "ON CONFLICT (client_uuid) DO NOTHING",
            (grading_id,),
        )
        for table in ("gradings", "audit_log"):
            refused = (
                f"UPDATE {table} SET id = id",
                f"DELETE FROM {table}",
                f"TRUNCATE {table}",
            )
            for statement in refused:
                with pytest.raises(errors.InsufficientPrivilege):
                    c.execute(statement.encode())
        # The mutable tables are the grader's to change.
        c.execute(
            "INSERT INTO settings VALUES ('k', 'v', 'now') "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        c.execute(
            "INSERT INTO settings VALUES ('k', 'w', 'now') "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        c.execute(
            "INSERT INTO leases VALUES (%s, 'primary', 'Dr A', 'ws1', 'now', 'later')", (SHA,)
        )
        c.execute("UPDATE leases SET expires_at = 'much later'")
        c.execute("DELETE FROM leases")
    assert conn.execute("SELECT count(*) FROM gradings").fetchone() == (2,)
    assert conn.execute("SELECT value FROM settings").fetchone() == ("w",)


def test_even_the_owner_is_stopped_by_the_append_only_triggers(
    conn: psycopg.Connection[Any],
) -> None:
    migrate_pg(conn, app_version=APP)
    _seed(conn)
    for statement in (
        "UPDATE gradings SET notes = 'x'",
        "DELETE FROM gradings",
        "TRUNCATE gradings CASCADE",
        "UPDATE audit_log SET reason = 'x'",
        "TRUNCATE images CASCADE",
    ):
        with pytest.raises(errors.IntegrityConstraintViolation, match="is append-only"):
            conn.execute(statement.encode())
    assert conn.execute("SELECT count(*) FROM gradings").fetchone() == (1,)


def test_every_append_only_table_has_its_triggers_and_no_grader_changes(
    conn: psycopg.Connection[Any],
) -> None:
    migrate_pg(conn, app_version=APP)
    for table in APPEND_ONLY:
        triggers = {
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                (table,),
            )
        }
        assert triggers == {f"{table}_append_only", f"{table}_no_truncate"}, table
        for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
            held = conn.execute(
                "SELECT has_table_privilege('sall_grader', %s, %s)", (table, privilege)
            ).fetchone()
            assert held == (False,), (table, privilege)
        held = conn.execute(
            "SELECT has_table_privilege('sall_grader', %s, 'SELECT, INSERT')", (table,)
        ).fetchone()
        assert held == (True,), table


# ---------------------------------------------------------------- parity with SQLite


@pytest.fixture
def sqlite_schema() -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(":memory:", isolation_level=None)
    sqlite_mig.migrate(c)
    yield c
    c.close()


def _sqlite_objects(c: sqlite3.Connection, kind: str) -> set[str]:
    rows = c.execute(
        "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,)
    )
    return {str(r[0]) for r in rows}


def _pg_columns(c: psycopg.Connection[Any], relation: str) -> list[tuple[str, str]]:
    rows = c.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (relation,),
    )
    return [(str(r[0]), str(r[1])) for r in rows]


def _pg_relations(c: psycopg.Connection[Any], kind: str) -> set[str]:
    rows = c.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_type = %s",
        (kind,),
    )
    return {str(r[0]) for r in rows}


def test_every_sqlite_table_view_column_and_index_exists_in_the_team_store(
    conn: psycopg.Connection[Any], sqlite_schema: sqlite3.Connection
) -> None:
    migrate_pg(conn, app_version=APP)
    sqlite_tables = _sqlite_objects(sqlite_schema, "table")
    assert _pg_relations(conn, "BASE TABLE") == sqlite_tables | PG_ONLY_TABLES | TEAM_TABLES
    assert _pg_relations(conn, "VIEW") == _sqlite_objects(sqlite_schema, "view")

    for table in sorted(sqlite_tables):
        info = sqlite_schema.execute(f"PRAGMA table_info({table})").fetchall()
        expected = [(str(r[1]), str(r[2]).upper()) for r in info]
        got = _pg_columns(conn, table)
        # Same names in the same order (SELECT * must match), then the team's own columns.
        names = [n for n, _ in expected]
        team = [n for n in TEAM_COLUMNS.get(table, []) if n not in names]
        assert [n for n, _ in got] == names + team, table
        for (name, declared), (_, pg_type) in zip(expected, got, strict=False):
            allowed = {TYPE_EXCEPTIONS[table, name]} if (table, name) in TYPE_EXCEPTIONS else None
            assert pg_type in (allowed or TYPE_MAP[declared]), (table, name, declared, pg_type)

    for view in _sqlite_objects(sqlite_schema, "view"):
        names = [str(r[1]) for r in sqlite_schema.execute(f"PRAGMA table_info({view})")]
        assert [n for n, _ in _pg_columns(conn, view)] == names, view

    pg_indexes = {
        str(r[0])
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    assert _sqlite_objects(sqlite_schema, "index") <= pg_indexes


def test_the_team_additions_have_their_shape(conn: psycopg.Connection[Any]) -> None:
    migrate_pg(conn, app_version=APP)
    assert dict(_pg_columns(conn, "leases")) == {
        "image_sha256": "text",
        "role": "text",
        "grader": "text",
        "workstation": "text",
        "acquired_at": "text",
        "expires_at": "text",
    }
    assert ("client_uuid", "uuid") in _pg_columns(conn, "gradings")
    conn.execute("INSERT INTO leases VALUES (%s, 'primary', 'Dr A', '', 'now', 'later')", (SHA,))
    with pytest.raises(errors.UniqueViolation):
        conn.execute(
            "INSERT INTO leases VALUES (%s, 'primary', 'Dr B', '', 'now', 'later')", (SHA,)
        )
    with pytest.raises(errors.CheckViolation):
        conn.execute("INSERT INTO leases VALUES (%s, 'qa', 'Dr B', '', 'now', 'later')", (SHA,))


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("A" * 64, False), ("a" * 63, False), ("a" * 63 + "g", False), ("0123456789abcdef" * 4, True)],
)
def test_the_sha256_check_matches_sqlite(
    conn: psycopg.Connection[Any], sqlite_schema: sqlite3.Connection, value: str, accepted: bool
) -> None:
    migrate_pg(conn, app_version=APP)

    def attempt(run: Callable[[], object], error: type[Exception]) -> bool:
        try:
            run()
        except error:
            return False
        return True

    insert = "INSERT INTO images (sha256, created_at, updated_at) VALUES (%s, 'now', 'now')"
    in_pg = attempt(lambda: conn.execute(insert, (value,)), errors.CheckViolation)
    in_sqlite = attempt(
        lambda: sqlite_schema.execute(insert.replace("%s", "?"), (value,)), sqlite3.IntegrityError
    )
    assert in_pg == in_sqlite == accepted
