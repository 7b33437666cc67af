"""Full garbage collections wait for a pause in input (R24), and the policy undoes itself."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QLineEdit  # noqa: E402

from sall_desktop.gui.collector import IdleCollector  # noqa: E402
from tests.gui.conftest import WAIT_MS  # noqa: E402


def _make_full_collection_due(threshold: int) -> None:
    for _ in range(threshold):
        gc.collect(1)  # each generation-1 run counts towards the oldest generation


def test_start_freezes_and_defers_and_stop_restores(qtbot) -> None:  # type: ignore[no-untyped-def]
    before = gc.get_threshold()
    collector = IdleCollector()
    collector.start()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] > 10**6
    finally:
        collector.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


class Clock:
    """The collector's clock, driven by the test: no real pause, so no busy machine can stretch
    a key press into a pause or a pause into nothing."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _typing_with_a_due_collection(
    qtbot, clock: Clock, presses: int, **timing: float
) -> IdleCollector:  # type: ignore[no-untyped-def]
    """A started collector with a full collection due, after ``presses`` keys 0.15 s apart, its
    check (the timer's) run after each key."""
    field = QLineEdit()
    qtbot.addWidget(field)
    threshold = gc.get_threshold()[2]
    collector = IdleCollector(clock=clock, **timing)
    collector.start()
    _make_full_collection_due(threshold)
    for _ in range(presses):  # never a pause of 0.6 s or more
        qtbot.keyClick(field, Qt.Key.Key_A)
        clock.now += 0.15
        collector._maybe_collect()
    return collector


def test_a_due_collection_waits_while_the_grader_types_then_runs(qtbot) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    collector = _typing_with_a_due_collection(qtbot, clock, 8, idle_s=0.6, max_defer_s=600)
    try:
        assert collector.collections == 0
        clock.now += 0.6  # the grader pauses; the collector's own timer notices
        qtbot.waitUntil(lambda: collector.collections == 1, timeout=WAIT_MS)
        assert gc.get_count()[2] == 0
    finally:
        collector.stop()


def test_a_full_collection_never_waits_longer_than_the_limit(qtbot) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    collector = _typing_with_a_due_collection(qtbot, clock, 10, idle_s=3600, max_defer_s=0.5)
    try:
        assert collector.collections >= 1  # once 0.5 s passed, typing or not
    finally:
        collector.stop()
