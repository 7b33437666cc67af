"""Triage queue on big folders (issue 6, P6): how long a ranking holds the GUI thread.

Prints, measured in this one run (offscreen Qt, the real ``TriageController`` over a stand-in
for the image list whose images all have a prediction), for 10,000 and 30,000 images:
- a cold ranking (every score computed: a new ordering or a new model version) run whole, as
  before it was sliced, and the longest slice of the same ranking run in slices (goal < 50 ms);
- a warm ranking (scores kept, 128 new predictions: batch grading) run whole;
- one full garbage collection with the folder's objects in the collector's reach, and with them
  frozen out of it as the app does once a folder is scanned
  (``sall_desktop.gui.collector.settle``) and a ranking's scores made since.
  The app defers full collections to a pause in input (``IdleCollector``); the rankings here
  run with automatic full collections off likewise, so they time the ranking alone.

Run: ``.venv/bin/python benchmarks/bench_triage.py``.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QObject, QTimer, Signal  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from sall_desktop.domain.predictions import Prediction  # noqa: E402
from sall_desktop.gui import collector  # noqa: E402
from sall_desktop.gui.triage_controller import TriageController  # noqa: E402
from sall_desktop.gui.triage_panel import TriagePanel  # noqa: E402
from sall_desktop.services.inference import summarize  # noqa: E402
from sall_desktop.services.triage import TriageOrder  # noqa: E402


class Images(QObject):
    """The part of the image list the triage controller reads."""

    modelReset = Signal()  # noqa: N815 - Qt's name
    work_changed = Signal()
    blind = False  # blind-first off: the model orders the queue

    def in_work(self, _entry: object) -> bool:
        return True  # no work queue chosen: every image

    def __init__(self, n: int) -> None:
        super().__init__()
        self.items = [SimpleNamespace(path=f"/d/{i:06d}.jpg", sha256=f"{i:064x}") for i in range(n)]
        for i, e in enumerate(self.items):
            e.gradable_image, e.grading = True, None
            self.predict(e, (i % 89 + 1) / 400)

    def predict(self, entry: Any, p: float) -> None:
        dr = (1 - 4 * p, p, p, p, p)
        entry.prediction = summarize(Prediction(entry.sha256, "m" * 64, {"dr": dr}))

    def entries(self) -> list[Any]:
        return list(self.items)

    def shown_prediction(self, entry: Any) -> Any:
        return entry.prediction


def slices_of(controller: TriageController) -> list[float]:
    """Run one sliced ranking to its end; the GUI-thread time of each slice, in ms."""
    spans: list[float] = []
    original = controller._next_slice

    def timed() -> None:
        start = time.perf_counter()
        original()
        spans.append((time.perf_counter() - start) * 1000)

    controller._slices.timeout.disconnect()
    controller._slices.timeout.connect(timed)
    start = time.perf_counter()
    controller.refresh()  # its first slice runs inside refresh()
    spans.append((time.perf_counter() - start) * 1000)
    waiter = QEventLoop()
    poll = QTimer(interval=1)
    poll.timeout.connect(lambda: None if controller.ranking else waiter.quit())
    poll.start()
    waiter.exec()
    poll.stop()
    return spans


def full_collection_ms() -> float:
    start = time.perf_counter()
    gc.collect(2)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    QApplication.instance() or QApplication([])
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000_000)  # as IdleCollector: no automatic full runs
    for n in (10_000, 30_000):
        collector.release()
        gc.collect()
        images = Images(n)
        panel = TriagePanel()
        controller = TriageController(panel, images, navigator=None)  # type: ignore[arg-type]
        whole, longest, slices = [], [], 0
        for round_ in range(4):
            # Another ordering (or model version) scores every image again.
            order = (TriageOrder.UNCERTAINTY, TriageOrder.REFERABLE)[round_ % 2]
            panel.order.blockSignals(True)
            panel.order.setCurrentIndex(panel.order.findData(order))
            panel.order.blockSignals(False)
            controller._scored.clear()
            start = time.perf_counter()
            controller.refresh_now()
            whole.append((time.perf_counter() - start) * 1000)
            controller._scored.clear()
            spans = slices_of(controller)
            longest.append(max(spans))
            slices = len(spans)
        warm = []
        for round_ in range(5):
            for e in images.items[round_ * 128 : (round_ + 1) * 128]:
                images.predict(e, 0.1)
            start = time.perf_counter()
            controller.refresh_now()
            warm.append((time.perf_counter() - start) * 1000)
        in_reach = min(full_collection_ms() for _ in range(3))
        collector.settle()
        controller._scored.clear()
        controller.refresh_now()  # a ranking's scores are made after the freeze: in reach
        frozen = min(full_collection_ms() for _ in range(3))
        print(
            f"{n} images: cold ranking whole {statistics.median(whole):.0f} ms (median of 4); "
            f"in slices, the longest {max(longest):.1f} ms over 4 rankings of {slices} slices "
            f"(goal < 50 ms); warm ranking {statistics.median(warm):.1f} ms; a full garbage "
            f"collection {in_reach:.0f} ms, {frozen:.1f} ms with the folder frozen "
            f"(ratio {frozen / in_reach:.2f})"
        )
        panel.deleteLater()
    collector.release()
    gc.set_threshold(young, middle, oldest)


if __name__ == "__main__":
    main()
