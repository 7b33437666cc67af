"""The workstation's lease keeper on a real store, with a fake clock and a submit that runs each
job at once; and a grader's queue leaving out the images other graders hold.

No sleeps and no deadlines: time moves only when a test moves the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.leases import LeaseKeeper
from sall_desktop.services.programme import load_state
from sall_desktop.services.work_queue import ALL_IMAGES, WorkQueue
from sall_desktop.store import SqliteLabelStore, StoreWriteError, open_store

T0 = datetime(2026, 12, 7, 20, 46, 6, 368791, tzinfo=UTC)
PRIMARY, SECONDARY = GraderRole.PRIMARY, GraderRole.SECONDARY


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLabelStore]:
    with open_store(tmp_path / "labels.sqlite3", app_version="9.9.9-test") as s:
        yield s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keeper_for(store: SqliteLabelStore, clock: Clock) -> Callable[..., LeaseKeeper]:
    """``keeper_for(grader, workstation="ws-1")``: a keeper whose jobs run at once."""

    def submit(fn: Callable[[SqliteLabelStore], Any]) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(store))
        except Exception as err:  # the future carries it, as the store thread's does
            done.set_exception(err)
        return done

    def build(grader: str, workstation: str = "ws-1") -> LeaseKeeper:
        return LeaseKeeper(submit, grader, workstation=workstation, clock=clock, ttl_s=300)

    return build


def test_holding_an_image_keeps_others_off_it_in_that_role(keeper_for, store) -> None:
    a, b = keeper_for("Dr A"), keeper_for("Dr B", "ws-2")
    assert a.hold(_sha("x"), PRIMARY).result() is True
    assert a.held is not None and a.held.image_sha256 == _sha("x")
    assert b.hold(_sha("x"), PRIMARY).result() is False and b.held is None
    assert b.hold(_sha("x"), SECONDARY).result() is True  # another role is free
    assert b.skip_set(PRIMARY).result() == frozenset({_sha("x")})
    assert a.skip_set(PRIMARY).result() == frozenset()  # never one's own
    assert a.skip_set(SECONDARY).result() == frozenset({_sha("x")})


def test_moving_to_another_image_releases_the_previous_one(keeper_for, store, clock) -> None:
    a, b = keeper_for("Dr A"), keeper_for("Dr B", "ws-2")
    a.hold(_sha("x"), PRIMARY).result()
    a.hold(_sha("y"), PRIMARY).result()
    assert [x.image_sha256 for x in store.leases(now=clock())] == [_sha("y")]
    assert b.hold(_sha("x"), PRIMARY).result() is True
    assert a.hold(_sha("y"), PRIMARY).result() is True  # the same image again: a renewal
    assert len(store.leases(now=clock())) == 2


def test_renewal_happens_only_near_expiry(keeper_for, store, clock) -> None:
    a = keeper_for("Dr A")
    assert a.renew_due().result() is True  # nothing held, nothing to do
    a.hold(_sha("x"), PRIMARY).result()
    first = a.held
    clock.advance(150)  # 150 s left, over the 120 s margin: not due
    assert a.renew_due().result() is True and a.held == first
    clock.advance(60)  # 90 s left: renewed for another 300 s from now
    assert a.renew_due().result() is True
    assert a.held is not None and a.held.remaining_s(clock()) == 300
    assert a.held.acquired_at == first.acquired_at


def test_a_lease_lost_while_away_is_reported(keeper_for, clock) -> None:
    a, b = keeper_for("Dr A"), keeper_for("Dr B", "ws-2")
    a.hold(_sha("x"), PRIMARY).result()
    clock.advance(301)  # the workstation slept past the lease's end
    assert b.hold(_sha("x"), PRIMARY).result() is True
    assert a.renew_due().result() is False and a.held is None
    assert a.renew_due().result() is True  # reported once: nothing is held now


def test_expired_leases_of_others_leave_the_skip_set(keeper_for, clock) -> None:
    a, b = keeper_for("Dr A"), keeper_for("Dr B", "ws-2")
    b.hold(_sha("x"), PRIMARY).result()
    assert a.skip_set(PRIMARY).result() == {_sha("x")}
    clock.advance(300)
    assert a.skip_set(PRIMARY).result() == frozenset()


def test_release_all_frees_this_workstation_only(keeper_for, store, clock) -> None:
    here, there = keeper_for("Dr A"), keeper_for("Dr A", "ws-2")
    here.hold(_sha("x"), PRIMARY).result()
    there.hold(_sha("y"), PRIMARY).result()
    assert here.release_all().result() == 1 and here.held is None
    assert [x.image_sha256 for x in store.leases(now=clock())] == [_sha("y")]
    assert here.release_all().result() == 0


def test_a_failed_claim_is_carried_by_the_future(keeper_for, store) -> None:
    a = keeper_for("Dr A")
    store.close()
    failed = a.hold(_sha("x"), PRIMARY)
    assert isinstance(failed.exception(), StoreWriteError) and a.held is None


def test_the_workstation_defaults_to_the_host_name_and_the_margin_must_fit() -> None:
    import socket

    def submit(fn: Any) -> Any:
        raise AssertionError("nothing is submitted")

    assert LeaseKeeper(submit, "Dr A").workstation == socket.gethostname()
    with pytest.raises(ValueError, match="margin"):
        LeaseKeeper(submit, "Dr A", ttl_s=60, renew_margin_s=60)


# ---------------------------------------------------------------- the queue


def _entry(name: str) -> ImageEntry:
    record = ImageRecord(sha256=_sha(name), path=f"/study/{name}.jpg", file_format="jpeg")
    return ImageEntry(record.path, record=record)


def test_the_queue_leaves_out_images_other_graders_hold(store, keeper_for) -> None:
    store.set_programme_rules(RoutingRules(normal_fraction=0.0), actor="QA")
    for grader in ("Dr A", "Dr B"):
        store.set_programme_role(grader, ProgrammeRole.PRIMARY, actor="QA")
    store.add_grading(Grading(_sha("done"), "Dr A", dr_grade=0, amd_grade=0))
    entries = [_entry(n) for n in ("a", "b", "c", "done")]
    keeper_for("Dr B", "ws-2").hold(_sha("b"), PRIMARY).result()

    work = WorkQueue()
    work.set_grader("Dr A")
    work.set_state(load_state(store))
    work.choose(PRIMARY)
    assert [c.text for c in work.choices(entries)] == [ALL_IMAGES, "Primary — 3 to grade"]
    work.set_leased(PRIMARY, keeper_for("Dr A").skip_set(PRIMARY).result())
    work.set_leased(SECONDARY, frozenset({_sha("a")}))  # another level's leases change nothing
    assert [e.sha256 for e in entries if work.in_work(e)] == [_sha(n) for n in ("a", "c", "done")]
    assert [c.text for c in work.choices(entries)] == [ALL_IMAGES, "Primary — 2 to grade"]
    # The grader's own graded image stays in their queue even if another grader holds it.
    work.set_leased(PRIMARY, frozenset({_sha("b"), _sha("done")}))
    assert work.in_work(entries[3])
    work.choose(None)  # every image: leases do not hide anything there
    assert all(work.in_work(e) for e in entries)
    work.choose(PRIMARY)
    work.set_grader("Dr B")  # another grader: the previous grader's "others" are forgotten
    work.choose(PRIMARY)
    assert work.in_work(entries[1])
