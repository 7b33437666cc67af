"""Export and import dialogs run on the store thread and show the summary and conflict report."""

from __future__ import annotations

import csv

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import WAIT_MS


def test_export_dialog_writes_the_graders_labels(
    qtbot, open_workstation, image_folder, wait_saved, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4))
    window = ws.window
    for dr, amd in (("2", "W"), ("0", "Q")):
        QTest.keyClick(window, dr)
        QTest.keyClick(window, amd)
    wait_saved(ws)
    dialog = window.open_export()
    dialog.format.setCurrentIndex(dialog.format.findData("eyepacs"))
    out = tmp_path / "export" / "labels.csv"
    dialog.path.setText(str(out))
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert dialog.progress.isVisible() or dialog.summary is not None
    qtbot.waitUntil(lambda: dialog.summary is not None, timeout=WAIT_MS)
    assert not dialog.progress.isVisible()
    assert dialog.summary.rows == 2 and "2 written" in dialog.output.toPlainText()
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted(r["level"] for r in rows) == ["0", "2"]
    dialog.close()


def test_import_dialog_shows_conflicts_and_never_overwrites_my_grade(
    qtbot, open_workstation, image_folder, wait_saved, store_call, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4))
    window = ws.window
    first = window.navigator.current
    QTest.keyClick(window, "1")
    QTest.keyClick(window, "Q")  # my grade of the first image: DR 1
    wait_saved(ws)
    labels = tmp_path / "trainLabels.csv"
    stems = [e.name.rsplit(".", 1)[0] for e in window.model.entries()]
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "level"])
        for i, stem in enumerate(stems):
            writer.writerow([stem, 4 if stem == first.name.rsplit(".", 1)[0] else i % 3])
    dialog = window.open_import()
    dialog.path.setText(str(labels))
    dialog.format.setCurrentIndex(dialog.format.findData("eyepacs"))
    dialog.as_what.setCurrentIndex(dialog.as_what.findData("grader"))
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=WAIT_MS)
    report = dialog.report
    assert (
        len(report.conflicts) == 1 and report.conflicts[0].image_id == first.name.rsplit(".", 1)[0]
    )
    assert "conflict" in dialog.output.toPlainText()
    assert dialog.save_report.isEnabled()
    mine = store_call(ws, lambda s: s.current_grading(first.sha256, "Dr Test"))
    assert mine.dr_grade == 1  # the file never overwrites a grade typed in the app (R5)
    dialog.close()
    qtbot.waitUntil(
        lambda: sum(e.grading is not None for e in window.model.entries()) == 4, timeout=WAIT_MS
    )
