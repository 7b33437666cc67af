"""Programme → Set up double grading…: a grader sets up a programme and becomes its QA lead,
gives another grader second grading, builds a test set from final grades and assigns it; a grader
who is not a QA lead sees it all disabled with the reason; the menu command waits for a sign-in
and a saved change reloads the window's work queues."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QWidget
from pytestqt.qtbot import QtBot

from sall_desktop.domain.grades import Grading, ImageRecord
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.gui.programme_dialog import NO_PROGRAMME, ProgrammeDialog
from sall_desktop.store import SqliteLabelStore, open_store
from tests.gui.conftest import WAIT_MS
from tests.gui.test_dialog_windows import _too_narrow
from tests.gui.test_quality_window import InlineStore

LEAD, SECOND, TRAINEE, NEW = "Dr Lead", "Dr Second", "Dr Trainee", "Dr New"
QA, PRIMARY, SECONDARY = ProgrammeRole.QA, ProgrammeRole.PRIMARY, ProgrammeRole.SECONDARY
CHECKED, UNCHECKED = Qt.CheckState.Checked, Qt.CheckState.Unchecked


@pytest.fixture()
def store(tmp_path: Path) -> Any:
    s = open_store(tmp_path / "labels.sqlite", app_version="test")
    for name in (LEAD, SECOND, TRAINEE):
        s.add_grader(name)
    yield s
    s.close()


def _open(qtbot: QtBot, store: SqliteLabelStore, user: str) -> ProgrammeDialog:
    dialog = ProgrammeDialog(InlineStore(store), user)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.setup is not None, timeout=WAIT_MS)
    return dialog


def _click(qtbot: QtBot, button: QAbstractButton) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _tick(dialog: ProgrammeDialog, grader: str, role: ProgrammeRole) -> None:
    item = dialog.role_item(grader, role)
    assert item is not None and item.flags() & Qt.ItemFlag.ItemIsUserCheckable
    item.setCheckState(CHECKED)


def _apply(qtbot: QtBot, dialog: ProgrammeDialog) -> None:
    with qtbot.waitSignal(dialog.changed, timeout=WAIT_MS):
        _click(qtbot, dialog.apply_button)
    qtbot.waitUntil(lambda: dialog.apply_button.isEnabled(), timeout=WAIT_MS)


def _audited(store: SqliteLabelStore, field: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.grader, json.loads(e.new_value or "{}")) for e in store.audit_log() if e.field == field
    ]


def _grade_normals(store: SqliteLabelStore, n: int) -> None:
    images = [ImageRecord(hashlib.sha256(f"n{i}".encode()).hexdigest(), f"/n/{i}.png")
              for i in range(n)]  # fmt: skip
    store.upsert_images(images)
    for image in images:
        store.add_grading(Grading(image.sha256, NEW, dr_grade=0, amd_grade=0, dme=0))


def test_a_grader_sets_up_the_programme_and_runs_it_as_qa_lead(
    qtbot: QtBot, store: SqliteLabelStore
) -> None:
    dialog = _open(qtbot, store, LEAD)
    assert dialog.reason.text() == NO_PROGRAMME
    assert dialog.fraction.value() == 10.0 and "at least 10 %" in dialog.fraction_note.text()
    assert not dialog.new_set_button.isEnabled()  # test sets belong to a programme
    dialog.fraction.setValue(25.0)
    dialog.seed.setValue(7)
    dialog.dr_step.setValue(3)
    dialog.amd_step.setValue(0)
    assert dialog.amd_step.text() == "0 (off)"
    _tick(dialog, SECOND, SECONDARY)
    _apply(qtbot, dialog)
    assert store.programme_rules() == RoutingRules(0.25, seed=7, dr_step=3, amd_step=0)
    roles = {(g.grader, g.role, g.scope) for g in store.programme_roles()}
    assert roles == {(LEAD, QA, ""), (SECOND, SECONDARY, "")}
    assert _audited(store, "programme.role") == [
        (LEAD, {"grader": LEAD, "role": "qa", "scope": ""}),
        (LEAD, {"grader": SECOND, "role": "secondary", "scope": ""}),
    ]
    assert [who for who, _ in _audited(store, "programme.rules")] == [LEAD]
    assert "QA lead" in dialog.message.text() and not dialog.reason.isVisible()
    item = dialog.role_item(LEAD, QA)
    assert item is not None and item.checkState() == CHECKED

    # A grader not yet known: added by name, given a role, stored on Apply.
    qtbot.keyClicks(dialog.new_grader, NEW)
    qtbot.keyClick(dialog.new_grader, Qt.Key.Key_Return)  # adds the row; it never applies
    assert store.programme_roles() and dialog.role_item(NEW, PRIMARY) is not None
    _tick(dialog, NEW, PRIMARY)
    _apply(qtbot, dialog)
    assert (NEW, PRIMARY) in {(g.grader, g.role) for g in store.programme_roles()}

    # Giving up the only QA lead role is refused, and says why.
    item = dialog.role_item(LEAD, QA)
    assert item is not None
    item.setCheckState(UNCHECKED)
    _click(qtbot, dialog.apply_button)
    qtbot.waitUntil(lambda: "only QA lead" in dialog.message.text(), timeout=WAIT_MS)
    assert (LEAD, QA) in {(g.grader, g.role) for g in store.programme_roles()}
    dialog.refresh()
    qtbot.waitUntil(lambda: dialog.role_item(LEAD, QA).checkState() == CHECKED, timeout=WAIT_MS)

    # A test set from final grades (normals the 25 % sample left alone), then assigned.
    _grade_normals(store, 8)
    _click(qtbot, dialog.new_set_button)
    form = dialog.new_set_dialog
    assert form is not None and not form.create_button.isEnabled()
    qtbot.keyClicks(form.name, "induction")
    form.images.setValue(3)
    form.unannounced.setChecked(True)
    with qtbot.waitSignal(dialog.changed, timeout=WAIT_MS):
        _click(qtbot, form.create_button)
    qtbot.waitUntil(lambda: dialog.tests.rowCount() == 1, timeout=WAIT_MS)
    assert [dialog.tests.item(0, c).text() for c in range(4)] == [
        "induction", "3", "nobody yet", "unannounced"]  # fmt: skip
    assert "3 images" in dialog.message.text()
    assert dialog.selected_test_set() == "induction"
    dialog.assign_to.setCurrentText(TRAINEE)
    with qtbot.waitSignal(dialog.changed, timeout=WAIT_MS):
        _click(qtbot, dialog.assign_button)
    qtbot.waitUntil(lambda: dialog.tests.item(0, 2).text() == TRAINEE, timeout=WAIT_MS)
    (made,) = store.test_sets()
    assert (made.name, made.size, made.graders, made.unannounced, made.created_by) == (
        "induction", 3, (TRAINEE,), True, LEAD)  # fmt: skip
    assert _audited(store, "programme.test_assignment") == [
        (LEAD, {"grader": TRAINEE, "name": "induction"})
    ]

    # The same name again: refused in one line, nothing saved.
    dialog.create_test_set("induction", 2)
    qtbot.waitUntil(lambda: "Not saved" in dialog.message.text(), timeout=WAIT_MS)
    assert "\n" not in dialog.message.text() and len(store.test_sets()) == 1


def _editable(root: QWidget) -> list[str]:
    """The enabled inputs and buttons of the dialog (Close aside)."""
    from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QLineEdit

    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit)
    return [
        f"{type(w).__name__} {w.objectName()} {w.text() if isinstance(w, QAbstractButton) else ''}"
        for w in root.findChildren(QWidget)
        if isinstance(w, kinds) and w.isEnabled() and w.isVisibleTo(root)
        and not (isinstance(w, QAbstractButton) and w.text() == "Close")
    ]  # fmt: skip


def test_a_grader_who_is_not_qa_lead_sees_it_read_only(
    qtbot: QtBot, store: SqliteLabelStore
) -> None:
    store.set_programme_rules(RoutingRules(seed=3), actor=LEAD)
    store.set_programme_role(LEAD, QA, actor=LEAD)
    store.set_programme_role(SECOND, SECONDARY, actor=LEAD)
    store.set_programme_role(SECOND, ProgrammeRole.ARBITER, actor=LEAD, scope="/data/clinic-b")
    _grade_normals(store, 4)
    store.create_test_set(
        "calibration", store.current_gradings(grader=NEW)[:2], actor=LEAD, source="final grades"
    )
    audit_rows = len(store.audit_log())

    dialog = _open(qtbot, store, SECOND)
    assert dialog.reason.isVisible()
    assert dialog.reason.text() == (
        f"Only a QA lead may change the programme; ask {LEAD} to make you one."
    )
    assert _editable(dialog) == []
    assert dialog.seed.value() == 3
    for grader in (LEAD, SECOND, TRAINEE):
        for role in (PRIMARY, SECONDARY, ProgrammeRole.ARBITER, QA):
            item = dialog.role_item(grader, role)
            assert item is not None and not item.flags() & Qt.ItemFlag.ItemIsUserCheckable
    row = next(
        r for r in range(dialog.roles.rowCount()) if dialog.roles.item(r, 0).text() == SECOND
    )
    assert dialog.roles.item(row, 5).text() == "Arbiter in /data/clinic-b"
    assert dialog.tests.item(0, 0).text() == "calibration"

    # Whatever reaches the dialog anyway is refused by the service, and nothing is written.
    dialog.apply()
    dialog.create_test_set("sneaky")
    qtbot.waitUntil(lambda: "Only a QA lead" in dialog.message.text(), timeout=WAIT_MS)
    dialog.assign("calibration", SECOND)
    qtbot.waitUntil(lambda: "Not saved" in dialog.message.text(), timeout=WAIT_MS)
    assert len(store.audit_log()) == audit_rows
    assert store.test_sets()[0].graders == ()

    # Made a QA lead, the same grader may change it (the dialog follows the sign-in).
    store.set_programme_role(SECOND, QA, actor=LEAD)
    dialog.set_user(None)
    qtbot.waitUntil(lambda: dialog.reason.text() == "Sign in to set up double grading.",
                    timeout=WAIT_MS)  # fmt: skip
    dialog.set_user(SECOND)
    qtbot.waitUntil(lambda: dialog.apply_button.isEnabled(), timeout=WAIT_MS)
    assert not dialog.reason.isVisible()


def test_the_dialog_fits_shows_all_its_content_and_closes_with_esc(
    qtbot: QtBot, store: SqliteLabelStore
) -> None:
    rules = RoutingRules(normal_fraction=0.1234)  # set on the command line
    store.set_programme_rules(rules, actor=LEAD)
    store.set_programme_role(LEAD, QA, actor=LEAD)
    store.set_programme_role(SECOND, ProgrammeRole.ARBITER, actor=LEAD, scope="/data/clinic-b")
    _grade_normals(store, 3)
    finals = store.current_gradings(grader=NEW)
    store.create_test_set("unannounced-check", finals, actor=LEAD, source="final grades",
                          unannounced=True)  # fmt: skip
    store.assign_test_set("unannounced-check", TRAINEE, actor=LEAD)
    dialog = _open(qtbot, store, LEAD)
    qtbot.waitExposed(dialog, timeout=WAIT_MS)
    # Shown rounded, kept as stored: Apply without an edit changes nothing.
    assert dialog.fraction.text() == "12.3 %"
    assert dialog.rules() == rules and dialog.role_changes() == []
    screen = dialog.screen().availableGeometry()
    assert dialog.width() <= screen.width() and dialog.height() <= screen.height()
    need = dialog.minimumSizeHint()
    assert dialog.width() >= need.width() and dialog.height() >= need.height()
    assert _too_narrow(dialog) == []
    dialog.new_grader.setFocus()
    qtbot.keyClick(dialog.new_grader, Qt.Key.Key_Escape)  # Esc in a field closes it too
    assert not dialog.isVisible()


def test_the_menu_command_waits_for_a_sign_in_and_a_change_reloads_the_queues(
    open_workstation: Callable[..., Any],
    image_folder: Callable[..., Path],
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = open_workstation(image_folder(2), grader=None)
    window = ws.window
    action = window.actions_by_id["programme_setup"]
    assert action.text() == "Set up double grading…" and not action.isEnabled()
    assert action in window.menuBar().actions()[5].menu().actions()  # the Programme menu
    panel = window.grading_panel
    qtbot.keyClicks(panel.grader_name, LEAD)
    qtbot.mouseClick(panel.sign_in_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.grading.grader == LEAD, timeout=WAIT_MS)
    assert action.isEnabled()
    reloads: list[bool] = []
    real = window.work.reload

    def reload() -> None:
        reloads.append(True)
        real()

    monkeypatch.setattr(window.work, "reload", reload)
    action.trigger()
    dialog = window.programme_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.setup is not None and dialog.apply_button.isEnabled(),
                    timeout=WAIT_MS)  # fmt: skip
    assert not window.work.work.active
    _tick(dialog, LEAD, PRIMARY)  # the lead grades too: a primary queue once the window reloads
    _apply(qtbot, dialog)
    qtbot.waitUntil(lambda: bool(reloads) and window.work.work.active, timeout=WAIT_MS)
    dialog.close()
