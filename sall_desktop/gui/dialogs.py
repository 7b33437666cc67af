"""Small dialogs: the keyboard cheat-sheet (F1), settings with the shortcut editor, and the
quit-with-pending question."""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.gui.geometry import remember_geometry
from sall_desktop.gui.settings import THUMBNAIL_SIZES, AppSettings
from sall_desktop.gui.shortcuts import (
    COMMANDS,
    COMMANDS_BY_ID,
    UNGRADABLE_REASONS,
    Command,
    Conflict,
    bindings,
    conflicts,
    effective_keys,
)
from sall_desktop.gui.theme import theme_named
from sall_desktop.services.team_store import team_url_problem


def key_text(command: Command, settings: AppSettings) -> list[str]:
    """The key sequences of ``command`` in effect (user override first), in native text."""
    keys = effective_keys(command, settings.shortcut(command.id))
    return [native(k) for k in keys] or ["(no key)"]


def _first_key(command: Command) -> str:
    """The default key the editor shows: the first, or none for a command without a key."""
    return command.keys[0] if command.keys else ""


def native(keys: str) -> str:
    """``keys`` as the platform writes them (Ctrl on Windows and Linux, ⌘ on macOS)."""
    return QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText) or keys


class CheatSheet(QDialog):
    """Every command and its keys, grouped; generated from the command table."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        groups: dict[str, list[Command]] = defaultdict(list)
        for command in COMMANDS:
            groups[command.group].append(command)
        html = ["<style>td{padding:2px 10px 2px 0} kbd{font-weight:700}</style>"]
        html.append(
            "<p>Grade with one hand: DR on the digit row, AMD on the row beneath. A grading "
            "is saved as soon as DR and AMD are both set (or the image is ungradable with "
            "a reason), then the next image follows (auto-advance, see Settings). "
            "Settings → Shortcuts changes the keys.</p>"
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
        prefix = escape(key_text(COMMANDS_BY_ID["ungradable"], settings)[0])
        html.append(f"<h3>Ungradable reasons (after <kbd>{prefix}</kbd>)</h3><p>{reasons}</p>")
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
        remember_geometry(self, "cheat_sheet", 720, 680)


class ShortcutsPage(QWidget):
    """One key per command, edited in place; clashes are named and keep ``ok`` False.

    The rule is ``gui.shortcuts.conflicts`` (plain Python, unit-tested); this page shows it:
    the offending rows turn red and one line names the other command.
    """

    changed = Signal(bool)
    """Emitted after every edit with ``ok``: True when no key clashes."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: part of a command or a key")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter)
        self.table = QTableWidget(len(COMMANDS), 4)
        self.table.setHorizontalHeaderLabels(["Command", "Key", "Also", ""])
        self.table.verticalHeader().hide()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        # Whole command texts: the table scrolls sideways rather than clipping them.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(60)
        self.editors: dict[str, QKeySequenceEdit] = {}
        self.resets: dict[str, QPushButton] = {}
        self.names: dict[str, QTableWidgetItem] = {}
        self.also: dict[str, QTableWidgetItem] = {}
        self.last_edited: str | None = None
        for row, command in enumerate(COMMANDS):
            self.names[command.id] = QTableWidgetItem(command.text)
            self.table.setItem(row, 0, self.names[command.id])
            override = settings.shortcut(command.id)
            editor = QKeySequenceEdit(
                QKeySequence(_first_key(command) if override is None else override)
            )
            editor.setMaximumSequenceLength(1)  # one key, recorded at once (no chord wait)
            editor.setClearButtonEnabled(True)  # an empty key frees it for another command
            editor.setToolTip("Click, then press the new key; the ✕ leaves the command keyless")
            editor.keySequenceChanged.connect(partial(self._edited, command.id))
            self.table.setCellWidget(row, 1, editor)
            self.also[command.id] = QTableWidgetItem()
            self.table.setItem(row, 2, self.also[command.id])
            reset = QPushButton("Reset")
            reset.setToolTip(f"Back to {' or '.join(native(k) for k in command.keys) or 'no key'}")
            reset.clicked.connect(partial(self.reset, command.id))
            self.table.setCellWidget(row, 3, reset)
            self.editors[command.id] = editor
            self.resets[command.id] = reset
        self.table.setColumnWidth(1, 170)
        self.message = QLabel()
        self.message.setObjectName("shortcutConflict")
        self.message.setWordWrap(True)  # a long command name wraps rather than being cut
        app = QApplication.instance()
        danger = theme_named(str(app.property("sall_theme") if app is not None else "")).danger
        self.danger = QColor(danger)
        self.message.setStyleSheet(f"color: {danger}; font-weight: 600;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        self.found: list[Conflict] = []
        self.check()

    def overrides(self) -> dict[str, str | None]:
        """What the editors say, as settings overrides: None is the default, "" no key."""
        out: dict[str, str | None] = {}
        for command in COMMANDS:
            sequence = self.editors[command.id].keySequence()
            if sequence == QKeySequence(_first_key(command)):
                out[command.id] = None  # the defaults, secondary keys included
            else:
                out[command.id] = sequence.toString(QKeySequence.SequenceFormat.PortableText)
        return out

    def reset(self, command_id: str) -> None:
        self.editors[command_id].setKeySequence(
            QKeySequence(_first_key(COMMANDS_BY_ID[command_id]))
        )

    def restore_defaults(self) -> None:
        for command in COMMANDS:
            self.reset(command.id)

    @property
    def ok(self) -> bool:
        return not self.found

    def _edited(self, command_id: str, _keys: QKeySequence) -> None:
        self.last_edited = command_id
        self.check()

    def check(self) -> list[Conflict]:
        """Recompute the conflicts, mark their rows and name the first in the message line."""
        overrides = self.overrides()
        keys = bindings(overrides)
        self.found = conflicts(keys)
        bad = {c.command_id for c in self.found}
        for command in COMMANDS:
            item = self.names[command.id]
            if command.id in bad:
                item.setForeground(self.danger)
            else:
                item.setData(Qt.ItemDataRole.ForegroundRole, None)  # the theme's colour again
            # The default's other keys (Enter, PgDown, Space…) count only while it is kept.
            also = keys[command.id][1:] if overrides[command.id] is None else ()
            self.also[command.id].setText(", ".join(native(k) for k in also))
            self.resets[command.id].setEnabled(overrides[command.id] is not None)
        # Name the clash of the row just edited first: that is the key the grader is choosing.
        mine = [c for c in self.found if c.command_id == self.last_edited]
        shown = (mine or self.found)[:1]
        self.message.setText(
            "".join(f"{COMMANDS_BY_ID[c.command_id].text}: {c.message()}" for c in shown)
        )
        self.message.setVisible(bool(shown))
        self.changed.emit(self.ok)
        return self.found

    def _filter(self, text: str) -> None:
        needle = text.strip().lower()
        for row, command in enumerate(COMMANDS):
            editor = self.editors[command.id].keySequence()
            hay = " ".join(
                [command.text, command.group, editor.toString(), self.also[command.id].text()]
            ).lower()
            self.table.setRowHidden(row, bool(needle) and needle not in hay)


class SettingsDialog(QDialog):
    """Theme, thumbnail size, auto-advance, both-eyes view and keyboard shortcuts."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
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
        self.team_store = QLineEdit(settings.team_store)
        self.team_store.setPlaceholderText("empty: this workstation's own label database")
        self.team_store.setToolTip(
            "postgresql://grader@server/screening — grades go to the team's shared store from "
            "the next start. No password here: ~/.pgpass or PGPASSWORD holds it."
        )
        self.team_problem = QLabel()
        self.team_problem.setWordWrap(True)
        self.team_problem.setObjectName("fieldError")
        self.team_problem.setVisible(False)
        form.addRow("Theme", self.theme)
        form.addRow("Thumbnails", self.thumb)
        form.addRow("Grading", self.auto_advance)
        form.addRow("Viewer", self.show_pair)
        form.addRow("Team store", self.team_store)
        form.addRow("", self.team_problem)

        self.shortcuts = ShortcutsPage(settings)
        self.table = self.shortcuts.table
        self.editors = self.shortcuts.editors
        self.tabs = QTabWidget()
        self.tabs.addTab(general, "General")
        self.tabs.addTab(self.shortcuts, "Shortcuts")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        restore = buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        restore.setToolTip("Every command back to its default keys")
        restore.clicked.connect(self.shortcuts.restore_defaults)
        self.shortcuts.changed.connect(self.ok_button.setEnabled)
        self.ok_button.setEnabled(self.shortcuts.ok)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)
        remember_geometry(self, "settings", 900, 680)

    def accept(self) -> None:
        # OK is disabled while keys clash; this also refuses an accept() called directly.
        if self.shortcuts.check():
            self.tabs.setCurrentWidget(self.shortcuts)
            return
        address = self.team_store.text().strip()
        problem = team_url_problem(address) if address else ""
        self.team_problem.setText(problem)
        self.team_problem.setVisible(bool(problem))
        if problem:
            self.tabs.setCurrentIndex(0)
            self.team_store.setFocus()
            return
        super().accept()

    def apply(self) -> None:
        """Write the dialog's values to the settings (called after OK)."""
        s = self.settings
        s.theme = str(self.theme.currentData())
        s.thumbnail_size = int(self.thumb.currentData())
        s.auto_advance = self.auto_advance.isChecked()
        s.show_pair = self.show_pair.isChecked()
        s.team_store = self.team_store.text()
        for command_id, keys in self.shortcuts.overrides().items():
            s.set_shortcut(command_id, keys)
        s.sync()


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
