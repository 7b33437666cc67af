"""The inference bridge hands a running batch's progress and predictions to the GUI in
coalesced ticks, on the GUI thread, and every prediction arrives before the run's end."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QThread

from sall_desktop.services.inference_values import BatchProgress, BatchResult
from tests.gui.conftest import WAIT_MS, WAIT_S


class _FakeService:
    """Posts many small updates from a worker thread, as batch grading does per commit."""

    def __init__(self, posts: int, rows_per_post: int) -> None:
        self.posts, self.rows_per_post = posts, rows_per_post
        self.posted = threading.Event()
        self.release = threading.Event()
        self.thread: threading.Thread | None = None

    def grade_folder(self, paths: list[str], known: dict[str, str], **kw: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            for n in range(self.posts):
                rows = [f"row{n}.{i}" for i in range(self.rows_per_post)]
                kw["on_predictions"](rows)
                kw["on_progress"](BatchProgress(n + 1, self.posts, 0, 0, 0.1 * (n + 1)))
            self.posted.set()
            self.release.wait(WAIT_S)
            future.set_result(BatchResult("model", self.posts * self.rows_per_post, 0))

        self.thread = threading.Thread(target=run)
        self.thread.start()
        return future


def test_batch_updates_are_coalesced_and_all_arrive_before_the_end(qtbot: Any) -> None:
    from sall_desktop.gui.inference_bridge import InferenceBridge

    service = _FakeService(posts=40, rows_per_post=3)
    bridge = InferenceBridge(service)  # type: ignore[arg-type]
    gui_thread = QThread.currentThread()
    deliveries: list[tuple[str, Any]] = []

    def record(kind: str) -> Any:
        def slot(payload: Any) -> None:
            assert QThread.currentThread() is gui_thread
            deliveries.append((kind, payload))

        return slot

    bridge.batch_predictions.connect(record("predictions"))
    bridge.batch_progress.connect(record("progress"))
    bridge.batch_finished.connect(record("finished"))
    assert bridge.grade_folder(["a.jpg"], {})
    assert not bridge.grade_folder(["a.jpg"], {})  # one run at a time
    # Every post is made before the run may end: the first tick shows them all at once. The GUI
    # thread waits here (no tick can run) until they are, however slowly the worker posts.
    assert service.posted.wait(WAIT_S)
    qtbot.waitUntil(lambda: any(kind == "progress" for kind, _ in deliveries), timeout=WAIT_MS)
    service.release.set()
    qtbot.waitUntil(lambda: bool(deliveries) and deliveries[-1][0] == "finished", timeout=WAIT_MS)
    assert service.thread is not None
    service.thread.join()

    rows = [row for kind, batch in deliveries if kind == "predictions" for row in batch]
    assert rows == [f"row{n}.{i}" for n in range(40) for i in range(3)]  # all, in order
    batches = [batch for kind, batch in deliveries if kind == "predictions"]
    assert len(batches) < 40  # coalesced, not one delivery per post
    progress = [p for kind, p in deliveries if kind == "progress"]
    assert progress and progress[-1].done == 40  # the newest progress, not a backlog
    assert len(progress) < 40
    assert not bridge.batch_running
