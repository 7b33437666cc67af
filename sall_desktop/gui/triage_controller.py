"""The triage controller: ranks the open folder by the chosen ordering, in slices of the GUI
thread's time, and opens the image a grader picks from the queue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import NamedTuple

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QListWidgetItem

from sall_desktop.domain.grades import Grading
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.triage_panel import (
    SHOWN,
    TriagePanel,
)
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.inference import PredictionSummary
from sall_desktop.services.triage import (
    Ranked,
    RankKey,
    TriageItem,
    TriageOrder,
    rank_key,
    score,
    top,
)
from sall_desktop.services.triage import excluded as triage_excluded

REFRESH_MS = 300
BATCH_REFRESH_MS = 1000
"""The shortest wait between rankings for batch grading's deliveries: the queue is read when
the grader turns to it, and each ranking costs the GUI thread time on the two cores the model's
forward passes use (see docs/benchmarks.md, "Figures formerly in docstrings")."""
SLICE_MS = 10
"""The longest a ranking holds the GUI thread at a time."""


class _Scored(NamedTuple):
    """What one ranking saw of an image and what it made of it."""

    prediction: PredictionSummary | None
    grading: Grading | None
    order: TriageOrder
    file_order: bool  # blind-first: a model ordering fell back to file order
    key: RankKey | None  # None: not in the queue under this ordering
    excluded: bool


class TriageController(QObject):
    """Builds the triage items from the image list and opens the image clicked.

    A ranking runs on the GUI thread (it reads the image list, which lives there) in slices of
    at most :data:`SLICE_MS`, so even scoring a folder of tens of thousands of images afresh (a
    new ordering, a new model version), which takes several slices' worth
    (``benchmarks/bench_triage.py``, docs/benchmarks.md), never holds the window for longer than
    a slice (P6).
    """

    def __init__(self, panel: TriagePanel, model: ImageListModel, navigator: Navigator) -> None:
        super().__init__(panel)
        self.panel, self.model, self.navigator = panel, model, navigator
        self.ranked: list[Ranked] = []  # the top of the queue, as shown
        self.queue_size = 0
        self._last_ms = 0
        self._scored: dict[str, _Scored] = {}
        self._pass: Iterator[None] | None = None
        self._again = False  # asked to rank again while a ranking was under way
        self._timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._timer.timeout.connect(self._scheduled)
        self._slices = QTimer(self, singleShot=True, interval=0)
        self._slices.timeout.connect(self._next_slice)
        panel.order.currentIndexChanged.connect(lambda _: self.refresh())
        model.modelReset.connect(self._restart)  # another folder: a pass under way is stale
        model.work_changed.connect(self.refresh)  # another work queue: rank its images
        panel.list.itemActivated.connect(self._open)
        panel.list.itemClicked.connect(self._open)

    def schedule(self, wait_ms: int = REFRESH_MS) -> None:
        """Rank again within ``wait_ms`` (coalesces bursts of predictions and gradings).

        A ranking is cheap when few scores changed but not free on a big folder: the wait
        grows with the last ranking's cost, so the queue takes at most a tenth of the GUI
        thread.
        """
        wait = max(wait_ms, 10 * self._last_ms)
        if not self._timer.isActive() or self._timer.remainingTime() > wait:
            self._timer.start(wait)

    def schedule_for_batch(self) -> None:
        """Rank again for a delivery of batch grading (several a second): within
        :data:`BATCH_REFRESH_MS`."""
        self.schedule(BATCH_REFRESH_MS)

    @property
    def ranking(self) -> bool:
        """Whether a ranking is under way (its result is not shown yet)."""
        return self._pass is not None

    def refresh(self) -> None:
        """Rank again now, in slices: the first runs at once (a small folder is done there),
        the rest on later turns of the event loop. A ranking under way starts afresh."""
        self._pass = self._ranking(self.panel.current_order(), deadline_s=SLICE_MS / 1000)
        self._slices.stop()
        self._next_slice()

    def refresh_now(self) -> None:
        """Rank again, whole, and show the result before returning (tests, benchmarks)."""
        self._slices.stop()
        self._pass = None
        for _ in self._ranking(self.panel.current_order(), deadline_s=None):
            pass

    def _scheduled(self) -> None:
        # New predictions do not make a ranking under way wrong, only late: restarting it on
        # every burst could keep a cold ranking of a big folder from ever finishing.
        if self._pass is not None:
            self._again = True
        else:
            self.refresh()

    def _restart(self) -> None:
        if self._pass is not None:
            self.refresh()

    def _next_slice(self) -> None:
        if self._pass is None:
            return
        if next(self._pass, StopIteration) is not StopIteration:
            self._slices.start()
            return
        self._pass = None
        if self._again:
            self._again = False
            self.schedule()

    def _ranking(self, order: TriageOrder, *, deadline_s: float | None) -> Iterator[None]:
        """Score every gradable image, yielding whenever ``deadline_s`` of GUI-thread time has
        gone since the last yield; then show the top. Scores of images whose prediction and
        grading did not change since the last ranking are reused."""
        spent = 0.0
        started = time.perf_counter()
        keys: list[RankKey] = []
        excluded = 0
        known, scored_now = self._scored, {}
        # Blind-first hides the model from ungraded images: a model ordering would rank them by
        # it, so the queue lists them in file order instead (the random sample needs no model).
        file_order = self.model.blind and order is not TriageOrder.SAMPLE
        for n, entry in enumerate(self.model.entries()):
            if deadline_s is not None and n % 256 == 255:
                now = time.perf_counter()
                if now - started > deadline_s:
                    spent += now - started
                    yield
                    started = time.perf_counter()
            if not entry.gradable_image or not self.model.in_work(entry):
                continue  # the triage queue keeps to the grader's chosen work queue
            prediction, grading = self.model.shown_prediction(entry), entry.grading
            old = known.get(entry.path)
            if (
                old is not None
                and old.prediction is prediction
                and old.grading is grading
                and old.order is order
                and old.file_order == file_order
            ):
                scored = old  # unchanged since the last ranking: batch grading re-ranks often
            else:
                item = TriageItem(
                    entry.sha256,
                    entry.path,
                    prediction,
                    grader_dr=grading.dr_grade if grading is not None else None,
                    grader_ungradable=grading is not None and not grading.gradable,
                    graded=grading is not None,
                )
                if file_order:
                    value = None if item.graded or triage_excluded(item) else 0.0
                else:
                    value = score(item, order)
                key = None if value is None else rank_key(item, value)
                scored = _Scored(prediction, grading, order, file_order, key, triage_excluded(item))
            scored_now[entry.path] = scored
            excluded += scored.excluded
            if scored.key is not None:
                keys.append(scored.key)
        self._scored = scored_now
        self.ranked, self.queue_size = top(keys, SHOWN), len(keys)
        self.panel.show_ranked(self.ranked, order, excluded, self.queue_size, file_order=file_order)
        self._last_ms = int((spent + time.perf_counter() - started) * 1000)

    def _open(self, item: QListWidgetItem) -> None:
        entry: ImageEntry | None = self.model.entry_for_path(
            str(item.data(Qt.ItemDataRole.UserRole))
        )
        if entry is not None:
            self.navigator.go_to(entry)
