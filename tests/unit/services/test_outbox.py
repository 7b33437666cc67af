"""Offline grading on a team store: the outbox file, the offline state, idempotent resends.

The real-server test kills a PostgreSQL server of its own (never the suite's shared one), grades
while it is down, closes the app's service as a quitting grader would, restarts the server and
checks that a new session sends what the outbox kept: once each, in order, with the time each
grade was made in the audit trail. Retries are driven by hand (the service gets a timer that
never fires), so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sall_desktop.domain.grades import (
    FieldSource,
    GraderRole,
    Grading,
    GradingSource,
    ImageRecord,
    Laterality,
    UngradableReason,
)
from sall_desktop.services.grading import (
    GradeCommand,
    GradeWrite,
    GradingService,
    SaveState,
)
from sall_desktop.services.outbox import outbox_path
from sall_desktop.store import StoreThread, StoreWriteError
from sall_desktop.store.outbox import (
    Outbox,
    OutboxEntry,
    OutboxError,
    entry_from_json,
    entry_to_json,
)
from tests.support.pg_server import PgServer
from tests.unit.services.conftest import HANG_GUARD_S, Recorder, wait_for

UNREACHABLE = (
    "Could not save the grade: the team store cannot be reached (connection refused). "
    "It is kept as pending; it will be retried."
)


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def grading(n: int, dr: int = 1, grader: str = "Dr A") -> Grading:
    return Grading(sha(n), grader, dr_grade=dr, amd_grade=0)


class NeverFires:
    """The service's retry timer in tests: records each retry it was asked for, runs none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay_s: float, fn: Callable[[], None]) -> NeverFires:
        self.delays.append(delay_s)
        return self

    def cancel(self) -> None:
        pass

    def join(self) -> None:
        pass


class Flaky:
    """A store executor over a real ``StoreThread`` whose writes fail on demand, as a network
    would: ``unreachable`` before the store is reached, ``lose_reply`` after the commit (the
    acknowledgement is lost), ``refuse`` as a store that says no. Records each UUID sent."""

    def __init__(self, thread: StoreThread) -> None:
        self.thread = thread
        self.unreachable = threading.Event()
        self.lose_reply = threading.Event()
        self.refusal: StoreWriteError | None = None
        self.sent: list[str] = []
        self.committed: list[int] = []

    @property
    def read_only(self) -> bool:
        return self.thread.read_only

    def submit(self, fn: Callable[[Any], Any]) -> Any:
        return self.thread.submit(lambda store: fn(_Proxy(store, self)))


class _Proxy:
    def __init__(self, store: Any, flaky: Flaky) -> None:
        self._store, self._flaky = store, flaky

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def add_grading(self, g: Grading, **kwargs: Any) -> int:
        flaky = self._flaky
        flaky.sent.append(kwargs["client_uuid"])
        if flaky.unreachable.is_set():
            raise StoreWriteError(UNREACHABLE, retryable=True)
        if flaky.refusal is not None:
            raise flaky.refusal
        row_id = int(self._store.add_grading(g, **kwargs))
        flaky.committed.append(row_id)
        if flaky.lose_reply.is_set():
            flaky.lose_reply.clear()
            raise StoreWriteError(UNREACHABLE.replace("connection refused", "EOF"), retryable=True)
        return row_id


@pytest.fixture
def box_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def box(box_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(box_path)
    yield outbox
    outbox.close()


@pytest.fixture
def thread(tmp_path: Path) -> Iterator[StoreThread]:
    t = StoreThread(tmp_path / "labels.sqlite3")
    yield t
    t.close()


@pytest.fixture
def flaky(thread: StoreThread) -> Flaky:
    return Flaky(thread)


def entry(n: int, **changes: Any) -> OutboxEntry:
    fields: dict[str, Any] = {
        "client_uuid": f"00000000-0000-4000-8000-{n:012d}",
        "made_at": f"2026-01-01T00:00:{n:02d}.000000+00:00",
        "sha256": sha(n),
        "grader": "Dr A",
        "grading": grading(n, dr=n % 5),
    }
    return OutboxEntry(**(fields | changes))


# ---------------------------------------------------------------------- the outbox file


def test_entries_round_trip_in_order_and_are_removed_by_uuid(box: Outbox, box_path: Path) -> None:
    full = Grading(
        sha(2),
        "Dr Ünïcode",
        gradable=False,
        ungradable_reason=UngradableReason.MEDIA_OPACITY,
        notes="cataract — see clinic",
        model_version="abc",
        role=GraderRole.ARBITER,
        source=GradingSource.ACCEPTED_PREDICTION,
    )
    record = ImageRecord(
        sha(2),
        "/data/b.dcm",
        10,
        20,
        "dicom",
        Laterality.LEFT,
        FieldSource.DICOM_TAG,
        "P1",
        FieldSource.FILENAME_RULE,
    )
    kept = [
        entry(1),
        entry(2, grader="Dr Ünïcode", grading=full, record=record, reason="undo"),
        entry(3, grading=None, reason="undo"),  # a retraction
        entry(4, test_set="calibration 1"),
    ]
    for e in kept:
        box.put(e)
    box.put(kept[0])  # a UUID already kept stays where it is, once
    assert box.entries() == kept and box.count() == 4
    assert entry_from_json(entry_to_json(kept[1])) == kept[1]

    box.remove(kept[1].client_uuid)
    box.remove("never-kept")  # harmless
    box.close()
    with Outbox(box_path) as again:  # what the next start finds
        assert again.entries() == [kept[0], kept[2], kept[3]] and again.warnings == []
        again.put(entry(5))
        assert [e.client_uuid for e in again.entries()][-1] == entry(5).client_uuid


@pytest.mark.parametrize(
    "damage",
    ["garbage", "bad_entry", "someone_elses", "newer"],
)
def test_an_unreadable_outbox_is_moved_aside_never_deleted(box_path: Path, damage: str) -> None:
    if damage == "garbage":
        box_path.write_bytes(b"this is not a database" * 100)
    else:
        Outbox(box_path).close()
        conn = sqlite3.connect(box_path, isolation_level=None)
        if damage == "bad_entry":
            conn.execute("INSERT INTO outbox (client_uuid, entry) VALUES ('u', '{\"x\": 1')")
        elif damage == "someone_elses":
            conn.execute("PRAGMA application_id = 7")
        else:
            conn.execute("PRAGMA user_version = 99")
        conn.close()
    before = box_path.read_bytes()
    with Outbox(box_path) as box:
        assert len(box.warnings) == 1 and "moved" in box.warnings[0]
        assert "\n" not in box.warnings[0]
        assert box.entries() == []
        box.put(entry(1))
        assert box.count() == 1
    aside = [p for p in box_path.parent.iterdir() if ".unreadable-" in p.name]
    assert [p for p in aside if not p.name.endswith(("-wal", "-shm"))][0].read_bytes() == before


def test_an_outbox_that_cannot_be_opened_is_an_error_and_stays_where_it_is(
    box_path: Path,
) -> None:
    box_path.mkdir()  # "unable to open": nothing says the file is bad, so it is never moved
    with pytest.raises(OutboxError, match="Could not open the outbox"):
        Outbox(box_path)
    assert box_path.is_dir() and [p.name for p in box_path.parent.iterdir()] == [box_path.name]


def test_outbox_file_is_named_by_store_never_by_password(tmp_path: Path) -> None:
    a = outbox_path(tmp_path, "postgresql://ada:secret@db.example:5432/grading")
    assert a == outbox_path(tmp_path, "postgresql://ada:other@db.example:5432/grading")
    assert a != outbox_path(tmp_path, "postgresql://ada@db.example:5432/other")
    assert "secret" not in a.name and a.parent == tmp_path


# ---------------------------------------------------------------------- the write's identity


def test_a_write_keeps_its_uuid_and_time_and_undo_redo_are_new_writes() -> None:
    command = GradeCommand(sha(1), "Dr A", grading(1, dr=1), grading(1, dr=3))
    first, undo, redo = command.redo_write(), command.undo_write(), command.redo_write(again=True)
    assert len({first.client_uuid, undo.client_uuid, redo.client_uuid}) == 3
    assert first.made_at <= undo.made_at <= redo.made_at
    assert len({GradeWrite(sha(1), "Dr A", None).client_uuid for _ in range(1000)}) == 1000


# ---------------------------------------------------------------------- the offline state


def test_offline_keeps_grading_into_the_outbox_and_a_successful_retry_drains_it(
    flaky: Flaky, box: Outbox, box_path: Path, thread: StoreThread
) -> None:
    recorder, timer = Recorder(), NeverFires()
    service = GradingService(flaky, outbox=box, timer=timer, listener=recorder)
    try:
        flaky.unreachable.set()
        futures = [service.grade(grading(n)) for n in (1, 2, 3)]
        wait_for(lambda: {sha(1), sha(2), sha(3)} <= recorder.shas_in(SaveState.OUTBOX), "offline")
        assert not service.online and service.failing and timer.delays  # a retry is scheduled
        assert service.outbox_count == 3 == box.count() and service.pending_count == 3
        assert all(service.state_of(sha(n)) is SaveState.OUTBOX for n in (1, 2, 3))
        assert not recorder.last().online and recorder.last().outbox == 3
        # What a killed app leaves behind: every write, committed to the file, in order.
        with Outbox(box_path) as left:
            assert [e.sha256 for e in left.entries()] == [sha(1), sha(2), sha(3)]
        more = service.grade(grading(4))  # the grader goes on grading
        assert service.state_of(sha(4)) is SaveState.OUTBOX and box.count() == 4

        flaky.unreachable.clear()
        service.retry()
        ids = [f.result(timeout=HANG_GUARD_S) for f in [*futures, more]]
        assert ids == sorted(ids)
        wait_for(lambda: recorder.last().outbox == 0, "the last event")
        assert service.online and not service.failing and service.outbox_count == 0 == box.count()
        assert recorder.last().online and recorder.last().state is SaveState.SAVED
        # The head was sent twice under one UUID; each write kept its own.
        assert flaky.sent[0] == flaky.sent[1] and len(set(flaky.sent)) == 4
    finally:
        service.close()


@pytest.mark.parametrize("retryable", [False, True], ids=["refused", "disk_full"])
def test_a_failure_that_is_not_unreachability_stays_failed_not_outbox(
    flaky: Flaky, box: Outbox, retryable: bool
) -> None:
    message = "Could not save the grade: the team store refused the change (signed off)."
    flaky.refusal = StoreWriteError(message, retryable=retryable)
    service = GradingService(flaky, outbox=box, timer=NeverFires())
    try:
        doomed = service.grade(grading(1))
        wait_for(lambda: service.failing, "the refusal")
        assert service.state_of(sha(1)) is SaveState.FAILED and service.online
        assert service.last_error == message and box.count() == 1  # kept until given up
        assert service.discard_failed() is not None
        with pytest.raises(StoreWriteError):
            doomed.result(timeout=HANG_GUARD_S)
        assert box.count() == 0 and service.outbox_count == 0
    finally:
        service.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "labels.sqlite3")
    return str(request.getfixturevalue("pg_url"))


def test_a_resend_after_a_lost_acknowledgement_is_stored_once(where: str, box: Outbox) -> None:
    thread = StoreThread(where)
    flaky = Flaky(thread)
    service = GradingService(flaky, outbox=box, timer=NeverFires())
    try:
        flaky.lose_reply.set()  # the store commits; the reply never reaches us
        future = service.grade(grading(1, dr=2))
        wait_for(lambda: service.failing, "the lost reply")
        assert len(flaky.committed) == 1 and not future.done() and not service.online
        assert service.state_of(sha(1)) is SaveState.OUTBOX and box.count() == 1

        service.retry()
        assert future.result(timeout=HANG_GUARD_S) == flaky.committed[0]
        rows = thread.submit(lambda s: s.grading_rows(sha(1))).result(timeout=HANG_GUARD_S)
        assert len(rows) == 1 and flaky.sent[0] == flaky.sent[1]
        audit = thread.submit(lambda s: s.audit_log(image_sha256=sha(1))).result()
        assert {a.grading_id for a in audit} == {rows[0].id}
        assert service.online and box.count() == 0
        assert thread.submit(lambda s: s.verify()).result(timeout=HANG_GUARD_S).ok
    finally:
        service.close()
        thread.close()


def test_writes_a_closed_session_left_are_sent_first_with_their_uuid_and_time(
    thread: StoreThread, box_path: Path
) -> None:
    with Outbox(box_path) as box:
        box.put(entry(1))
        box.put(entry(2, grading=grading(2, dr=4), reason="redo"))
    box = Outbox(box_path)
    service = GradingService(thread, outbox=box, timer=NeverFires())
    try:
        later = service.grade(grading(3)).result(timeout=HANG_GUARD_S)
        wait_for(lambda: service.outbox_count == 0, "the restored writes sent")
        ids = [
            thread.submit(lambda s, n=n: s.grading_rows(sha(n))).result()[0].id for n in (1, 2, 3)
        ]
        assert ids == sorted(ids) and ids[2] == later and box.count() == 0
        audit = thread.submit(lambda s: s.audit_log(image_sha256=sha(1))).result()
        assert {a.client_at_utc for a in audit} == {entry(1).made_at}
    finally:
        service.close()
        box.close()


# ---------------------------------------------------------------------- a real server goes away


def _client_backends(pg: PgServer) -> list[int]:
    rows = pg.execute_as_superuser(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
    )
    return [int(r[0]) for r in rows]


def _exited(pid: int) -> bool:
    """True once the process is gone or a zombie (a zombie serves no query)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


@pytest.mark.slow  # the pool waits its own timeout (30 s) before a save says "cannot be reached"
def test_grades_made_while_the_server_is_down_are_sent_once_when_it_is_back(
    box_path: Path,
) -> None:
    with PgServer() as pg:
        url = pg.create_database("offline")
        thread, box, recorder = StoreThread(url), Outbox(box_path), Recorder()
        service = GradingService(thread, outbox=box, timer=NeverFires(), listener=recorder)
        try:
            for f in [service.grade(grading(n)) for n in range(5)]:
                f.result(timeout=HANG_GUARD_S)
            assert service.outbox_count == 0 == box.count() and service.online

            backends = _client_backends(pg)
            pg.kill()
            # The killed postmaster's backends serve their sockets until they notice; a save
            # must not reach one of them.
            wait_for(lambda: all(_exited(p) for p in backends), "the old backends exiting")
            offline = [service.grade(grading(n)) for n in range(5, 15)]
            shas = {sha(n) for n in range(5, 15)}
            wait_for(lambda: shas <= recorder.shas_in(SaveState.OUTBOX), "the service offline")
            assert not service.online and "cannot be reached" in service.last_error
            assert service.outbox_count == 10 == box.count() == service.pending_count
            assert all(service.state_of(s) is SaveState.OUTBOX for s in shas)
            assert not any(f.done() for f in offline)
        finally:
            left = service.close()  # the grader quits while offline
            thread.close()
            box.close()
        assert [w.sha256 for w in left] == [sha(n) for n in range(5, 15)]
        made = {w.client_uuid: w.made_at for w in left}

        pg.restart()
        box = Outbox(box_path)
        assert [e.client_uuid for e in box.entries()] == list(made)
        thread, recorder = StoreThread(url), Recorder()
        service = GradingService(thread, outbox=box, timer=NeverFires(), listener=recorder)
        try:
            wait_for(lambda: service.pending_count == 0, "the outbox sent")
            assert service.online and service.outbox_count == 0 == box.count()
            assert thread.submit(lambda s: s.verify()).result(timeout=HANG_GUARD_S).ok
        finally:
            service.close()
            thread.close()
            box.close()

        with pg.connect("offline") as conn:
            total, distinct, blank = conn.execute(
                "SELECT count(*), count(DISTINCT client_uuid), count(*) - count(client_uuid) "
                "FROM gradings"
            ).fetchone()
            assert (total, distinct, blank) == (15, 15, 0)
            sent = conn.execute(
                "SELECT g.client_uuid::text, a.client_at_utc, a.at_utc FROM audit_log AS a "
                "JOIN gradings AS g ON g.id = a.grading_id "
                "WHERE g.client_uuid::text = ANY(%s) ORDER BY a.id",
                (list(made),),
            ).fetchall()
        assert list(dict.fromkeys(r[0] for r in sent)) == list(made)  # committed in order
        assert all(client == made[uuid] and server >= client for uuid, client, server in sent)


def test_a_start_that_cannot_reach_the_team_store_says_its_kept_grades_are_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sall_desktop.app import _kept_note
    from sall_desktop.services.outbox import outbox_path
    from sall_desktop.store.outbox import Outbox as OutboxFile
    from sall_desktop.store.outbox import OutboxEntry

    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path))
    url = "postgresql://grader@server.invalid/screening"
    assert _kept_note(url) == "" and _kept_note(None) == ""  # nothing kept: nothing to say
    kept = OutboxFile(outbox_path(tmp_path, url))
    grading = Grading("a" * 64, "Dr K", dr_grade=2, amd_grade=0)
    kept.put(OutboxEntry("u-1", grading.created_at, grading.image_sha256, "Dr K", grading))
    kept.close()
    assert "1 grade(s) from your last session are kept safely" in _kept_note(url)
    assert _kept_note(str(tmp_path / "labels.sqlite")) == ""  # a file is always there
