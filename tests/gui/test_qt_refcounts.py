"""Guard against the PySide6 6.12.0 refcount bug: Qt calls must not leak references to None.

Under Python 3.11, PySide6 6.12.0 dropped a reference to ``None`` on every call returning
nothing; after a few thousand calls the interpreter aborted. pyproject excludes that release;
this test fails on any release with the same fault long before it could abort a session.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot


class _Emitter(QObject):
    fired = Signal()


def test_void_and_bool_returns_keep_singleton_refcounts(qtbot: QtBot) -> None:
    label = QLabel()
    qtbot.addWidget(label)
    emitter = _Emitter()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(200):
        label.setText("x")
        label.update()
        emitter.fired.emit()
    # Other threads may touch the counts a little; a leaking binding loses 200 or more.
    assert sys.getrefcount(None) - none_before > -50
    assert sys.getrefcount(True) - true_before > -50
