"""Settings (theme, thumbnail size, auto-advance, shortcuts) persist in the data folder; F1 help."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QTextBrowser

from sall_desktop.gui.dialogs import CheatSheet, SettingsDialog
from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.shortcuts import COMMANDS
from sall_desktop.gui.theme import apply_theme


def test_settings_dialog_applies_and_persists(
    qtbot, open_workstation, image_folder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4))
    window = ws.window
    assert QApplication.instance().property("sall_theme") == "dark"  # the default
    dialog = window.open_settings()
    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
    dialog.thumb.setCurrentIndex(dialog.thumb.findData(128))
    dialog.auto_advance.setChecked(False)
    dialog.editors["next_ungraded"].setKeySequence(QKeySequence("Ctrl+J"))
    dialog.accept()
    assert QApplication.instance().property("sall_theme") == "light"
    assert window.grid.delegate.thumb_size == 128
    assert window.actions_by_id["next_ungraded"].shortcut().toString() == "Ctrl+J"
    again = AppSettings(tmp_path / "home" / "settings.ini")  # what the next start reads
    assert (again.theme, again.thumbnail_size, again.auto_advance) == ("light", 128, False)
    assert again.shortcut("next_ungraded") == "Ctrl+J"
    assert again.shortcut("fit") is None  # unchanged commands keep following the defaults
    entry = window.navigator.current
    QTest.keyClick(window, "1")
    QTest.keyClick(window, "Q")
    assert window.navigator.current is entry  # auto-advance is off now
    apply_theme(QApplication.instance(), "dark")


def test_the_triage_ordering_is_kept_for_the_next_start(
    qtbot, open_workstation, image_folder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from sall_desktop.services.triage import TriageOrder

    home = tmp_path / "home" / "settings.ini"
    AppSettings(home).triage_order = "sample"  # chosen in an earlier session
    ws = open_workstation(image_folder(2))
    order = ws.window.triage_panel.order
    assert order.currentData() == TriageOrder.SAMPLE  # the window opens with it
    order.setCurrentIndex(order.findData(TriageOrder.REFERABLE))
    assert AppSettings(home).triage_order == "referable"  # what the next start reads


def test_cheat_sheet_lists_every_command(qtbot, open_workstation, image_folder) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(2))
    QTest.keyClick(ws.window, Qt.Key.Key_F1)
    sheets = [
        w for w in QApplication.topLevelWidgets() if isinstance(w, CheatSheet) and w.isVisible()
    ]
    assert sheets
    content = sheets[0].findChild(QTextBrowser).toPlainText()
    assert "DR 2 — Moderate NPDR" in content and "AMD 3 — CNV" in content and "Undo" in content
    sheets[0].close()


def test_input_cache_size_defaults_and_zero_turns_preparing_off(qapp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sall_desktop.app import create_workstation

    settings = AppSettings(tmp_path / "settings.ini")
    assert settings.input_cache_gb == 4.0
    for bad in ("-1", "lots"):
        settings.qsettings.setValue("model/input_cache_gb", bad)
        assert settings.input_cache_gb == 4.0
    settings.input_cache_gb = 0
    ws = create_workstation(tmp_path / "labels.sqlite", settings=settings, decode_workers=0)
    try:
        assert ws.services.model_inputs is None and ws.inference.input_cache() is None
    finally:
        ws.window._closing_confirmed = True
        ws.window.close()
        ws.shutdown()


def _sheet_text(window) -> str:  # type: ignore[no-untyped-def]
    QTest.keyClick(window, Qt.Key.Key_F1)
    sheet = next(
        w for w in QApplication.topLevelWidgets() if isinstance(w, CheatSheet) and w.isVisible()
    )
    text = sheet.findChild(QTextBrowser).toPlainText()
    sheet.close()
    return text


def test_a_conflicting_key_is_named_and_keeps_ok_disabled(
    qtbot, open_workstation, image_folder, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(2))
    window = ws.window
    dialog = window.open_settings()
    page = dialog.shortcuts
    assert dialog.ok_button.isEnabled() and page.message.isHidden()
    dialog.editors["next_ungraded"].setKeySequence(QKeySequence("Ctrl+G"))
    assert not dialog.ok_button.isEnabled()
    assert not page.message.isHidden()
    assert page.message.text() == (
        "Next ungraded image: Ctrl+G is already the key of “Grade the folder with the model”."
    )
    dialog.accept()  # refused, even when called directly
    assert dialog.isVisible() and dialog.tabs.currentWidget() is page
    assert AppSettings(tmp_path / "home" / "settings.ini").shortcut("next_ungraded") is None
    # A default's other keys count too: Space also moves to the next image.
    page.reset("next_ungraded")
    dialog.editors["toggle_pair"].setKeySequence(QKeySequence("Space"))
    assert not dialog.ok_button.isEnabled() and "“Next image”" in page.message.text()
    # After U the digits pick a reason: no other command may take one.
    page.reset("toggle_pair")
    dialog.editors["fit"].setKeySequence(QKeySequence("6"))
    assert page.message.text().startswith(
        "Fit to window: 6 is already the key of “After U: reason 6"
    )
    page.reset("fit")
    assert dialog.ok_button.isEnabled() and page.message.isHidden()
    # Freeing a key first (the ✕ leaves a command keyless) lets another command take it.
    dialog.editors["next_ungraded"].clear()
    dialog.editors["fit"].setKeySequence(QKeySequence("G"))
    assert dialog.ok_button.isEnabled()
    dialog.accept()
    assert not dialog.isVisible()
    assert window.actions_by_id["next_ungraded"].shortcuts() == []
    assert window.actions_by_id["fit"].shortcut().toString() == "G"
    stored = AppSettings(tmp_path / "home" / "settings.ini")
    assert (stored.shortcut("next_ungraded"), stored.shortcut("fit")) == ("", "G")
    text = _sheet_text(window)  # F1 shows the keys in effect
    assert "G\nFit to window" in text and "(no key)\nNext ungraded image" in text


def test_an_overridden_key_works_in_the_window_and_shows_on_f1(
    qtbot, open_workstation, image_folder
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4), auto_advance=False)
    window = ws.window
    dialog = window.open_settings()
    dialog.editors["next"].setKeySequence(QKeySequence("J"))
    assert (
        dialog.table.item([c.id for c in COMMANDS].index("next"), 2).text() == ""
    )  # PgDown and Space go with the default
    dialog.accept()
    first = window.navigator.current
    QTest.keyClick(window, "J")
    assert window.navigator.current is not first  # the new key moves on
    second = window.navigator.current
    QTest.keyClick(window, Qt.Key.Key_Right)
    assert window.navigator.current is second  # the old one no longer does
    text = _sheet_text(window)
    assert "J\nNext image" in text and "PgDown" not in text.split("Previous image")[0]


def test_reset_restore_defaults_and_the_filter(qtbot, qapp_themed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = AppSettings(tmp_path / "settings.ini")
    settings.set_shortcut("fit", "Ctrl+J")
    settings.set_shortcut("zoom_in", "")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    page = dialog.shortcuts
    assert dialog.editors["fit"].keySequence().toString() == "Ctrl+J"
    assert dialog.editors["zoom_in"].keySequence().isEmpty()
    assert page.resets["fit"].isEnabled() and not page.resets["undo"].isEnabled()
    page.resets["fit"].click()
    assert dialog.editors["fit"].keySequence().toString() == "F"
    assert not page.resets["fit"].isEnabled()
    box = dialog.findChild(QDialogButtonBox)
    box.button(QDialogButtonBox.StandardButton.RestoreDefaults).click()
    assert dialog.editors["zoom_in"].keySequence().toString() == "+"
    assert page.overrides() == {c.id: None for c in COMMANDS}
    ids = [c.id for c in COMMANDS]
    page.filter.setText("zoom")
    shown = [i for row, i in enumerate(ids) if not dialog.table.isRowHidden(row)]
    assert shown == ["zoom_in", "zoom_out"]
    page.filter.setText("pgdown")  # a default's other key finds its command too
    assert [i for row, i in enumerate(ids) if not dialog.table.isRowHidden(row)] == ["next"]
    page.filter.clear()
    assert not any(dialog.table.isRowHidden(row) for row in range(len(ids)))


def test_the_team_store_setting_keeps_an_address_but_never_a_password(
    qtbot, qapp_themed, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = AppSettings(tmp_path / "settings.ini")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.team_store.setText("postgresql://grader:secret@server/screening")
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted and dialog.team_problem.isVisibleTo(dialog)
    assert "~/.pgpass" in dialog.team_problem.text() and settings.team_store == ""
    dialog.team_store.setText("mysql://server/screening")
    dialog.accept()
    assert "postgresql://" in dialog.team_problem.text()
    dialog.team_store.setText(" postgresql://grader@server/screening?sslmode=require ")
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted
    dialog.apply()
    again = AppSettings(tmp_path / "settings.ini")
    assert again.team_store == "postgresql://grader@server/screening?sslmode=require"
    assert "secret" not in (tmp_path / "settings.ini").read_text(encoding="utf-8")
