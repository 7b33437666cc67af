"""Settings (theme, thumbnail size, auto-advance, shortcuts) persist in the data folder; F1 help."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QTextBrowser

from sall_desktop.gui.dialogs import CheatSheet
from sall_desktop.gui.settings import AppSettings
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
    dialog.editors["next_ungraded"].setKeySequence(QKeySequence("Ctrl+G"))
    dialog.accept()
    assert QApplication.instance().property("sall_theme") == "light"
    assert window.grid.delegate.thumb_size == 128
    assert window.actions_by_id["next_ungraded"].shortcut().toString() == "Ctrl+G"
    again = AppSettings(tmp_path / "home" / "settings.ini")  # what the next start reads
    assert (again.theme, again.thumbnail_size, again.auto_advance) == ("light", 128, False)
    assert again.shortcut("next_ungraded") == "Ctrl+G"
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
