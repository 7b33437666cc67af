"""Small dialogs: the keyboard cheat-sheet (F1), settings, and the quit-with-pending question."""

from __future__ import annotations

from collections import defaultdict
from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.gui.settings import THUMBNAIL_SIZES, AppSettings
from sall_desktop.gui.shortcuts import COMMANDS, UNGRADABLE_REASONS, Command


def key_text(command: Command, settings: AppSettings) -> list[str]:
    """The key sequences of ``command`` in effect (user override first), in native text."""
    override = settings.shortcut(command.id)
    keys = [override] if override else list(command.keys)
    return [QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) or k for k in keys]


class CheatSheet(QDialog):
    """Every command and its keys, grouped; generated from the command table."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(720, 620)
        groups: dict[str, list[Command]] = defaultdict(list)
        for command in COMMANDS:
            groups[command.group].append(command)
        html = ["<style>td{padding:2px 10px 2px 0} kbd{font-weight:700}</style>"]
        html.append(
            "<p>Grade with one hand: DR on the digit row, AMD on the row beneath. A grading "
            "is saved as soon as DR and AMD are both set (or the image is ungradable with "
            "a reason), then the next image follows (auto-advance, see Settings).</p>"
        )
        for group, commands in groups.items():
            html.append(f"<h3>{escape(group)}</h3><table>")
            for command in commands:
                keys = " or ".join(f"<kbd>{escape(k)}</kbd>" for k in key_text(command, settings))
                html.append(f"<tr><td>{keys}</td><td>{escape(command.text)}</td></tr>")
            html.append("</table>")
        reasons = ", ".join(
            f"<kbd>{i + 1}</kbd> {escape(text)}" for i, (_, text) in enumerate(UNGRADABLE_REASONS)
        )
        html.append(f"<h3>Ungradable reasons (after <kbd>U</kbd>)</h3><p>{reasons}</p>")
        html.append(
            "<p>Mouse: the wheel zooms at the pointer, dragging pans; click a thumbnail.</p>"
        )
        browser = QTextBrowser()
        browser.setHtml("".join(html))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(browser)
        layout.addWidget(buttons)


class SettingsDialog(QDialog):
    """Theme, thumbnail size, auto-advance, both-eyes view and keyboard shortcuts."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.resize(620, 560)
        self.settings = settings
        general = QWidget()
        form = QFormLayout(general)
        self.theme = QComboBox()
        self.theme.addItem("Dark (for dim grading rooms)", "dark")
        self.theme.addItem("Light", "light")
        self.theme.setCurrentIndex(self.theme.findData(settings.theme))
        self.thumb = QComboBox()
        for size in THUMBNAIL_SIZES:
            self.thumb.addItem(f"{size} px", size)
        self.thumb.setCurrentIndex(self.thumb.findData(settings.thumbnail_size))
        self.auto_advance = QCheckBox("Go to the next image after a complete grading")
        self.auto_advance.setChecked(settings.auto_advance)
        self.show_pair = QCheckBox("Show the other eye of the patient beside the image")
        self.show_pair.setChecked(settings.show_pair)
        form.addRow("Theme", self.theme)
        form.addRow("Thumbnails", self.thumb)
        form.addRow("Grading", self.auto_advance)
        form.addRow("Viewer", self.show_pair)

        self.table = QTableWidget(len(COMMANDS), 2)
        self.table.setHorizontalHeaderLabels(["Command", "Shortcut"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.editors: dict[str, QKeySequenceEdit] = {}
        for row, command in enumerate(COMMANDS):
            self.table.setCellWidget(row, 0, _label(command.text))
            editor = QKeySequenceEdit(
                QKeySequence(settings.shortcut(command.id) or command.keys[0])
            )
            self.table.setCellWidget(row, 1, editor)
            self.editors[command.id] = editor
        tabs = QTabWidget()
        tabs.addTab(general, "General")
        tabs.addTab(self.table, "Shortcuts")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self._defaults
        )
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)

    def _defaults(self) -> None:
        for command in COMMANDS:
            self.editors[command.id].setKeySequence(QKeySequence(command.keys[0]))

    def apply(self) -> None:
        """Write the dialog's values to the settings (called after OK)."""
        s = self.settings
        s.theme = str(self.theme.currentData())
        s.thumbnail_size = int(self.thumb.currentData())
        s.auto_advance = self.auto_advance.isChecked()
        s.show_pair = self.show_pair.isChecked()
        for command in COMMANDS:
            keys = (
                self.editors[command.id]
                .keySequence()
                .toString(QKeySequence.SequenceFormat.PortableText)
            )
            s.set_shortcut(command.id, None if keys in ("", command.keys[0]) else keys)
        s.sync()


def _label(text: str) -> QWidget:
    label = QLabel(text)
    label.setContentsMargins(6, 0, 6, 0)
    return label


def quit_box(parent: QWidget, pending: int, error: str) -> QMessageBox:
    """The question asked when quitting with grades not yet saved (R4)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Grades not saved")
    box.setText(f"{pending} grade(s) are not saved yet.")
    detail = f"The last attempt failed: {error}\n\n" if error else ""
    box.setInformativeText(
        detail + "If you quit now they will be lost. Retry saves them again (free disk space or "
        "close the program that holds the database first)."
    )
    box.setStandardButtons(
        QMessageBox.StandardButton.Retry
        | QMessageBox.StandardButton.Discard
        | QMessageBox.StandardButton.Cancel
    )
    box.button(QMessageBox.StandardButton.Discard).setText("Quit and lose them")
    box.setDefaultButton(QMessageBox.StandardButton.Retry)
    box.setWindowModality(Qt.WindowModality.ApplicationModal)
    return box
