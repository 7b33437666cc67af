"""The suite's throwaway PostgreSQL server (tests/support/pg_server.py) and its fixtures."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import psycopg
import pytest

import tests.support.pg_server as pg_server_module
from tests.support.pg_fixtures import database_name, fresh_database
from tests.support.pg_server import PgServer


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    with PgServer() as pg:
        yield pg


def test_it_accepts_connections_on_loopback_as_the_superuser(server: PgServer) -> None:
    assert server.superuser_url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    with psycopg.connect(server.superuser_url) as conn:
        row = conn.execute(
            "SELECT current_user, current_setting('listen_addresses'),"
            " current_setting('fsync'), current_setting('synchronous_commit'),"
            " current_setting('max_connections')"
        ).fetchone()
    assert row == ("postgres", "127.0.0.1", "on", "on", "200")
    assert server.execute_as_superuser("SELECT 1") == [(1,)]
    assert server.execute_as_superuser("SET search_path = public") == []


def test_create_database_gives_an_empty_utf8_database(server: PgServer) -> None:
    url = server.create_database("created_by_test")
    assert url == server.url("created_by_test")
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog',"
            " 'information_schema')"
        ).fetchone()
        encoding = conn.execute("SHOW server_encoding").fetchone()
    assert tables == (0,)
    assert encoding == ("UTF8",)
    server.drop_database("created_by_test")


def test_a_fresh_database_is_dropped_even_with_a_connection_left_open(server: PgServer) -> None:
    with fresh_database(server, "test_leaky[param-1]") as url:
        name = url.rsplit("/", 1)[1]
        leaked = psycopg.connect(url)
        leaked.execute("CREATE TABLE t (x int)")
        leaked.commit()
    try:
        left = server.execute_as_superuser(
            "SELECT count(*) FROM pg_database WHERE datname = %s", [name]
        )
        assert left == [(0,)]
    finally:
        leaked.close()


def test_database_names_are_unique_valid_identifiers() -> None:
    names = [database_name("Test Something[ä-" + "x" * 100 + "]") for _ in range(3)]
    assert len(set(names)) == 3
    for name in names:
        assert len(name) <= 63
        assert name == name.lower()
        assert all(c.isalnum() or c == "_" for c in name)


def test_a_committed_row_survives_sigkill_and_restart() -> None:
    with PgServer() as pg:
        url = pg.create_database("durable")
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (42)")
        port, data_dir, old_pid = pg.port, pg.data_dir, pg.pid

        pg.kill()
        assert not pg.running
        # The killed postmaster leaves its pid file behind; the restart must cope with it.
        assert (data_dir / "postmaster.pid").exists()
        conn.close()

        pg.restart()
        assert (pg.port, pg.data_dir) == (port, data_dir)
        assert pg.pid != old_pid
        log = pg.log_path.read_text(encoding="utf-8", errors="replace")
        assert "not properly shut down" in log
        with psycopg.connect(url) as conn2:
            assert conn2.execute("SELECT x FROM t").fetchall() == [(42,)]


def test_start_moves_to_another_port_when_its_pick_is_taken_and_stop_cleans_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = [taken]
        real_free_port = pg_server_module.free_port

        def pick() -> int:
            return picks.pop() if picks else real_free_port()

        monkeypatch.setattr(pg_server_module, "free_port", pick)
        pg = PgServer()
        pg.start()
        try:
            assert pg.port != taken
            assert "Address already in use" in pg.log_path.read_text(errors="replace")
            base = pg.data_dir.parent
            assert pg.execute_as_superuser("SELECT 1") == [(1,)]
        finally:
            pg.stop()
    assert not base.exists()
    assert not pg.running
