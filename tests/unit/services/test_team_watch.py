"""TeamWatch: a cursor over the gradings rows, so a workstation sees the others' saves."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from sall_desktop.domain.grades import Grading
from sall_desktop.services.team_watch import TeamWatch
from sall_desktop.store import SqliteLabelStore, open_store

SHA = [hashlib.sha256(f"w{i}".encode()).hexdigest() for i in range(5)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLabelStore]:
    s = open_store(tmp_path / "labels.sqlite", app_version="test")
    yield s
    s.close()


def _now(store: SqliteLabelStore) -> Callable[[Callable[[Any], Any]], Future[Any]]:
    def submit(fn: Callable[[Any], Any]) -> Future[Any]:
        out: Future[Any] = Future()
        out.set_result(fn(store))
        return out

    return submit


def test_the_first_poll_finds_the_place_and_later_ones_bring_the_news(store) -> None:
    store.add_grading(Grading(SHA[0], "Dr A", dr_grade=1, amd_grade=0))  # history: not news
    watch = TeamWatch(_now(store), limit=2)
    first = watch.poll().result()
    assert first.rows == () and watch.cursor == first.cursor == store.last_grading_id()
    store.add_grading(Grading(SHA[1], "Dr B", dr_grade=2, amd_grade=0))
    store.add_grading(Grading(SHA[1], "Dr A", dr_grade=3, amd_grade=0))
    store.add_grading(Grading(SHA[2], "Dr A", dr_grade=0, amd_grade=0))
    news = watch.poll().result()
    assert news.more and [(r.image_sha256, r.grader) for r in news.rows] == [
        (SHA[1], "Dr B"),
        (SHA[1], "Dr A"),
    ]
    assert news.images == {SHA[1]}
    rest = watch.poll().result()
    assert not rest.more and rest.images == {SHA[2]}
    store.retract_grading(SHA[2], "Dr A")
    gone = watch.poll().result()
    assert gone.current_of("Dr A") == {SHA[2]: None} and gone.current_of("Dr B") == {}
    assert watch.poll().result().rows == ()


def test_a_failed_poll_asks_again_from_the_same_place_and_polls_never_pile_up(store) -> None:
    pending: list[tuple[Future[Any], Callable[[Any], Any]]] = []

    def later(fn: Callable[[Any], Any]) -> Future[Any]:
        out: Future[Any] = Future()
        pending.append((out, fn))
        return out

    watch = TeamWatch(later)
    first = watch.poll()
    assert watch.poll() is first and len(pending) == 1  # one read out at a time
    out, fn = pending.pop()
    out.set_result(fn(store))
    store.add_grading(Grading(SHA[3], "Dr B", dr_grade=1, amd_grade=0))
    failed = watch.poll()
    pending.pop()[0].set_exception(OSError("server away"))
    assert failed.exception() is not None and watch.cursor == 0
    again = watch.poll()
    out, fn = pending.pop()
    out.set_result(fn(store))
    assert again.result().images == {SHA[3]}
