"""Keyboard grading: signed, append-only, audited gradings; auto-advance; undo and redo."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from sall_desktop.domain.grades import UngradableReason
from sall_desktop.services.grading import SaveState
from tests.gui.conftest import WAIT_MS

AMD_KEYS = ("Q", "W", "E", "R")


NAMED = {"Escape": Qt.Key.Key_Escape, "Right": Qt.Key.Key_Right, "Return": Qt.Key.Key_Return}


def _key(widget, key: str) -> None:  # type: ignore[no-untyped-def]
    QTest.keyClick(widget, NAMED.get(key, key))


def test_grading_20_images_by_keyboard_writes_20_signed_audited_gradings(
    qtbot, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(22), grader="Dr Ada")
    window = ws.window
    expected = {}
    for i in range(20):
        entry = window.navigator.current
        assert entry is not None
        dr, amd = i % 5, i % 4
        _key(window, str(dr))
        assert window.navigator.current is entry  # DR alone is a draft: no write, no advance
        _key(window, AMD_KEYS[amd])
        expected[entry.sha256] = (dr, amd)
        qtbot.waitUntil(
            lambda e=entry: window.navigator.current is not e, timeout=WAIT_MS
        )  # auto-advance
    wait_saved(ws)

    gradings = store_call(ws, lambda s: s.current_gradings(grader="Dr Ada"))
    assert {g.image_sha256: (g.dr_grade, g.amd_grade) for g in gradings} == expected
    assert all(g.grader == "Dr Ada" and g.gradable for g in gradings)
    rows = [r for sha in expected for r in store_call(ws, lambda s, sha=sha: s.grading_rows(sha))]
    assert len(rows) == 20  # one append-only row per image: drafts are not written
    audited = {a.image_sha256 for a in store_call(ws, lambda s: s.audit_log())}
    assert audited == set(expected)
    # The acknowledgements reach the window as queued events, right after the commits.
    qtbot.waitUntil(
        lambda: (
            all(
                e.save_state is SaveState.SAVED
                for e in window.model.entries()
                if e.sha256 in expected
            )
            and window.status.save.text().endswith("All grades saved")
        ),
        timeout=WAIT_MS,
    )


def test_grade_controls_are_disabled_until_a_grader_signs_in(
    qtbot, open_workstation, image_folder, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4), grader=None)
    window = ws.window
    panel = window.grading_panel
    assert not panel.controls.isEnabled() and panel.sign_in_box.isVisible()
    _key(window, "2")
    _key(window, "Q")
    assert window.grading.draft.dr_grade is None  # keys do nothing without a named grader
    qtbot.keyClicks(panel.grader_name, "Dr Bea")
    qtbot.mouseClick(panel.sign_in_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: panel.controls.isEnabled() and not window.grading.loading, timeout=WAIT_MS
    )
    assert panel.grader_label.text() == "Dr Bea"
    assert "Dr Bea" in store_call(ws, lambda s: s.graders())


def test_undo_appends_the_previous_grading_and_redo_appends_the_new_one(
    qtbot, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(6), auto_advance=False)
    window = ws.window
    entry = window.navigator.current
    sha = entry.sha256
    for key in ("2", "W"):  # first grading: DR 2, AMD 1
        _key(window, key)
    for key in ("3",):  # change of mind: DR 3 (still complete: saved at once)
        _key(window, key)
    wait_saved(ws)
    current = store_call(ws, lambda s: s.current_grading(sha, "Dr Test"))
    assert (current.dr_grade, current.amd_grade) == (3, 1)

    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo: back to DR 2
    wait_saved(ws)
    current = store_call(ws, lambda s: s.current_grading(sha, "Dr Test"))
    assert (current.dr_grade, current.amd_grade) == (2, 1)
    assert window.grading_panel.dr_buttons[2].isChecked()

    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo: nothing
    wait_saved(ws)
    assert store_call(ws, lambda s: s.current_grading(sha, "Dr Test")) is None
    assert entry.grading is None
    # The undo is saved, but nothing on screen calls an image without a grade "saved".
    qtbot.waitUntil(lambda: window.grading_panel.save_state.text() == "Not graded", timeout=WAIT_MS)
    assert entry.save_state is None

    QTest.keyClick(window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)  # redo: DR 2
    QTest.keyClick(
        window,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )  # redo: DR 3
    wait_saved(ws)
    current = store_call(ws, lambda s: s.current_grading(sha, "Dr Test"))
    assert (current.dr_grade, current.amd_grade) == (3, 1)
    rows = store_call(ws, lambda s: s.grading_rows(sha))
    # Append-only: 2 gradings, an undo re-appending DR 2, a retraction, two redos.
    assert [(r.retracted, r.grading.dr_grade if r.grading else None) for r in rows] == [
        (False, 2), (False, 3), (False, 2), (True, None), (False, 2), (False, 3),
    ]  # fmt: skip
    assert window.navigator.current is entry  # auto-advance off: still on the same image


def test_undo_of_another_image_shows_it(qtbot, open_workstation, image_folder, wait_saved) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(6))
    window = ws.window
    first = window.navigator.current
    _key(window, "1")
    _key(window, "Q")
    qtbot.waitUntil(lambda: window.navigator.current is not first, timeout=WAIT_MS)
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.navigator.current is first
    wait_saved(ws)
    assert first.grading is None


def test_ungradable_needs_a_reason_and_blanks_the_disease_grades(
    qtbot, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4))
    window = ws.window
    entry = window.navigator.current
    _key(window, "2")
    _key(window, "U")
    assert window.navigator.current is entry and window.grading_panel.reason_box.isVisible()
    _key(window, "3")  # reason 3: artefact
    qtbot.waitUntil(lambda: window.navigator.current is not entry, timeout=WAIT_MS)
    wait_saved(ws)
    grading = store_call(ws, lambda s: s.current_grading(entry.sha256, "Dr Test"))
    assert not grading.gradable and grading.ungradable_reason is UngradableReason.ARTEFACT
    assert grading.dr_grade is None and grading.amd_grade is None


def test_every_reason_digit_answers_the_ungradable_key(
    qtbot, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4))
    window = ws.window
    for digit, reason in (("5", UngradableReason.MEDIA_OPACITY), ("6", UngradableReason.OTHER)):
        entry = window.navigator.current
        _key(window, digit)  # alone, 5 and 6 are no grade at all
        assert entry.grading is None and window.grading.draft.empty
        _key(window, "U")
        _key(window, digit)
        qtbot.waitUntil(lambda e=entry: window.navigator.current is not e, timeout=WAIT_MS)
        wait_saved(ws)
        grading = store_call(ws, lambda s, e=entry: s.current_grading(e.sha256, "Dr Test"))
        assert not grading.gradable and grading.ungradable_reason is reason


def test_dme_and_notes_are_saved_with_enter_and_kept_when_leaving(
    qtbot, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4))
    window = ws.window
    entry = window.navigator.current
    _key(window, "M")
    _key(window, "1")  # DME 1
    _key(window, "N")
    qtbot.keyClicks(window.grading_panel.notes, "cotton wool spot?")
    _key(window.grading_panel.notes, "Escape")  # leaves the note, keeps the draft
    assert window.grading.draft.notes == "cotton wool spot?"
    _key(window, "Right")  # leaving the image saves the partial grading
    assert window.navigator.current is not entry
    wait_saved(ws)
    grading = store_call(ws, lambda s: s.current_grading(entry.sha256, "Dr Test"))
    assert grading.dme == 1 and grading.notes == "cotton wool spot?" and grading.dr_grade is None


def test_next_ungraded_skips_graded_images(
    qtbot, open_workstation, image_folder, wait_saved
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(6), auto_advance=False)
    window = ws.window
    order = [window.model.entry_at(i) for i in range(6)]
    window.navigator.go_to(order[1])
    _key(window, "0")
    _key(window, "Q")
    window.navigator.go_to(order[0])
    _key(window, "G")
    assert window.navigator.current is order[2]


def test_a_second_grader_gets_their_own_grading_and_leaves_the_first_untouched(
    qtbot, open_workstation, image_folder, wait_saved, store_call
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4), grader="Dr A", auto_advance=False)
    window = ws.window
    entry = window.navigator.current
    _key(window, "3")
    _key(window, "E")
    wait_saved(ws)
    window.grading.set_grader("Dr B")
    qtbot.waitUntil(lambda: not window.grading.loading, timeout=WAIT_MS)
    assert entry.grading is None  # Dr B sees no grade of their own yet
    _key(window, "1")
    _key(window, "Q")
    wait_saved(ws)
    a = store_call(ws, lambda s: s.current_grading(entry.sha256, "Dr A"))
    b = store_call(ws, lambda s: s.current_grading(entry.sha256, "Dr B"))
    assert (a.dr_grade, a.amd_grade) == (3, 2) and (b.dr_grade, b.amd_grade) == (1, 0)


def test_enter_in_the_name_field_signs_in(qtbot, open_workstation, image_folder) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(2), grader=None)
    panel = ws.window.grading_panel
    panel.grader_name.setFocus()
    qtbot.keyClicks(panel.grader_name, "Dr Ret")
    qtbot.keyClick(panel.grader_name, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: ws.window.grading.grader == "Dr Ret", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not ws.window.grading.loading, timeout=WAIT_MS)
    assert ws.window.focusWidget() is ws.window.grid  # keys now grade, not type into a field
    focused = ws.window.focusWidget()
    QTest.keyClick(focused, "2")
    assert ws.window.grading.draft.dr_grade == 2
