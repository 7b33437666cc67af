"""The workstation at the sizes graders use (1280x800, 1920x1080) with the bundled demo model: the
grading panel is whole without scrolling, no text is clipped, the model's windows close with Esc,
and blind-first leaves no trace of the model on an ungraded image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6 import QtGui
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QPushButton, QWidget

from model_zoo.weights import demo_model_dir
from sall_desktop.gui.main_window import MainWindow
from tests.gui.conftest import WAIT_MS

"""A hang guard: loading the demo model beside other jobs on two cores takes seconds."""

SIZES = [(1280, 800), (1920, 1080)]
GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "protocol" / "golden"


@pytest.fixture()
def workstation(model_workstation: Callable[..., Any]) -> Callable[..., Any]:
    return lambda folder, **kwargs: model_workstation(folder, demo_model_dir(), **kwargs)


def settle(window: QWidget, width: int, height: int) -> None:
    window.resize(width, height)
    for _ in range(3):  # layouts, then the splitter's second look at its children's minimums
        QApplication.processEvents()


def wholly_visible(widget: QWidget, window: QWidget) -> bool:
    """Shown, inside the window, and not cut by a scroll area or splitter on the way up."""
    top_left = widget.mapTo(window, QPoint(0, 0))
    bottom_right = widget.mapTo(window, QPoint(widget.width() - 1, widget.height() - 1))
    inside = window.rect().contains(top_left) and window.rect().contains(bottom_right)
    return widget.isVisible() and inside and widget.visibleRegion().boundingRect() == widget.rect()


def grading_controls(window: MainWindow) -> list[QWidget]:
    panel = window.grading_panel
    return [
        *panel.dr_buttons,
        *panel.amd_buttons,
        panel.ungradable_button,
        *panel.dme_buttons,
        panel.notes,
        panel.commit_button,
        panel.image_title,
        panel.save_state,
    ]


def clipped_texts(root: QWidget) -> list[str]:
    """Visible one-line labels and buttons whose text is wider than the room they have."""
    found = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible() or not widget.width():
            continue
        if isinstance(widget, QLabel):
            text = widget.text()
            if not text or widget.wordWrap() or QtGui.Qt.mightBeRichText(text):
                continue
            metrics = widget.fontMetrics()
            need = max(metrics.horizontalAdvance(line) for line in text.splitlines())
            if need > widget.contentsRect().width():
                found.append(f"label {text!r}: {need} px in {widget.contentsRect().width()}")
        elif isinstance(widget, QAbstractButton) and widget.text():
            # A button narrower than its size hint clips its text.
            if widget.sizeHint().width() > widget.width():
                found.append(f"button {widget.text()!r}: {widget.sizeHint().width()} px in "
                             f"{widget.width()}")  # fmt: skip
    return found


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_whole_grading_panel_is_in_view(
    workstation: Callable[..., Any],
    image_folder: Callable[..., Path],
    qtbot: Any,
    width: int,
    height: int,
) -> None:
    window = workstation(image_folder(6)).window
    # The worst case: a banner on top, and the reason buttons open.
    window.banner.show_message("error", "warning", "A banner over the whole window")
    settle(window, width, height)
    assert window.width() == width and window.height() == height  # it fits the screen
    hidden = [w.objectName() or repr(w) for w in grading_controls(window)]
    assert all(wholly_visible(w, window) for w in grading_controls(window)), hidden
    window.grading.begin_ungradable()
    settle(window, width, height)
    reasons = list(window.grading_panel.reason_buttons.values())
    for widget in [*grading_controls(window), *reasons]:
        assert wholly_visible(widget, window), widget
    assert clipped_texts(window) == []


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_no_text_is_clipped_in_the_model_windows(
    workstation: Callable[..., Any],
    image_folder: Callable[..., Path],
    qtbot: Any,
    width: int,
    height: int,
) -> None:
    window = workstation(image_folder(4)).window
    settle(window, width, height)
    assert clipped_texts(window) == []
    windows = window.model_windows
    assert windows is not None
    finetune = windows.open_finetune()
    manager = windows.open_manager()
    assert finetune is not None and manager is not None
    # Mid-run: a recorded fine-tune's first events, as the child process would send them.
    from sall_desktop.gui.training_process import TrainingProcess

    replay = TrainingProcess()
    replay.event_received.connect(finetune.panel.handle_event)
    data = (GOLDEN / "finetune_gate_failed.jsonl").read_bytes()
    lines = data.splitlines(keepends=True)
    replay.feed(b"".join(lines[: len(lines) * 3 // 5]))
    finetune.panel.setVisible(True)
    finetune.panel.flush()
    for shown in (finetune, manager):
        qtbot.waitExposed(shown, timeout=WAIT_MS)
        assert clipped_texts(shown) == []
        assert shown.width() <= QApplication.primaryScreen().availableGeometry().width()
        closers = [b for b in shown.findChildren(QPushButton) if b.text() == "Close"]
        assert closers and closers[0].isVisible()
        # Esc goes to the active window (the main window's own Esc cancels a draft).
        shown.activateWindow()
        qtbot.waitUntil(lambda s=shown: QApplication.activeWindow() is s, timeout=WAIT_MS)
        qtbot.keyClick(shown, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda s=shown: not s.isVisible(), timeout=WAIT_MS)


def test_blind_first_shows_no_trace_of_the_model_on_an_ungraded_image(
    workstation: Callable[..., Any],
    image_folder: Callable[..., Path],
    qtbot: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = workstation(image_folder(4), blind=True)
    window, loop = ws.window, ws.window.model_loop
    entry = window.navigator.current
    qtbot.waitUntil(lambda: window.model.prediction(entry.sha256) is not None, timeout=WAIT_MS)
    settle(window, 1280, 800)
    window.triage.refresh_now()
    loop.overlay.toggle()  # A: refused while the image is ungraded

    visible = [
        w.text()
        for w in window.findChildren(QWidget)
        if isinstance(w, QLabel | QAbstractButton) and w.isVisible()
    ]
    assert not any(t.startswith("Model:") or "Confidence" in t for t in visible)
    assert not [b for b in window.model_panel.findChildren(QWidget, "probability") if b.isVisible()]
    assert not loop.overlay.overlay_visible
    assert any("Blind-first" in t for t in visible)  # the status bar says so
    rows = [
        window.triage_panel.list.item(i).text() for i in range(window.triage_panel.list.count())
    ]
    paths = sorted(e.path for e in window.model.entries())
    assert [r.item.path for r in window.triage.ranked] == paths  # file order, not the model's
    assert rows == [f"{n:>3}. {Path(p).name}" for n, p in enumerate(paths, 1)]  # no score
    chips: list[str] = []
    delegate = window.grid.delegate
    original = delegate._chip

    def chip(painter: Any, x: int, y: int, text: str, colour: str) -> int:
        chips.append(text)
        return original(painter, x, y, text, colour)

    monkeypatch.setattr(delegate, "_chip", chip)
    window.grid.viewport().grab()
    assert not [c for c in chips if c.startswith("M ")]
