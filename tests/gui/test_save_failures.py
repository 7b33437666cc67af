"""R4: a refused write shows a banner, stays pending, is retried, and quitting asks first.
R2: a second instance on the same database opens read-only and says so."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from sall_desktop.services.grading import SaveState
from sall_desktop.store import SqliteLabelStore, StoreWriteError
from tests.gui.conftest import WAIT_MS, WAIT_S


class FailingWrites:
    """Make ``add_grading`` raise "disk full" until ``heal()``; count the attempts."""

    def __init__(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        self.original = SqliteLabelStore.add_grading
        self.failing = threading.Event()
        self.failing.set()
        self.attempts = 0
        failing = self

        def add_grading(store, grading, **kwargs):  # type: ignore[no-untyped-def]
            if failing.failing.is_set():
                failing.attempts += 1
                raise StoreWriteError(
                    "Could not save the grade: the disk is full. It is kept as pending."
                )
            return failing.original(store, grading, **kwargs)

        monkeypatch.setattr(SqliteLabelStore, "add_grading", add_grading)

    def heal(self) -> None:
        self.failing.clear()


def test_disk_full_shows_banner_keeps_pending_and_manual_retry_commits(
    qtbot, monkeypatch, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4), retry_delays=(3600.0,))  # no automatic retry here
    window = ws.window
    failing = FailingWrites(monkeypatch)
    entry = window.navigator.current
    QTest.keyClick(window, "2")
    QTest.keyClick(window, "Q")
    banner = window.banner
    qtbot.waitUntil(lambda: banner.isVisible() and banner.kind == "save", timeout=WAIT_MS)
    assert "disk is full" in banner.label.text()
    assert banner.retry.isVisible()
    assert ws.services.grading.pending_count == 1
    assert entry.save_state is SaveState.FAILED
    assert entry.grading is not None and entry.grading.dr_grade == 2  # the correction is kept
    assert "not saved" in window.status.save.text()
    # A second grading made meanwhile queues behind the failed one (order is kept).
    QTest.keyClick(window, "3")
    QTest.keyClick(window, "W")
    qtbot.waitUntil(lambda: ws.services.grading.pending_count == 2, timeout=WAIT_MS)

    failing.heal()
    qtbot.mouseClick(banner.retry, Qt.MouseButton.LeftButton)
    wait_saved(ws)
    qtbot.waitUntil(
        lambda: (
            not banner.isVisible()
            and entry.save_state is SaveState.SAVED
            and window.status.save.text().endswith("All grades saved")
        ),
        timeout=WAIT_MS,
    )
    saved = store_call(ws, lambda s: s.current_grading(entry.sha256, "Dr Test"))
    assert (saved.dr_grade, saved.amd_grade) == (2, 0)
    assert len(store_call(ws, lambda s: s.current_gradings(grader="Dr Test"))) == 2


def test_automatic_retry_commits_once_space_is_back(
    qtbot, monkeypatch, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4), retry_delays=(0.2,))
    window = ws.window
    failing = FailingWrites(monkeypatch)
    entry = window.navigator.current
    QTest.keyClick(window, "1")
    QTest.keyClick(window, "E")
    qtbot.waitUntil(lambda: failing.attempts >= 2, timeout=WAIT_MS)  # retried by itself
    assert window.banner.isVisible()
    failing.heal()
    wait_saved(ws)
    assert store_call(ws, lambda s: s.current_grading(entry.sha256, "Dr Test")).amd_grade == 2
    qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=WAIT_MS)


def test_quitting_with_pending_grades_asks_first(
    qtbot, monkeypatch, open_workstation, image_folder
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4), retry_delays=(3600.0,))
    window = ws.window
    FailingWrites(monkeypatch)
    QTest.keyClick(window, "4")
    QTest.keyClick(window, "R")
    qtbot.waitUntil(lambda: ws.services.grading.failing, timeout=WAIT_MS)
    asked = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        asked.append(box.text())
        box.button(QMessageBox.StandardButton.Cancel).click()

    QTimer.singleShot(20, answer)
    window.close()
    assert asked and "1 grade(s) are not saved yet" in asked[0]
    assert window.isVisible()  # Cancel keeps the window (and the pending grade)
    assert ws.services.grading.pending_count == 1


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sall_desktop.store import open_store
    store = open_store(Path(sys.argv[1]))
    print("open", store.read_only, flush=True)
    sys.stdin.readline()
    store.close()
    """
)


def test_second_instance_opens_read_only_with_a_message(
    qtbot, open_workstation, image_folder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "shared.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().split() == ["open", "False"]
        ws = open_workstation(image_folder(4), db=db)
        window = ws.window
        assert window.banner.isVisible() and window.banner.kind == "read_only"
        assert "read-only" in window.banner.label.text()
        assert not window.grading_panel.controls.isEnabled()
        QTest.keyClick(window, "2")
        QTest.keyClick(window, "Q")
        assert ws.services.grading.pending_count == 0 and window.navigator.current.grading is None
        assert "Read-only" in window.status.save.text()
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=WAIT_S)


def test_switching_folders_while_saving_fails_asks_and_keeps_the_queue(
    qtbot, monkeypatch, open_workstation, image_folder
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4), retry_delays=(3600.0,))
    window = ws.window
    FailingWrites(monkeypatch)
    QTest.keyClick(window, "2")
    QTest.keyClick(window, "W")
    qtbot.waitUntil(lambda: ws.services.grading.failing, timeout=WAIT_MS)
    asked = []

    def answer(parent, title, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer)
    first = window.folders.folder
    window.folders.open_folder(str(image_folder(2, name="other")))
    assert asked and "not saved yet" in asked[0]
    assert window.folders.folder == first  # "No" keeps the folder
    assert ws.services.grading.pending_count == 1
