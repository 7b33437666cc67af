"""A screening programme at one workstation, through the real window (offscreen, tiny CPU model):
three graders take turns; the primary grader grades by keyboard, the secondary grader's queue
holds exactly the routed images and shows neither the model nor the primary grade (also after
the save, which is stored at the secondary level), and the arbiter sees both gradings beside the
draft; the queues' counts follow each save."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton, QLabel, QProgressBar, QWidget

from sall_desktop.domain.grades import GraderRole
from sall_desktop.domain.programme import HowReached, ProgrammeRole, RoutingRules
from sall_desktop.services.programme import load_state
from sall_desktop.services.work_queue import SECONDARY_BLIND
from sall_desktop.store import open_store
from tests.gui.conftest import WAIT_MS, WAIT_S
from tests.gui.test_workstation_fit import clipped_texts, grading_controls, settle, wholly_visible

P, S, A = "Dr Primary", "Dr Second", "Dr Arbiter"
PRIMARY, SECONDARY, ARBITER = GraderRole.PRIMARY, GraderRole.SECONDARY, GraderRole.ARBITER
DR_BY_IMAGE = (0, 1, 0, 3, 0, 0, 2, 0)
"""P's DR grade of each image in grid order (AMD 0): 1, 3 and 2 are abnormal and routed."""
AMD_Q = "Q"  # AMD 0


@pytest.fixture()
def programme_store(tmp_path: Path) -> Path:
    """The label database with a programme set up: the rules and three graders' roles."""
    db = tmp_path / "home" / "labels.sqlite"
    db.parent.mkdir(exist_ok=True)
    with open_store(db) as store:
        store.set_programme_rules(RoutingRules(normal_fraction=0.10, seed=3), actor="QA Lead")
        for grader, role in ((P, ProgrammeRole.PRIMARY), (S, ProgrammeRole.SECONDARY),
                             (A, ProgrammeRole.ARBITER)):  # fmt: skip
            store.set_programme_role(grader, role, actor="QA Lead")
    return db


def visible_texts(root: QWidget) -> list[str]:
    """Every text a grader can see now (labels, buttons, bars, the work selector)."""
    texts = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible():
            continue
        if isinstance(widget, QLabel | QAbstractButton | QProgressBar):
            texts.append(widget.text())
        if widget.toolTip() and isinstance(widget, QLabel):
            texts.append(widget.toolTip())
    return texts


def sign_in(qtbot: Any, window: Any, name: str) -> None:
    """Switch, type the name, Enter: how graders take turns at one workstation."""
    panel = window.grading_panel
    qtbot.mouseClick(panel.switch_button, Qt.MouseButton.LeftButton)
    panel.grader_name.clear()
    qtbot.keyClicks(panel.grader_name, name)
    qtbot.keyClick(panel.grader_name, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: window.grading.grader == name and not window.grading.loading, timeout=WAIT_MS
    )


def choose(window: Any, level: GraderRole | None) -> None:
    combo = window.work_panel.combo
    index = next(i for i in range(combo.count()) if combo.itemData(i) == level)
    combo.setCurrentIndex(index)


def shown_shas(window: Any) -> list[str]:
    model = window.model
    return [model.entry_at(i).sha256 for i in range(model.visible_count())]


def painted_chips(window: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The chips the thumbnail grid paints now (model chips start with "M ")."""
    chips: list[str] = []
    delegate = window.grid.delegate
    original = delegate._chip

    def chip(painter: Any, x: int, y: int, text: str, colour: str) -> int:
        chips.append(text)
        return original(painter, x, y, text, colour)

    monkeypatch.setattr(delegate, "_chip", chip)
    window.grid.viewport().grab()
    monkeypatch.setattr(delegate, "_chip", original)
    return chips


def test_three_graders_take_turns_through_their_queues(
    model_workstation: Callable[..., Any],
    tiny_model: Path,
    image_folder: Callable[..., Path],
    programme_store: Path,
    qtbot: Any,
    store_call: Callable[..., Any],
    wait_saved: Callable[[Any], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = model_workstation(image_folder(len(DR_BY_IMAGE)), tiny_model)
    window, panel, work = ws.window, ws.window.work_panel, ws.window.work.work
    assert work.known and not panel.isVisible()  # "Dr Test" holds no programme role

    # ---------------------------------------------------------------- P grades by keyboard
    sign_in(qtbot, window, P)
    qtbot.waitUntil(lambda: "Primary — 8 to grade" in panel.texts(), timeout=WAIT_MS)
    assert panel.isVisible() and panel.texts()[0] == "All images"
    choose(window, PRIMARY)
    assert len(shown_shas(window)) == 8
    window.navigator.go_to(window.model.entry_at(0))
    graded_dr: dict[str, int] = {}
    for position, dr in enumerate(DR_BY_IMAGE):
        entry = window.navigator.current
        assert entry is window.model.entry_at(position)
        QTest.keyClick(window, str(dr))
        QTest.keyClick(window, AMD_Q)  # complete: saved at once
        graded_dr[entry.sha256] = dr
        if position == 0:  # the count follows the save
            qtbot.waitUntil(lambda: "Primary — 7 to grade" in panel.texts(), timeout=WAIT_MS)
        QTest.keyClick(window, Qt.Key.Key_Right)
    wait_saved(ws)
    qtbot.waitUntil(lambda: "Primary — 0 to grade" in panel.texts(), timeout=WAIT_MS)
    primary = store_call(ws, lambda s: s.current_gradings(grader=P))
    assert {g.image_sha256: g.dr_grade for g in primary} == graded_dr
    assert {g.role for g in primary} == {PRIMARY}

    # ---------------------------------------------------------------- S: blind, routed only
    records = [e.record for e in window.model.entries()]
    state = store_call(ws, load_state)
    routed = state.queue(S, SECONDARY, records)
    abnormal = {sha for sha, dr in graded_dr.items() if dr > 0}
    assert abnormal <= set(routed) and len(routed) < 8  # and the seeded sample of normals
    sign_in(qtbot, window, S)
    qtbot.waitUntil(
        lambda: f"Second grading — {len(routed)} to grade" in panel.texts(), timeout=WAIT_MS
    )
    assert not [t for t in panel.texts() if t.startswith(("Primary", "Arbitration"))]
    choose(window, SECONDARY)
    assert shown_shas(window) == routed
    window.triage.refresh_now()  # the triage queue keeps to the chosen work queue
    assert {r.item.sha256 for r in window.triage.ranked} <= set(routed)
    assert window.navigator.current.sha256 in routed  # the queue's first image is shown
    target = next(sha for sha, dr in graded_dr.items() if dr == 3)
    entry = window.model.entries_with_sha(target)[0]
    window.navigator.go_to(entry)
    loop = window.model_loop
    qtbot.waitUntil(lambda: window.model.prediction(target) is not None, timeout=WAIT_MS)

    def nothing_shown() -> None:
        texts = visible_texts(window)
        model_panel = window.model_panel
        assert model_panel.hidden_note.isVisible()
        assert model_panel.hidden_note.text() == SECONDARY_BLIND
        assert not model_panel.output.isVisible()
        assert not [b for b in model_panel.findChildren(QProgressBar, "probability")
                    if b.isVisible() and "%" in b.text()]  # fmt: skip
        assert not loop.overlay.overlay_visible
        assert not any(t.startswith("Model:") or "Confidence" in t for t in texts)
        assert window.status.withheld.isVisible()
        assert window.status.withheld.text() == SECONDARY_BLIND
        assert not [t for t in texts if P in t or "Primary (" in t]  # P's grade is not shown
        assert not window.grading_panel.beside.isVisible()
        assert not [c for c in painted_chips(window, monkeypatch) if c.startswith("M ")]
        assert window.model.shown_prediction(entry) is None
        assert target not in {r.item.sha256 for r in window.triage.ranked}  # no model score

    loop.overlay.toggle()  # A: asked for, refused
    window.triage.refresh_now()
    nothing_shown()
    assert entry.grading is None  # S has not graded it: P's DR 3 is not S's draft
    assert not any(b.isChecked() for b in window.grading_panel.dr_buttons)
    assert "DR 3" not in painted_chips(window, monkeypatch)

    QTest.keyClick(window, "0")
    QTest.keyClick(window, AMD_Q)  # S disagrees: DR 0 against P's DR 3
    wait_saved(ws)
    qtbot.waitUntil(lambda: "Second grading — " in panel.texts()[1] and entry.graded,
                    timeout=WAIT_MS)  # fmt: skip
    qtbot.waitUntil(
        lambda: panel.texts()[1] == f"Second grading — {len(routed) - 1} to grade",
        timeout=WAIT_MS,
    )
    window.triage.refresh_now()
    nothing_shown()  # still hidden after the save
    saved = store_call(ws, lambda s: s.current_grading(target, S))
    assert saved.role is SECONDARY and saved.dr_grade == 0
    assert saved.model_version is None  # S saw no model output

    # ---------------------------------------------------------------- A sees both
    sign_in(qtbot, window, A)
    qtbot.waitUntil(lambda: "Arbitration — 1 to grade" in panel.texts(), timeout=WAIT_MS)
    choose(window, ARBITER)
    assert shown_shas(window) == [target]
    assert window.navigator.current.sha256 == target
    beside = window.grading_panel.beside
    qtbot.waitUntil(beside.isVisible, timeout=WAIT_MS)
    assert beside.text() == (
        f"Primary ({P}): DR 3 · AMD 0 — R2\nSecondary ({S}): DR 0 · AMD 0 — R0\n"
        "Sent to arbitration: referable"
    )
    qtbot.waitUntil(
        lambda: any(t.startswith("Model:") for t in visible_texts(window)), timeout=WAIT_MS
    )  # the arbiter may see the model
    assert not window.status.withheld.isVisible()
    settle(window, 1280, 800)  # the strip leaves the whole grading panel in view
    assert all(wholly_visible(w, window) for w in grading_controls(window))
    body = window.grading_panel.body
    wide = body.minimumSizeHint().width()
    window.grading_panel.show_beside("")
    assert body.minimumSizeHint().width() == wide  # the strip wraps: it never widens the panel
    window.grading.refresh()
    assert beside.isVisible()
    assert clipped_texts(window) == []

    QTest.keyClick(window, "2")  # the NHS code follows the draft: ICDR 2 is R1 or R2
    nhs = window.grading_panel.nhs
    assert nhs.isVisible() and nhs.text() == "NHS R1/R2*"
    assert "R1 and R2" in nhs.toolTip()
    assert wholly_visible(nhs, window) and clipped_texts(window) == []
    QTest.keyClick(window, AMD_Q)
    wait_saved(ws)
    arbiter = store_call(ws, lambda s: s.current_grading(target, A))
    assert arbiter.role is ARBITER and arbiter.dr_grade == 2
    final = store_call(ws, load_state).final(target)
    assert final.how is HowReached.ARBITRATED and final.grading.grader == A
    qtbot.waitUntil(lambda: "Arbitration — 0 to grade" in panel.texts(), timeout=WAIT_S * 1000)
