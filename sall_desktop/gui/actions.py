"""Build the window's QActions (user-configurable shortcuts) and menus from the command table."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.shortcuts import COMMANDS, Command, effective_keys

MENUS = (
    ("File", "&File"),
    ("Grade", "&Grade"),
    ("Navigate", "&Navigate"),
    ("View", "&View"),
    ("Model", "&Model"),
    ("Programme", "&Programme"),
    ("Help", "&Help"),
)


def key_sequences(command: Command, settings: AppSettings) -> list[QKeySequence]:
    """The command's keys in effect: its defaults, the user's one key, or none (override "")."""
    return [QKeySequence(k) for k in effective_keys(command, settings.shortcut(command.id))]


def build_actions(
    window: QMainWindow, settings: AppSettings, handlers: dict[str, Callable[[], object]]
) -> dict[str, QAction]:
    """One QAction per command with a handler, in menus by group; returns them by id."""
    menus: dict[str, QMenu] = {}
    for group, title in MENUS:
        menu = window.menuBar().addMenu(title)
        menus[group] = menu
    actions: dict[str, QAction] = {}
    for command in COMMANDS:
        handler = handlers.get(command.id)
        if handler is None:
            continue
        action = QAction(command.text, window)
        action.setObjectName(command.id)
        action.setShortcuts(key_sequences(command, settings))
        action.triggered.connect(_discarding(handler))
        window.addAction(action)  # shortcuts work even while the menu bar is hidden
        menus[command.group].addAction(action)
        actions[command.id] = action
    quit_action = QAction("Quit", window)
    quit_action.setShortcut(QKeySequence.StandardKey.Quit)
    quit_action.triggered.connect(window.close)
    menus["File"].addSeparator()
    menus["File"].addAction(quit_action)
    actions["quit"] = quit_action
    return actions


def _discarding(handler: Callable[[], object]) -> Callable[[], None]:
    # Slots return nothing: a value returned into Qt (e.g. a bool) is never wanted there.
    def run() -> None:
        handler()

    return run


def apply_shortcuts(actions: dict[str, QAction], settings: AppSettings) -> None:
    """Re-read shortcut overrides after the settings dialog."""
    for command in COMMANDS:
        action = actions.get(command.id)
        if action is not None:
            action.setShortcuts(key_sequences(command, settings))
