"""Test sets served in a grader's queue, through the real window (offscreen, tiny CPU model): a
programme where P's grades are final; the QA lead assigns grader T an announced test set of
three of those images and an unannounced one. T signs in: the work selector lists the test with
its count; T answers by keyboard; the answers are test answers (never gradings: the final grades
and every grading are unchanged), the model's output is withheld and no other grade is shown,
"✓ Saved" comes only after the commit, undo and redo work; the unannounced images are served in
T's primary queue like any other image and saving one writes a test answer."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from sall_desktop.domain.grades import GraderRole, Grading
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.grading import SaveState
from sall_desktop.services.programme import load_state
from sall_desktop.services.test_queue import TEST_BLIND, UNANNOUNCED_HIDDEN, TestSetChoice
from sall_desktop.store import SqliteLabelStore
from tests.gui.conftest import WAIT_MS, WAIT_S
from tests.gui.test_programme_queues import shown_shas, sign_in, visible_texts

P, T, QA = "Dr Primary", "Dr Trainee", "QA Lead"
INDUCTION, SPOT = "induction", "spot"
AMD_0 = "Q"
SAVED_TEXT = "✓ Saved"


def set_up(store: SqliteLabelStore, shas: list[str]) -> None:
    """P grades images 0-5 normal (each final: no normal is sampled); T graded image 5 for real.
    T holds the primary role and is assigned "induction" (announced: 0-2) and "spot"
    (unannounced: 3-5). Images 6 and 7 are nobody's yet: real primary work."""
    store.set_programme_rules(RoutingRules(normal_fraction=0.0, seed=3), actor=QA)
    for grader in (P, T):
        store.set_programme_role(grader, ProgrammeRole.PRIMARY, actor=QA)
    for sha in shas[:6]:
        store.add_grading(Grading(sha, P, dr_grade=0, amd_grade=0))
    store.add_grading(Grading(shas[5], T, dr_grade=0, amd_grade=0))
    finals = load_state(store).finals()
    for name, members, unannounced in ((INDUCTION, shas[:3], False), (SPOT, shas[3:6], True)):
        reference = [g for sha in members if (g := finals[sha].grading) is not None]
        store.create_test_set(
            name, reference, actor=QA, source="final grades", unannounced=unannounced
        )
        store.assign_test_set(name, T, actor=QA)


def choose(window: Any, key: object) -> None:
    combo = window.work_panel.combo
    combo.setCurrentIndex(next(i for i in range(combo.count()) if combo.itemData(i) == key))


def answers(store_call: Callable[..., Any], ws: Any) -> dict[tuple[str, str], int | None]:
    rows = store_call(ws, lambda s: s.test_answers())
    return {(name, g.image_sha256): g.dr_grade for name, g in rows if g.grader == T}


class GatedAnswers:
    """Hold each ``add_test_answer`` on the store thread until :meth:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        original = SqliteLabelStore.add_test_answer

        def add_test_answer(
            store: SqliteLabelStore, name: str, grading: Grading, **kwargs: Any
        ) -> int:
            assert self.gate.wait(WAIT_S), "the gate was never opened"
            return original(store, name, grading, **kwargs)

        monkeypatch.setattr(SqliteLabelStore, "add_test_answer", add_test_answer)

    def release(self) -> None:
        self.gate.set()


def test_a_trainee_answers_test_sets_in_their_queue(
    model_workstation: Callable[..., Any],
    tiny_model: Path,
    image_folder: Callable[..., Path],
    qtbot: Any,
    store_call: Callable[..., Any],
    wait_saved: Callable[[Any], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = model_workstation(image_folder(8), tiny_model)
    window, panel = ws.window, ws.window.work_panel
    shas = [e.sha256 for e in window.model.entries()]
    store_call(ws, lambda s: set_up(s, shas))
    gradings_before = store_call(ws, lambda s: s.current_gradings())
    finals_before = store_call(ws, load_state).finals()

    # ---------------------------------------------------------------- the selector
    sign_in(qtbot, window, T)
    qtbot.waitUntil(lambda: "Test: induction — 3 to answer" in panel.texts(), timeout=WAIT_MS)
    # The primary queue: 6 and 7 (real work), 3 and 4 (unannounced; 5 T graded for real).
    assert panel.texts() == ["All images", "Primary — 4 to grade", "Test: induction — 3 to answer"]
    assert not [t for t in panel.texts() if SPOT in t]  # an unannounced set is never listed

    # ---------------------------------------------------------------- the announced set
    choose(window, TestSetChoice(INDUCTION))
    assert shown_shas(window) == shas[:3]
    window.navigator.go_to(window.model.entry_at(0))
    model_panel, beside = window.model_panel, window.grading_panel.beside
    save_state = window.grading_panel.save_state

    def withheld(entry: Any, why: str) -> None:
        qtbot.waitUntil(lambda: window.model.prediction(entry.sha256) is not None, timeout=WAIT_MS)
        assert window.model.shown_prediction(entry) is None
        assert model_panel.hidden_note.isVisible() and model_panel.hidden_note.text() == why
        assert not model_panel.output.isVisible()
        assert window.status.withheld.isVisible() and window.status.withheld.text() == why
        texts = visible_texts(window)
        assert not any(t.startswith("Model:") or "Confidence" in t for t in texts)
        assert not beside.isVisible() and not [t for t in texts if P in t]  # nobody else's

    gate = GatedAnswers(monkeypatch)
    answered = {shas[0]: 1, shas[1]: 0, shas[2]: 3}
    for position, sha in enumerate(shas[:3]):
        entry = window.navigator.current
        assert entry is window.model.entry_at(position) and entry.sha256 == sha
        withheld(entry, TEST_BLIND)
        assert entry.grading is None  # P's final grade is not T's draft
        QTest.keyClick(window, str(answered[sha]))
        QTest.keyClick(window, AMD_0)  # complete: saved at once, as a test answer
        if position == 0:  # "Saved" only after the commit
            assert entry.save_state is SaveState.PENDING and save_state.text() == "Saving…"
            gate.release()
            qtbot.waitUntil(lambda: save_state.text() == SAVED_TEXT, timeout=WAIT_MS)
            qtbot.waitUntil(
                lambda: "Test: induction — 2 to answer" in panel.texts(), timeout=WAIT_MS
            )  # the count drops
        assert entry.grading is not None and entry.grading.dr_grade == answered[sha]
        withheld(entry, TEST_BLIND)  # still hidden after the save
        QTest.keyClick(window, Qt.Key.Key_Right)
    wait_saved(ws)
    qtbot.waitUntil(lambda: "Test: induction — 0 to answer" in panel.texts(), timeout=WAIT_MS)
    assert answers(store_call, ws) == {(INDUCTION, sha): dr for sha, dr in answered.items()}
    assert store_call(ws, lambda s: s.current_gradings()) == gradings_before
    assert store_call(ws, load_state).finals() == finals_before

    # The answers are shown while the test is chosen, and only then.
    first = window.model.entries_with_sha(shas[0])[0]
    choose(window, None)
    assert first.grading is None  # T has no grading of it
    choose(window, TestSetChoice(INDUCTION))
    assert first.grading is not None and first.grading.dr_grade == 1

    # Undo the last (first) answer: "no answer" is appended; redo answers again.
    last = window.model.entries_with_sha(shas[2])[0]
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_saved(ws)
    assert (INDUCTION, shas[2]) not in answers(store_call, ws)
    assert window.navigator.current is last and last.grading is None
    qtbot.waitUntil(lambda: save_state.text() == "Not graded", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Test: induction — 1 to answer" in panel.texts(), timeout=WAIT_MS)
    QTest.keyClick(window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    wait_saved(ws)
    assert answers(store_call, ws)[(INDUCTION, shas[2])] == 3
    qtbot.waitUntil(lambda: "Test: induction — 0 to answer" in panel.texts(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: save_state.text() == SAVED_TEXT, timeout=WAIT_MS)
    assert store_call(ws, lambda s: s.current_gradings()) == gradings_before

    # ---------------------------------------------------------------- the unannounced set
    choose(window, GraderRole.PRIMARY)
    assert shown_shas(window) == [shas[3], shas[4], shas[6], shas[7]]
    entry = window.model.entries_with_sha(shas[3])[0]
    window.navigator.go_to(entry)
    withheld(entry, UNANNOUNCED_HIDDEN)
    assert not [t for t in visible_texts(window) if re.search(r"\btest\b", t, re.IGNORECASE)]
    QTest.keyClick(window, "2")
    QTest.keyClick(window, AMD_0)
    wait_saved(ws)
    qtbot.waitUntil(lambda: save_state.text() == SAVED_TEXT, timeout=WAIT_MS)
    assert answers(store_call, ws)[(SPOT, shas[3])] == 2
    qtbot.waitUntil(lambda: "Primary — 3 to grade" in panel.texts(), timeout=WAIT_MS)
    # A real image of the same queue is graded as before: a primary grading, model shown.
    real = window.model.entries_with_sha(shas[6])[0]
    window.navigator.go_to(real)
    qtbot.waitUntil(
        lambda: any(t.startswith("Model:") for t in visible_texts(window)), timeout=WAIT_MS
    )
    QTest.keyClick(window, "1")
    QTest.keyClick(window, AMD_0)
    wait_saved(ws)
    qtbot.waitUntil(lambda: "Primary — 2 to grade" in panel.texts(), timeout=WAIT_MS)
    mine = store_call(ws, lambda s: s.current_gradings(grader=T))
    assert {(g.image_sha256, g.role) for g in mine} == {
        (shas[5], GraderRole.PRIMARY),
        (shas[6], GraderRole.PRIMARY),
    }  # the test answers are not among T's gradings
    finals = store_call(ws, load_state).finals()
    assert {sha: finals[sha] for sha in shas[:6]} == finals_before
    assert (SPOT, shas[5]) not in answers(store_call, ws)  # graded for real: never a test item
