"""Grades images by keyboard in a real workstation until killed (driven by test_crash_restart).

Prints ``ACK <sha256> <dr> <amd>`` when a grading write has committed (what the grader saw as
"saved") and ``LAST <sha256>`` when the "last image" setting has committed. Usage:
``python kill_driver.py DB FOLDER`` with ``SALL_DESKTOP_HOME`` set by the caller.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

AMD_KEYS = "QWER"


def main() -> int:
    db, folder = sys.argv[1], sys.argv[2]
    app = QApplication([])
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings
    from sall_desktop.services.grading import GradingEvent

    settings = AppSettings()
    settings.grader = "Dr Crash"
    settings.auto_advance = True
    workstation = create_workstation(db, settings=settings)
    window = workstation.window

    def on_change(event: GradingEvent) -> None:
        grading = event.write.grading if event.write is not None else None
        if event.row_id is not None and not event.error and grading is not None:
            print(f"ACK {event.sha256} {grading.dr_grade} {grading.amd_grade}", flush=True)

    window.grading_bridge.changed.connect(on_change)
    window.session.last_image_saved.connect(lambda sha: print(f"LAST {sha}", flush=True))
    window.show()
    window.start(folder)
    step = [0]

    def tick() -> None:
        if window.grading._ready() and not window.folders.scanning:
            i = step[0]
            step[0] += 1
            QTest.keyClick(window, str(i % 5))
            QTest.keyClick(window, AMD_KEYS[i % 4])
        QTimer.singleShot(40, tick)

    QTimer.singleShot(200, tick)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
