"""Every dialog opens showing all its content, remembers its geometry and closes with Esc."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTabWidget,
    QWidget,
)
from pytestqt.qtbot import QtBot

from sall_desktop.gui.dialogs import CheatSheet, SettingsDialog
from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.transfer_dialogs import ExportDialog, ImportDialog
from tests.gui.conftest import WAIT_MS

MakeDialog = Callable[[AppSettings], QDialog]

DIALOGS: dict[str, MakeDialog] = {
    "cheat sheet": lambda s: CheatSheet(s),
    "settings": lambda s: SettingsDialog(s),
    # The service is used only when the grader runs the transfer, never here.
    "export": lambda s: ExportDialog(cast(Any, None), "Dr Test"),
    "import": lambda s: ImportDialog(cast(Any, None), "Dr Test", []),
}


@pytest.fixture()
def settings(qapp_themed: QApplication, tmp_path: Path) -> AppSettings:
    return AppSettings(tmp_path / "home" / "settings.ini")


def _open(qtbot: QtBot, make: MakeDialog, settings: AppSettings) -> QDialog:
    dialog = make(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog, timeout=WAIT_MS)
    return dialog


def _too_narrow(dialog: QDialog) -> list[str]:
    """Texts of the visible labels and buttons (and table cells) narrower than their text."""
    short = []
    for widget in dialog.findChildren(QWidget):
        if not widget.isVisibleTo(dialog) or not isinstance(widget, QLabel | QAbstractButton):
            continue
        if isinstance(widget, QLabel) and widget.wordWrap():
            continue  # wraps instead of clipping
        text = widget.text().replace("&", "")
        if text and QFontMetrics(widget.font()).horizontalAdvance(text) > widget.width():
            short.append(text)
    for table in dialog.findChildren(QTableWidget):
        if not table.isVisibleTo(dialog):
            continue
        metrics = QFontMetrics(table.font())
        for row in range(table.rowCount()):
            for col in range(table.columnCount()):
                item = table.item(row, col)
                if item is not None and item.text():
                    if metrics.horizontalAdvance(item.text()) > table.columnWidth(col):
                        short.append(item.text())
    return short


@pytest.mark.parametrize("name", list(DIALOGS))
def test_the_dialog_opens_showing_all_its_content(
    qtbot: QtBot, settings: AppSettings, name: str
) -> None:
    dialog = _open(qtbot, DIALOGS[name], settings)
    screen = dialog.screen().availableGeometry()
    assert dialog.width() <= screen.width() and dialog.height() <= screen.height()
    need = dialog.minimumSizeHint()
    assert dialog.width() >= need.width() and dialog.height() >= need.height()
    tabs = dialog.findChildren(QTabWidget)
    for page in range(tabs[0].count()) if tabs else [0]:
        if tabs:
            tabs[0].setCurrentIndex(page)
        QApplication.processEvents()
        assert _too_narrow(dialog) == [], f"clipped in {name}, page {page}"
    box = dialog.findChild(QDialogButtonBox)
    closing = {QDialogButtonBox.ButtonRole.RejectRole}
    assert any(box.buttonRole(b) in closing for b in box.buttons()), "no Close or Cancel"
    dialog.close()


@pytest.mark.parametrize("name", list(DIALOGS))
def test_the_dialog_reopens_at_the_size_the_grader_left(
    qtbot: QtBot, settings: AppSettings, name: str
) -> None:
    first = _open(qtbot, DIALOGS[name], settings)
    wanted = QSize(first.width() + 30, first.height() - 20)
    first.resize(wanted)
    first.close()
    second = _open(qtbot, DIALOGS[name], settings)
    assert second.size() == wanted
    second.close()


def _fields(dialog: QDialog, kind: type[QWidget]) -> list[QWidget]:
    # A QKeySequenceEdit records Esc as a key while it has focus (accepted); its inner line
    # edit is left out: Esc anywhere else must close the dialog.
    return [
        w
        for w in dialog.findChildren(kind)
        if w.isVisible() and type(w.parent()).__name__ != "QKeySequenceEdit"
    ]


@pytest.mark.parametrize("name", list(DIALOGS))
def test_esc_closes_the_dialog_wherever_the_focus_is(
    qtbot: QtBot, settings: AppSettings, name: str
) -> None:
    dialog = _open(qtbot, DIALOGS[name], settings)
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert not dialog.isVisible()
    # Esc in a field (the filter box, a path, a combo box) closes the dialog too.
    for kind in (QLineEdit, QComboBox):
        dialog = _open(qtbot, DIALOGS[name], settings)
        if isinstance(dialog, SettingsDialog) and kind is QLineEdit:
            dialog.tabs.setCurrentWidget(dialog.shortcuts)  # where its filter box is
        fields = _fields(dialog, kind)
        if not fields:
            dialog.close()
            continue
        fields[0].setFocus()
        QTest.keyClick(fields[0], Qt.Key.Key_Escape)
        assert not dialog.isVisible(), f"Esc in a {kind.__name__} of {name} did not close it"


def test_the_content_check_notices_a_clipped_label(qtbot: QtBot) -> None:
    dialog = QDialog()
    qtbot.addWidget(dialog)
    label = QLabel("a label far longer than the fifty pixels it is given", dialog)
    label.setFixedWidth(50)
    dialog.show()
    assert _too_narrow(dialog) == [label.text()]


def test_esc_closes_each_dialog_opened_from_the_window(
    qtbot: QtBot, open_workstation: Any, image_folder: Any
) -> None:
    ws = open_workstation(image_folder(2))
    window = ws.window
    opened: list[QDialog] = [window.open_settings(), window.open_export(), window.open_import()]
    QTest.keyClick(window, Qt.Key.Key_F1)
    opened += [
        w for w in QApplication.topLevelWidgets() if isinstance(w, CheatSheet) and w.isVisible()
    ]
    for dialog in opened:
        assert dialog.isVisible()
        QTest.keyClick(dialog.focusWidget() or dialog, Qt.Key.Key_Escape)
        assert not dialog.isVisible(), type(dialog).__name__
