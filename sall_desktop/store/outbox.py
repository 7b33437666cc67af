"""The outbox: grading writes a team store has not acknowledged yet, kept on this workstation.

A small SQLite file of its own, never the label database: when the team store's server cannot
be reached the workstation goes on grading, and every write waits here, in the order it was
made, until the server acknowledged it. It is written before the write is handed to the store
and emptied only after the store's commit, so a write survives the app being closed or killed
while offline; a resend after a lost acknowledgement is harmless because each entry carries its
client-made UUID (the store writes a UUID only once).

Entries are plain data serialised as JSON (enums as their values), one row each, ordered by an
increasing ``seq``. A file that cannot be read (damaged, not SQLite, another program's, or from
a newer version) is moved aside, never deleted, with a one-line warning, and a new one started:
a person can still recover what it held.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    Grading,
    GradingSource,
    ImageRecord,
    Laterality,
    UngradableReason,
)

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the outbox file; a higher one is a newer app's: moved aside."""
APPLICATION_ID = 0x5A110B0C
"""``PRAGMA application_id``: tells our outbox from any other SQLite file at that path."""
SIDECARS = ("-wal", "-shm")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    client_uuid TEXT NOT NULL UNIQUE,
    entry TEXT NOT NULL
)
"""

UNREADABLE: tuple[type[Exception], ...] = (
    sqlite3.DatabaseError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)
"""What reading a damaged file or entry raises (JSON of the wrong shape, a refused value)."""

log = logging.getLogger(__name__)


class OutboxError(Exception):
    """The outbox file could not be written (its disk is full or read-only)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One write waiting for the team store: a grading row, or a retraction (``grading`` None).

    The fields are those of the grading service's ``GradeWrite``, less its session-local id:
    ``client_uuid`` names the write on every resend, ``made_at`` is when the grader made it (the
    audit trail's ``client_at_utc``), ``record`` the image's catalogue record sent with it, and
    ``test_set`` the set when the write is a test answer ("" for a grading).
    """

    client_uuid: str
    made_at: str
    sha256: str
    grader: str
    grading: Grading | None
    reason: str = "grade"
    record: ImageRecord | None = None
    test_set: str = ""


def entry_to_json(entry: OutboxEntry) -> str:
    """The entry as one JSON object (enums as their values: they are ``StrEnum``)."""
    return json.dumps(asdict(entry), sort_keys=True, separators=(",", ":"))


def entry_from_json(text: str) -> OutboxEntry:
    """Parse :func:`entry_to_json`'s output; one of :data:`UNREADABLE` when it cannot."""
    data = json.loads(text)
    grading, record = data.pop("grading"), data.pop("record")
    return OutboxEntry(
        **data,
        grading=None if grading is None else _grading(grading),
        record=None if record is None else _record(record),
    )


def _grading(data: dict[str, Any]) -> Grading:
    reason = data["ungradable_reason"]
    return Grading(
        **{
            **data,
            "role": GraderRole(data["role"]),
            "source": GradingSource(data["source"]),
            "ungradable_reason": None if reason is None else UngradableReason(reason),
        }
    )


def _record(data: dict[str, Any]) -> ImageRecord:
    return ImageRecord(
        **{
            **data,
            "laterality": Laterality(data["laterality"]),
            "laterality_source": FieldSource(data["laterality_source"]),
            "patient_id_source": FieldSource(data["patient_id_source"]),
        }
    )


class Outbox:
    """The outbox file at ``path``: ``put`` before sending, ``remove`` once acknowledged.

    Thread-safe: the GUI thread puts (the write must be on disk before anything else happens to
    it) and the store thread removes. Each ``put``/``remove`` is one fsynced commit (WAL,
    ``synchronous=FULL``).

    Attributes:
        path: the file.
        warnings: one line per problem met on opening (a file moved aside), for the GUI.

    Raises:
        OutboxError: the file cannot be opened at all (locked, no permission, the folder is
            read-only); a file that opens but cannot be read is moved aside instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = self._open()
            except sqlite3.OperationalError:
                raise  # locked or no permission: the file may be fine, never move it aside
            except UNREADABLE as err:
                # Damaged, someone else's, or newer: keep it for a person, and start afresh.
                self._start_afresh(err)
        except (OSError, sqlite3.Error) as err:
            raise OutboxError(f"Could not open the outbox {self.path}: {err}") from err

    # ------------------------------------------------------------------ API
    def put(self, entry: OutboxEntry) -> None:
        """Keep ``entry`` after the others (a UUID already kept is left where it is).

        Raises:
            OutboxError: it could not be written; the caller still holds it in memory.
        """
        with self._lock, self._writing("keep the grade in the outbox"):
            self._conn.execute(
                "INSERT OR IGNORE INTO outbox (client_uuid, entry) VALUES (?, ?)",
                (entry.client_uuid, entry_to_json(entry)),
            )

    def remove(self, client_uuid: str) -> None:
        """Forget the entry: the team store acknowledged it (or the grader gave it up)."""
        with self._lock, self._writing("empty the outbox"):
            self._conn.execute("DELETE FROM outbox WHERE client_uuid = ?", (client_uuid,))

    def entries(self) -> list[OutboxEntry]:
        """Every entry, oldest first (the order the writes were made)."""
        with self._lock:
            rows = self._conn.execute("SELECT entry FROM outbox ORDER BY seq").fetchall()
        return [entry_from_json(str(r[0])) for r in rows]

    def count(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT count(*) FROM outbox").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file (idempotent); what it holds stays for the next start."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _open(self) -> sqlite3.Connection:
        # check_same_thread off: our own lock serialises the GUI's puts and the store's removes.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a put is on disk when it returns, so a kill right after loses nothing.
            conn.execute("PRAGMA synchronous = FULL")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            if version == 0 and app_id == 0:
                self._create(conn)
            elif app_id != APPLICATION_ID or version != SCHEMA_VERSION:
                raise ValueError(
                    f"not an outbox of this version (application id {app_id:#x}, version {version})"
                )
            rows = conn.execute("SELECT entry FROM outbox ORDER BY seq").fetchall()
            for row in rows:  # an entry that does not parse now would fail at every start
                entry_from_json(str(row[0]))
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        if conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
            raise ValueError("another program's SQLite file")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_SCHEMA)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield
            self._conn.execute("COMMIT")
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise OutboxError(f"Could not {what} ({self.path}): {err}") from err

    def _start_afresh(self, err: BaseException) -> None:
        aside = self._move_aside()
        message = (
            f"The outbox {self.path} could not be read ({_first_line(err)}); it was moved "
            f"to {aside.name} and a new one started."
        )
        log.warning(message)
        self.warnings.append(message)
        self._conn = self._open()

    def _move_aside(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.unreadable-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.unreadable-{stamp}-{n}")
        # The WAL may hold the newest entries: it goes with its file, under the same name.
        for suffix in SIDECARS:
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.replace(aside.with_name(aside.name + suffix))
        self.path.replace(aside)
        return aside


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
