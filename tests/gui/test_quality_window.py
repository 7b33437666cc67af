"""Programme → Grader quality report…: the window shows the report and saves it as a file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pytestqt.qtbot import QtBot

from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.gui.quality_window import FLAG_COLOUR, QualityWindow
from sall_desktop.store import SqliteLabelStore, open_store
from tests.gui.conftest import WAIT_MS


class InlineStore:
    """A store executor that runs each job at once (the window still gets a future)."""

    read_only = False

    def __init__(self, store: SqliteLabelStore) -> None:
        self.store = store

    def submit(self, fn: Callable[[SqliteLabelStore], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(self.store))
        except Exception as exc:  # the window shows it
            future.set_exception(exc)
        return future


def _programme(path: Path) -> SqliteLabelStore:
    store = open_store(path, app_version="test")
    store.set_programme_rules(RoutingRules(normal_fraction=1.0), actor="QA")
    images = [ImageRecord(hashlib.sha256(f"q{i}".encode()).hexdigest(), f"/q/{i}.png")
              for i in range(30)]  # fmt: skip
    store.upsert_images(images)
    for i, image in enumerate(images):
        # Dr Careless calls every other referable image normal.
        store.add_grading(Grading(image.sha256, "Dr Careless", dr_grade=(i % 5) if i % 2 else 0,
                                  amd_grade=0))  # fmt: skip
        store.add_grading(Grading(image.sha256, "Dr Careful", dr_grade=i % 5, amd_grade=0,
                                  role=GraderRole.SECONDARY))  # fmt: skip
        store.add_grading(Grading(image.sha256, "Dr Arb", dr_grade=i % 5, amd_grade=0,
                                  role=GraderRole.ARBITER))  # fmt: skip
    store.set_programme_role("Dr Careless", ProgrammeRole.PRIMARY, actor="QA")
    return store


def test_report_window_shows_flags_and_saves(qtbot: QtBot, tmp_path: Path) -> None:
    store = _programme(tmp_path / "labels.sqlite")
    window = QualityWindow(InlineStore(store))
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.report is not None, timeout=WAIT_MS)
    names = [window.table.item(r, 0).text() for r in range(window.table.rowCount())]
    assert names == ["Dr Arb", "Dr Careful", "Dr Careless"]
    careless = window.table.item(2, 1)  # the flag column comes second
    assert careless.foreground().color() == FLAG_COLOUR
    assert "below" in careless.text() or "below" in careless.toolTip()
    assert window.table.item(1, 0).foreground().color() != FLAG_COLOUR
    assert not window.scatter.pixmap().isNull()

    out = tmp_path / "report.html"
    window.save(out)
    qtbot.waitUntil(lambda: "saved" in window.summary.text(), timeout=WAIT_MS)
    assert "Dr Careless" in out.read_text(encoding="utf-8")
    before = (tmp_path / "labels.sqlite").read_bytes()
    window.save(tmp_path / "labels.sqlite")
    qtbot.waitUntil(lambda: "Could not save" in window.summary.text(), timeout=WAIT_MS)
    assert (tmp_path / "labels.sqlite").read_bytes() == before
    store.close()
