"""The team store's server crashes mid-run: every grading a workstation was told is saved is
still there afterwards, once, and the workstations carry on through the same store objects;
workstations that go offline (the grading service's outbox) send what they kept once it is back.

Each test kills a PostgreSQL server of its own (``PgServer.kill()``: SIGKILL of the postmaster,
as in a crash), never the suite's shared one. The kill comes after a set number of acknowledged
saves, counted, not timed; the restart after at least one workstation has been refused a save.
No wait here is a deadline on speed: each is a hang guard that turns a deadlock into a failure.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import psycopg
import pytest

from sall_desktop.domain.grades import Grading
from sall_desktop.services.grading import GradeWrite, GradingEvent, GradingService, SaveState
from sall_desktop.services.outbox import outbox_path
from sall_desktop.store import PgLabelStore, StoreThread, StoreWriteError, open_team_store
from sall_desktop.store.outbox import Outbox
from tests.support.pg_server import PgServer

HANG_GUARD_S = 300.0
WORKSTATIONS = 3
PER_WORKSTATION = 30
KILL_AFTER = 20
"""Acknowledged saves, all workstations together, before the server is killed: under a
workstation's own total, so every one of them is still saving when it dies."""
RESEND_TRIES = 10
"""Retryable refusals a workstation takes before the test gives up: a server that stays away
fails the test instead of a workstation retrying forever (it retries only after the restart)."""
IMAGES = [hashlib.sha256(f"fault-{i}".encode()).hexdigest() for i in range(10)]


class Outage:
    """The run's shared state: acknowledgements counted, the kill, the refusals, the restart."""

    def __init__(self, server: PgServer, kill_after: int) -> None:
        self._server = server
        self._kill_after = kill_after
        self._lock = threading.Condition()
        self.acknowledged = 0
        self.refused = 0
        self.killed = False
        self.restarted = threading.Event()

    def on_ack(self) -> None:
        # Under the lock: no other save is counted between the Nth and the kill.
        with self._lock:
            self.acknowledged += 1
            if self.acknowledged == self._kill_after:
                self._server.kill()
                self.killed = True

    def on_refused(self) -> None:
        with self._lock:
            self.refused += 1
            self._lock.notify_all()

    def wait(self, predicate: Callable[[], bool]) -> bool:
        with self._lock:
            return self._lock.wait_for(predicate, timeout=HANG_GUARD_S)


class Workstation(threading.Thread):
    """Saves gradings in a loop through its own team store (its own pool), as a GradingService
    would: a grading stays pending, under its client UUID, until ``add_grading`` returns."""

    def __init__(self, index: int, url: str, outage: Outage) -> None:
        super().__init__(name=f"workstation-{index}", daemon=True)
        self.grader = f"Dr {chr(ord('A') + index)}"
        self.url = url
        self.outage = outage
        self.acked: dict[str, int] = {}
        self.pending: list[tuple[str, Grading]] = []
        self.refusals: list[StoreWriteError] = []
        self.refused_uuids: set[str] = set()
        self.resent: dict[str, int] = {}
        """Gradings acknowledged only on a resend (same client UUID) after a refusal."""
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            store = open_team_store(self.url, app_version="fault-test")
            try:
                self._grade(store)
            finally:
                store.close()
        except BaseException as e:  # reported by the test, not lost in the thread
            self.failure = e

    def _grade(self, store: PgLabelStore) -> None:
        made = 0
        while len(self.acked) < PER_WORKSTATION:
            if not self.pending:
                sha = IMAGES[made % len(IMAGES)]
                grading = Grading(sha, self.grader, dr_grade=made % 5, amd_grade=made % 4)
                self.pending.append((str(uuid.uuid4()), grading))
                made += 1
            client_uuid, grading = self.pending[0]
            try:
                row_id = store.add_grading(
                    grading, client_uuid=client_uuid, client_at_utc=grading.created_at
                )
            except StoreWriteError as e:
                assert e.retryable, e
                self.refusals.append(e)
                self.refused_uuids.add(client_uuid)
                if len(self.refusals) > RESEND_TRIES:
                    raise
                self.outage.on_refused()
                assert self.outage.restarted.wait(HANG_GUARD_S), "the server never came back"
                continue
            self.pending.pop(0)
            if client_uuid in self.refused_uuids:
                self.resent[client_uuid] = row_id
            self.acked[client_uuid] = row_id
            self.outage.on_ack()


def stored_uuids(url: str) -> dict[str, tuple[int, int]]:
    """client UUID -> (rows holding it, lowest row id), as the server has them."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_uuid::text, count(*), min(id) FROM gradings GROUP BY 1"
        ).fetchall()
    return {str(u): (int(n), int(i)) for u, n, i in rows}


@pytest.mark.slow  # a save not under way at the crash first waits for its pool (a few s)
def test_every_acknowledged_grading_survives_a_server_crash_and_restart() -> None:
    with PgServer() as pg:
        url = pg.create_database("faults")
        open_team_store(url, app_version="fault-test").close()  # the schema, before the clients
        outage = Outage(pg, KILL_AFTER)
        stations = [Workstation(i, url, outage) for i in range(WORKSTATIONS)]
        for station in stations:
            station.start()

        # Restart once the crash has been seen by a workstation (a refused save), not before:
        # otherwise every save might only wait in its pool and no resend would be tested.
        assert outage.wait(lambda: outage.killed and outage.refused > 0), "no save was refused"
        assert not pg.running
        pg.restart()
        outage.restarted.set()
        for station in stations:
            station.join(HANG_GUARD_S)
        assert not any(s.is_alive() for s in stations), "a workstation hung"
        for station in stations:
            assert station.failure is None, f"{station.name}: {station.failure!r}"

        log = pg.log_path.read_text(encoding="utf-8", errors="replace")
        assert "not properly shut down" in log  # a real crash recovery, not a clean start

        acked = {u: i for s in stations for u, i in s.acked.items()}
        stored = stored_uuids(url)
        total = WORKSTATIONS * PER_WORKSTATION
        assert len(acked) == total
        assert [u for u in acked if u not in stored] == []  # 0 lost
        assert [u for u, (n, _) in stored.items() if n != 1] == []  # 0 duplicated
        assert {u: i for u, (_, i) in stored.items()} == acked  # same ids, nothing else stored
        assert all(not s.pending for s in stations)
        assert sum(len(s.refusals) for s in stations) >= 1
        assert sum(len(s.resent) for s in stations) >= 1  # a resend after the restart

        # The stores opened before the crash saved after it: their pools recovered. And the
        # chain the crash cut through is whole.
        store = open_team_store(url, app_version="fault-test", read_only=True)
        try:
            report = store.verify()
            assert len(store.current_gradings()) == WORKSTATIONS * len(IMAGES)
        finally:
            store.close()
        assert report.ok, report.format()
        assert report.gradings == total


# ---------------------------------------------------------------------- offline workstations

ONLINE_BATCH = 30
"""Writes each workstation queues before the crash (the kill comes part-way through them)."""
OFFLINE_BATCH = 10
"""Writes each workstation makes while the server is down: straight into its outbox."""
KILL_AFTER_SYNCED = 15
RETRY_ROUNDS = 20


class HandTimer:
    """A grading service's retry timer that never fires by itself: the retry the last failure
    asked for waits here until the test fires it (``GradingService`` calls this under its own
    lock, so it takes no other)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retry: Callable[[], None] | None = None
        self.asked = 0

    def __call__(self, delay_s: float, fn: Callable[[], None]) -> HandTimer:
        with self._lock:
            self._retry = fn
            self.asked += 1
        return self

    @property
    def armed(self) -> bool:
        with self._lock:
            return self._retry is not None

    def fire(self) -> None:
        with self._lock:
            retry, self._retry = self._retry, None
        if retry is not None:
            retry()

    def cancel(self) -> None:
        with self._lock:
            self._retry = None

    def join(self) -> None:
        pass


class Sync:
    """What the test waits on: saves acknowledged and services gone offline, from the services'
    listeners (called outside the services' locks)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.acknowledged = 0

    def saved(self) -> None:
        with self._cond:
            self.acknowledged += 1
            self._cond.notify_all()

    def poke(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool]) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout=HANG_GUARD_S)


class OfflineWorkstation:
    """A workstation as the app builds one on a team store: a StoreThread, an outbox file in
    its own data folder, a GradingService over both, and a retry timer the test drives."""

    def __init__(self, index: int, url: str, folder: Path, sync: Sync) -> None:
        self.grader = f"Dr {chr(ord('A') + index)}"
        self.sync = sync
        self.timer = HandTimer()
        self.went_offline = threading.Event()
        self.writes: list[tuple[GradeWrite, Future[int]]] = []
        folder.mkdir()
        self.box = Outbox(outbox_path(folder, url))
        self.thread = StoreThread(url, app_version="fault-test")
        self.service = GradingService(
            self.thread, outbox=self.box, timer=self.timer, listener=self._heard
        )

    def _heard(self, event: GradingEvent) -> None:
        if not event.online:
            self.went_offline.set()
        if event.row_id is not None:
            self.sync.saved()
        else:
            self.sync.poke()

    def grade(self, n: int) -> GradeWrite:
        sha = IMAGES[n % len(IMAGES)]
        write = GradeWrite(sha, self.grader, Grading(sha, self.grader, dr_grade=n % 5))
        self.writes.append((write, self.service.write(write)))
        return write

    def all_answered(self) -> bool:
        return all(future.done() for _, future in self.writes)

    def close(self) -> list[GradeWrite]:
        try:
            return self.service.close()
        finally:
            self.thread.close()
            self.box.close()


@pytest.mark.slow  # a save not under way at the crash first waits for its pool (a few s)
def test_offline_workstations_send_their_outbox_once_the_server_is_back(tmp_path: Path) -> None:
    with PgServer() as pg:
        url = pg.create_database("offline_sync")
        open_team_store(url, app_version="fault-test").close()
        sync = Sync()
        stations = [OfflineWorkstation(i, url, tmp_path / f"ws{i}", sync) for i in range(2)]
        try:
            for n in range(ONLINE_BATCH):  # queued at once: both keep saving until the crash
                for station in stations:
                    station.grade(n)
            assert sync.wait(lambda: sync.acknowledged >= KILL_AFTER_SYNCED), "no saves"
            pg.kill()
            assert sync.wait(lambda: all(s.went_offline.is_set() for s in stations)), "online?"

            # Grading goes on while the server is down: every write waits in the outbox file.
            for n in range(ONLINE_BATCH, ONLINE_BATCH + OFFLINE_BATCH):
                for station in stations:
                    write = station.grade(n)
                    assert station.service.state_of(write.sha256) is SaveState.OUTBOX
            for station in stations:
                assert not station.service.online and station.timer.asked >= 1
                kept = station.service.pending_count
                assert kept >= OFFLINE_BATCH
                assert station.service.outbox_count == kept == station.box.count()

            pg.restart()
            for _ in range(RETRY_ROUNDS):  # each round: fire the retries the failures asked for
                for station in stations:
                    station.timer.fire()
                done = sync.wait(
                    lambda: (
                        all(s.all_answered() for s in stations)
                        or any(s.timer.armed for s in stations)
                    )
                )
                assert done, "hung: neither sent nor failed again"
                if all(s.all_answered() for s in stations):
                    break
            else:
                raise AssertionError(f"still not sent after {RETRY_ROUNDS} rounds of retries")

            acked = {
                write.client_uuid: future.result(timeout=HANG_GUARD_S)
                for s in stations
                for write, future in s.writes
            }
            for station in stations:
                assert station.service.online and station.service.pending_count == 0
                assert station.service.outbox_count == 0 == station.box.count()
            report = stations[0].thread.submit(lambda store: store.verify()).result(HANG_GUARD_S)
        finally:
            left = [w for s in stations for w in s.close()]
        assert left == []

        total = len(stations) * (ONLINE_BATCH + OFFLINE_BATCH)
        stored = stored_uuids(url)
        assert len(acked) == total
        assert [u for u in acked if u not in stored] == []  # 0 lost
        assert [u for u, (n, _) in stored.items() if n != 1] == []  # 0 duplicated
        assert {u: i for u, (_, i) in stored.items()} == acked  # same ids, nothing else stored
        assert report.ok, report.format()
        assert report.gradings == total
