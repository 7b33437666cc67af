"""GradingService: ordered, acknowledged writes; failures kept pending and retried; undo as data."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import Grading, ImageRecord
from sall_desktop.services.grading import (
    GradeCommand,
    GradingService,
    ReadOnlyError,
    SaveState,
)
from sall_desktop.store import SqliteLabelStore, StoreThread, StoreWriteError
from tests.unit.services.conftest import HANG_GUARD_S, Recorder, wait_for


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def grading(n: int, dr: int = 1, amd: int = 0, grader: str = "Dr A") -> Grading:
    return Grading(sha(n), grader, dr_grade=dr, amd_grade=amd)


@pytest.fixture
def store_thread(tmp_path: Path) -> Iterator[StoreThread]:
    thread = StoreThread(tmp_path / "labels.sqlite3")
    yield thread
    thread.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def service(store_thread: StoreThread, recorder: Recorder) -> Iterator[GradingService]:
    s = GradingService(store_thread, retry_delays=(3600.0,), listener=recorder)
    yield s
    s.close()


class DiskFull:
    """Make the store's ``add_grading`` fail like a full disk until ``heal()``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, retryable: bool = True) -> None:
        original = SqliteLabelStore.add_grading
        self.failing = threading.Event()
        self.failing.set()
        self.attempts = 0

        def add_grading(store: SqliteLabelStore, g: Grading, **kwargs: object) -> int:
            if self.failing.is_set():
                self.attempts += 1
                raise StoreWriteError(
                    "Could not save the grade: the disk is full.", retryable=retryable
                )
            return original(store, g, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(SqliteLabelStore, "add_grading", add_grading)

    def heal(self) -> None:
        self.failing.clear()


def test_a_write_is_acknowledged_only_after_commit(service, store_thread, recorder) -> None:  # type: ignore[no-untyped-def]
    record = ImageRecord(sha(1), "/data/a_left.jpg", 10, 10)
    row_id = service.grade(grading(1, dr=3), record=record).result(timeout=HANG_GUARD_S)
    assert row_id > 0
    stored = store_thread.submit(lambda s: s.current_grading(sha(1), "Dr A")).result()
    assert stored is not None and stored.dr_grade == 3
    assert store_thread.submit(lambda s: s.get_image(sha(1))).result().path == "/data/a_left.jpg"
    assert recorder.states(sha(1)) == [SaveState.PENDING, SaveState.SAVED]
    assert service.state_of(sha(1)) is SaveState.SAVED and service.pending_count == 0


def test_writes_commit_in_the_order_they_were_made(service, store_thread) -> None:  # type: ignore[no-untyped-def]
    futures = [service.grade(grading(1, dr=d)) for d in (0, 1, 2, 3, 4, 2)]
    ids = [f.result(timeout=HANG_GUARD_S) for f in futures]
    assert ids == sorted(ids)
    assert store_thread.submit(lambda s: s.current_grading(sha(1), "Dr A")).result().dr_grade == 2


def test_refused_write_stays_pending_blocks_later_writes_and_retry_commits_in_order(
    service, store_thread, recorder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    disk = DiskFull(monkeypatch)
    # The store thread waits until all three are queued, so the first failure meets them all
    # whatever the machine's load (no race between this thread and the store's).
    gate = threading.Event()
    store_thread.submit(lambda _store: gate.wait(HANG_GUARD_S))
    first = service.grade(grading(1, dr=1))
    second = service.grade(grading(1, dr=4))
    other = service.grade(grading(2, dr=2))
    gate.set()
    wait_for(lambda: service.failing, "the first write failing")
    assert service.failing and "disk is full" in service.last_error
    assert service.pending_count == 3 and not first.done()
    assert (
        service.state_of(sha(1)) is SaveState.FAILED
        and service.state_of(sha(2)) is SaveState.PENDING
    )
    assert disk.attempts == 1  # later writes wait behind the failed one: order is kept
    failed_events = [e for e in recorder.events if e.error]
    assert failed_events and failed_events[-1].pending == 3

    disk.heal()
    service.retry()
    assert [f.result(timeout=HANG_GUARD_S) for f in (first, second, other)] == sorted(
        f.result() for f in (first, second, other)
    )
    assert store_thread.submit(lambda s: s.current_grading(sha(1), "Dr A")).result().dr_grade == 4
    assert not service.failing and service.pending_count == 0 and service.last_error == ""


def test_automatic_retry_with_back_off(store_thread, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    service = GradingService(store_thread, retry_delays=(0.05, 0.1))
    try:
        disk = DiskFull(monkeypatch)
        future = service.grade(grading(1))
        wait_for(lambda: disk.attempts >= 3, "two automatic retries")
        assert not future.done()
        disk.heal()
        assert future.result(timeout=HANG_GUARD_S) > 0
    finally:
        service.close()


def test_discarding_a_failed_write_lets_the_queue_go_on(service, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    disk = DiskFull(monkeypatch, retryable=False)
    doomed = service.grade(grading(1))
    later = service.grade(grading(2))
    wait_for(lambda: service.failing, "the first write failing")
    disk.heal()
    discarded = service.discard_failed()
    assert discarded is not None and discarded.sha256 == sha(1)
    with pytest.raises(StoreWriteError):
        doomed.result(timeout=HANG_GUARD_S)
    assert later.result(timeout=HANG_GUARD_S) > 0


def test_undo_and_redo_append_rows_never_delete(service, store_thread) -> None:  # type: ignore[no-untyped-def]
    before = grading(1, dr=1)
    service.grade(before).result(timeout=HANG_GUARD_S)
    after = grading(1, dr=3)
    command = GradeCommand(sha(1), "Dr A", before, after)
    service.apply(command).result(timeout=HANG_GUARD_S)
    service.revert(command).result(timeout=HANG_GUARD_S)
    assert store_thread.submit(lambda s: s.current_grading(sha(1), "Dr A")).result().dr_grade == 1
    service.apply(command, again=True).result(timeout=HANG_GUARD_S)
    assert store_thread.submit(lambda s: s.current_grading(sha(1), "Dr A")).result().dr_grade == 3
    first_time = GradeCommand(sha(2), "Dr A", None, grading(2))
    service.apply(first_time).result(timeout=HANG_GUARD_S)
    service.revert(first_time).result(timeout=HANG_GUARD_S)  # no earlier grading: a retraction
    assert store_thread.submit(lambda s: s.current_grading(sha(2), "Dr A")).result() is None
    rows = store_thread.submit(lambda s: s.grading_rows(sha(1)) + s.grading_rows(sha(2))).result()
    assert [r.retracted for r in rows] == [False, False, False, False, False, True]
    undo = command.undo_write()
    assert undo.reason == "undo" and undo.grading is not None
    assert undo.grading.created_at >= before.created_at and undo.grading.dr_grade == 1


def test_read_only_store_refuses_at_once(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite3"
    writer = StoreThread(path)
    writer.wait_open()  # the writer must hold the lock before the second opener comes
    reader = StoreThread(path)  # the second opener of the same database is read-only (R2)
    service = GradingService(reader)
    try:
        assert service.read_only
        with pytest.raises(ReadOnlyError):
            service.grade(grading(1)).result(timeout=HANG_GUARD_S)
        assert service.pending_count == 0
    finally:
        service.close()
        reader.close()
        writer.close()


def test_close_returns_unsaved_writes_and_leaves_no_thread(store_thread, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    before = set(threading.enumerate())
    service = GradingService(store_thread, retry_delays=(0.05,))
    DiskFull(monkeypatch)
    future = service.grade(grading(1))
    wait_for(lambda: service.failing, "the first write failing")
    left = service.close()
    assert [w.sha256 for w in left] == [sha(1)] and future.cancelled()
    assert not [t for t in threading.enumerate() if t not in before and t.name == "grading-retry"]
    with pytest.raises(RuntimeError):
        service.grade(grading(2))


def test_settings_and_graders_round_trip(service) -> None:  # type: ignore[no-untyped-def]
    service.add_grader("Dr B").result(timeout=HANG_GUARD_S)
    service.add_grader("Dr B").result(timeout=HANG_GUARD_S)  # idempotent
    assert service.graders().result(timeout=HANG_GUARD_S) == ["Dr B"]
    service.remember({"gui.last_image": sha(3)}).result(timeout=HANG_GUARD_S)
    assert service.recall("gui.last_image", "missing").result(timeout=HANG_GUARD_S) == {
        "gui.last_image": sha(3),
        "missing": None,
    }
    service.grade(grading(5, grader="Dr B")).result(timeout=HANG_GUARD_S)
    assert set(service.current_gradings("Dr B").result(timeout=HANG_GUARD_S)) == {sha(5)}
