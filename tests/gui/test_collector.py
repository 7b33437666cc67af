"""Full garbage collections wait for a pause in input (R24), and the policy undoes itself."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QLineEdit  # noqa: E402

from sall_desktop.gui.collector import IdleCollector  # noqa: E402


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


def _typing_with_a_due_collection(qtbot, presses: int, **timing: float) -> IdleCollector:  # type: ignore[no-untyped-def]
    """A started collector with a full collection due, after ``presses`` keys 150 ms apart."""
    field = QLineEdit()
    qtbot.addWidget(field)
    threshold = gc.get_threshold()[2]
    collector = IdleCollector(**timing)
    collector.start()
    _make_full_collection_due(threshold)
    for _ in range(presses):  # never a pause of 0.6 s or more
        qtbot.keyClick(field, Qt.Key.Key_A)
        qtbot.wait(150)
    return collector


def test_a_due_collection_waits_while_the_grader_types_then_runs(qtbot) -> None:  # type: ignore[no-untyped-def]
    collector = _typing_with_a_due_collection(qtbot, 8, idle_s=0.6, max_defer_s=600)
    try:
        assert collector.collections == 0
        qtbot.waitUntil(lambda: collector.collections == 1, timeout=3000)
        assert gc.get_count()[2] == 0
    finally:
        collector.stop()


def test_a_full_collection_never_waits_longer_than_the_limit(qtbot) -> None:  # type: ignore[no-untyped-def]
    collector = _typing_with_a_due_collection(qtbot, 10, idle_s=3600, max_defer_s=0.5)
    try:
        assert collector.collections >= 1
    finally:
        collector.stop()
