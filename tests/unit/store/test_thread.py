"""StoreThread: one connection on one thread; futures resolve after commit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sall_desktop.store import StoreError, StoreThread, StoreWriteError


def test_all_work_runs_in_order_on_one_thread(db_path: Path, grading) -> None:
    thread = StoreThread(db_path, app_version="1.2.3")
    try:
        assert thread.read_only is False and thread.read_only_reason == ""
        assert thread.warnings == [] and thread.unclean_shutdown is False
        names = [thread.submit(lambda s: threading.current_thread().name) for _ in range(3)]
        ids = [thread.submit(lambda s, i=i: s.add_grading(grading(i))) for i in range(5)]
        assert [f.result() for f in ids] == sorted(f.result() for f in ids)
        assert len({f.result() for f in names}) == 1
        assert names[0].result() != threading.current_thread().name
        assert thread.submit(lambda s: len(s.current_gradings())).result() == 5
        assert thread.submit(lambda s: s.audit_log()[0].app_version).result() == "1.2.3"
    finally:
        thread.close()


def test_errors_arrive_in_the_future(db_path: Path, grading) -> None:
    thread = StoreThread(db_path)
    try:
        future = thread.submit(lambda s: s.retract_grading(grading(1).image_sha256, "Dr A"))
        with pytest.raises(StoreWriteError, match="no grade"):
            future.result()
        assert thread.submit(lambda s: s.add_grading(grading(1))).result() >= 1  # still usable
    finally:
        thread.close()


def test_second_store_thread_is_read_only(db_path: Path) -> None:
    first = StoreThread(db_path)
    first.wait_open()
    second = StoreThread(db_path)
    try:
        assert first.read_only is False
        assert second.read_only is True and "Another" in second.read_only_reason
    finally:
        second.close()
        first.close()


def test_close_finishes_queued_writes_then_refuses(db_path: Path, grading) -> None:
    thread = StoreThread(db_path)
    futures = [thread.submit(lambda s, i=i: s.add_grading(grading(i))) for i in range(20)]
    thread.close()
    assert all(f.done() and f.exception() is None for f in futures)
    thread.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        thread.submit(lambda s: None)
    reopened = StoreThread(db_path)
    try:
        assert reopened.submit(lambda s: len(s.current_gradings())).result() == 20
        assert reopened.unclean_shutdown is False
    finally:
        reopened.close()


def test_an_open_failure_reaches_every_caller(tmp_path: Path) -> None:
    thread = StoreThread(tmp_path / "missing.sqlite3", read_only=True)
    try:
        with pytest.raises(StoreError, match="no label database"):
            thread.wait_open()
        with pytest.raises(StoreError, match="no label database"):
            thread.submit(lambda s: s.graders()).result()
    finally:
        thread.close()
