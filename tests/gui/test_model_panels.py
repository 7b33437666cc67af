"""The model-loop panels: triage rows follow each ranking though rewritten in place, and a big
ranking runs in slices to the same result; batch progress is shown though its paint is
deferred."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from sall_desktop.gui.triage_panel import SHOWN, TriagePanel
from sall_desktop.services.triage import Ranked, TriageItem, TriageOrder
from tests.gui.conftest import WAIT_MS


def ranking(names: list[str], scores: list[float]) -> list[Ranked]:
    return [
        Ranked(TriageItem(f"sha-{n}", f"/data/{n}.jpg", None), s)
        for n, s in zip(names, scores, strict=True)
    ]


def rows(panel: TriagePanel) -> list[tuple[str, str, str]]:
    out = []
    for i in range(panel.list.count()):
        item = panel.list.item(i)
        out.append((item.text(), item.data(Qt.ItemDataRole.UserRole), item.toolTip()))
    return out


def test_rows_match_each_new_ranking(qtbot: Any, qapp_themed: Any) -> None:
    panel = TriagePanel()
    qtbot.addWidget(panel)
    order = TriageOrder.UNCERTAINTY
    panel.show_ranked(ranking(["a", "b", "c"], [0.9, 0.5, 0.1]), order, 0)
    assert rows(panel) == [
        ("  1. H 0.90  a.jpg", "/data/a.jpg", "/data/a.jpg"),
        ("  2. H 0.50  b.jpg", "/data/b.jpg", "/data/b.jpg"),
        ("  3. H 0.10  c.jpg", "/data/c.jpg", "/data/c.jpg"),
    ]
    # New images overtake, one drops out, a score changes: every row says what it opens.
    panel.show_ranked(ranking(["d", "a", "b", "e"], [1.2, 0.9, 0.4, 0.2]), order, 0)
    assert rows(panel) == [
        ("  1. H 1.20  d.jpg", "/data/d.jpg", "/data/d.jpg"),
        ("  2. H 0.90  a.jpg", "/data/a.jpg", "/data/a.jpg"),
        ("  3. H 0.40  b.jpg", "/data/b.jpg", "/data/b.jpg"),
        ("  4. H 0.20  e.jpg", "/data/e.jpg", "/data/e.jpg"),
    ]
    panel.show_ranked(ranking(["e"], [0.3]), order, 2)
    assert rows(panel) == [("  1. H 0.30  e.jpg", "/data/e.jpg", "/data/e.jpg")]
    assert panel.summary.text() == (
        "1 image(s) in the queue; 2 ungradable kept out. "
        "For review; to teach the model, grade the random sample."
    )
    panel.show_ranked([], TriageOrder.DISAGREEMENT, 0)
    assert rows(panel) == []
    # The random sample lists names without a score and says what it is for.
    panel.show_ranked(ranking(["f"], [0.7]), TriageOrder.SAMPLE, 0)
    assert rows(panel) == [("  1. f.jpg", "/data/f.jpg", "/data/f.jpg")]
    assert panel.summary.text().endswith("grading these teaches the next fine-tune most.")


def test_only_the_top_is_listed(qtbot: Any, qapp_themed: Any) -> None:
    panel = TriagePanel()
    qtbot.addWidget(panel)
    names = [f"i{n:03d}" for n in range(SHOWN + 20)]
    panel.show_ranked(ranking(names, [1.0] * len(names)), TriageOrder.UNCERTAINTY, 0)
    assert panel.list.count() == SHOWN
    assert panel.summary.text().startswith(f"{SHOWN + 20} image(s) in the queue.")


def test_batch_progress_is_shown_and_painted_again(qtbot: Any, qapp_themed: Any) -> None:
    from sall_desktop.gui.model_panel import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_batch(5, 10, "Grading…", running=True)
    bar = panel.batch_bar
    assert (bar.value(), bar.maximum(), bar.text()) == (5, 10, "5 / 10")
    assert bar.updatesEnabled()  # the paint it skipped is only deferred
    assert panel.cancel_button.isEnabled() and not panel.grade_button.isEnabled()
    panel.show_batch(10, 10, "Done", running=False)
    assert bar.text() == "10 / 10" and panel.batch_text.text() == "Done"


class _Images(QObject):
    """A stand-in for the image list: many graded-by-the-model images, no window."""

    modelReset = Signal()  # noqa: N815 - Qt's name
    work_changed = Signal()
    blind = False  # blind-first off: the model orders the queue

    def in_work(self, _entry: object) -> bool:
        return True  # no work queue chosen: every image

    def __init__(self, n: int, prefix: str = "img") -> None:
        super().__init__()
        from types import SimpleNamespace

        from sall_desktop.domain.predictions import Prediction
        from sall_desktop.services.inference import summarize

        self._entries = []
        self._predictions = {}
        for i in range(n):
            sha = f"{prefix}-{i:06d}"
            p = (i % 97 + 1) / 400
            dr = (1 - 4 * p, p, p, p, p)
            amd = (0.25, 0.25, 0.25, 0.25) if i % 3 else (0.7, 0.1, 0.1, 0.1)
            prediction = Prediction(sha, "m" * 64, {"dr": dr, "amd": amd})
            self._predictions[sha] = summarize(prediction)
            self._entries.append(
                SimpleNamespace(path=f"/d/{sha}.jpg", sha256=sha, gradable_image=True, grading=None)
            )

    def entries(self) -> list[Any]:
        return list(self._entries)

    def shown_prediction(self, entry: Any) -> Any:
        return self._predictions[entry.sha256]

    def reset_to(self, other: _Images) -> None:
        self._entries, self._predictions = other._entries, other._predictions
        self.modelReset.emit()


def controller(qtbot: Any, images: _Images) -> Any:
    from sall_desktop.gui.triage_controller import TriageController

    panel = TriagePanel()
    qtbot.addWidget(panel)
    return TriageController(panel, images, navigator=None)  # type: ignore[arg-type]


def test_a_big_ranking_runs_in_slices_and_equals_the_whole(
    qtbot: Any, qapp_themed: Any, monkeypatch: Any
) -> None:
    import sall_desktop.gui.triage_controller as triage_controller

    monkeypatch.setattr(triage_controller, "SLICE_MS", 0)  # a slice per 256 images
    images = _Images(3000)
    sliced = controller(qtbot, images)
    sliced.refresh()
    assert sliced.ranking and sliced.ranked == []  # the GUI thread was handed back
    qtbot.waitUntil(lambda: not sliced.ranking, timeout=WAIT_MS)
    whole = controller(qtbot, images)
    whole.refresh_now()
    assert sliced.ranked == whole.ranked and len(sliced.ranked) == SHOWN
    assert sliced.queue_size == whole.queue_size == 3000
    assert rows(sliced.panel) == rows(whole.panel)


def test_a_new_ordering_or_folder_restarts_a_ranking_under_way(
    qtbot: Any, qapp_themed: Any, monkeypatch: Any
) -> None:
    import sall_desktop.gui.triage_controller as triage_controller

    monkeypatch.setattr(triage_controller, "SLICE_MS", 0)
    images = _Images(3000)
    sliced = controller(qtbot, images)
    sliced.refresh()
    order = sliced.panel.order
    order.setCurrentIndex(order.findData(TriageOrder.REFERABLE))
    images.reset_to(_Images(2000, prefix="other"))
    qtbot.waitUntil(lambda: not sliced.ranking, timeout=WAIT_MS)
    assert sliced.queue_size == 2000
    assert all(r.item.sha256.startswith("other-") for r in sliced.ranked)
    whole = controller(qtbot, images)
    whole.panel.order.setCurrentIndex(whole.panel.order.findData(TriageOrder.REFERABLE))
    whole.refresh_now()
    assert sliced.ranked == whole.ranked


def test_new_predictions_do_not_restart_a_ranking_under_way(
    qtbot: Any, qapp_themed: Any, monkeypatch: Any
) -> None:
    import sall_desktop.gui.triage_controller as triage_controller

    monkeypatch.setattr(triage_controller, "SLICE_MS", 0)
    sliced = controller(qtbot, _Images(3000))
    sliced.refresh()
    under_way = sliced._pass
    sliced._timer.timeout.emit()  # batch grading's next burst of predictions, meanwhile
    assert sliced._pass is under_way  # goes on: a restart per burst might never finish
    # The slices are run here, not by the event loop: the refresh timer the pass arms at its
    # end must not fire (after REFRESH_MS of a busy machine) before it is looked at.
    while sliced.ranking:
        sliced._next_slice()
    assert sliced.queue_size == 3000
    assert sliced._timer.isActive()  # and the burst gets its ranking afterwards


def test_batch_deliveries_wait_longer_for_a_ranking_than_a_grading(
    qtbot: Any, qapp_themed: Any
) -> None:
    import sall_desktop.gui.triage_controller as triage_controller

    triage = controller(qtbot, _Images(50))
    timer = triage._timer
    triage.schedule_for_batch()  # batch grading delivers several times a second
    assert timer.isActive() and timer.interval() == triage_controller.BATCH_REFRESH_MS
    triage.schedule_for_batch()  # the next delivery neither waits longer nor sooner
    assert timer.interval() == triage_controller.BATCH_REFRESH_MS
    triage.schedule()  # the grader's own grading meanwhile is ranked sooner
    assert timer.isActive() and timer.interval() == triage_controller.REFRESH_MS
    triage.schedule_for_batch()  # and a delivery then does not push that back
    assert timer.interval() == triage_controller.REFRESH_MS
    qtbot.waitUntil(lambda: triage.queue_size == 50, timeout=WAIT_MS)
