"""Viewer: enhancement off the GUI thread with a visible badge; zoom, fit, 1:1; both eyes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QTest

from sall_desktop.imaging.enhance import EnhancePreset
from tests.gui.conftest import WAIT_MS

"""Long enough for a cold 2-core CI machine that is also loading the demo model in the
background (a wait ends as soon as its condition holds; speed is measured in benchmarks/)."""


def _centre_colour(view) -> QColor:  # type: ignore[no-untyped-def]
    image = view._item.image
    return image.pixelColor(image.width() // 2, image.height() // 2)


def test_enhancement_badge_shows_only_while_enhanced_pixels_are_shown(
    qtbot, open_workstation, image_folder
) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4, size=96))
    window = ws.window
    view = (
        window.viewer_panel.left_view
        if window.navigator.current.laterality.value == "R"
        else window.viewer_panel.right_view
    )
    qtbot.waitUntil(lambda: view.has_image(), timeout=WAIT_MS)
    assert not view.enhanced_badge.isVisible()
    colour = _centre_colour(view)
    assert colour.red() != colour.green()  # a colour photograph

    QTest.keyClick(window, "V")  # red-free
    qtbot.waitUntil(lambda: view.enhanced_badge.isVisible(), timeout=WAIT_MS)
    assert "Red-free" in view.enhanced_badge.text()
    grey = _centre_colour(view)
    assert grey.red() == grey.green() == grey.blue()  # the green channel shown as grey
    assert window.viewer_panel.preset.currentData() == EnhancePreset.RED_FREE

    window.viewer_panel.gamma.setValue(150)  # the slider combines with the preset
    qtbot.waitUntil(lambda: "γ 1.50" in view.enhanced_badge.text(), timeout=WAIT_MS)

    QTest.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ShiftModifier)  # original look
    qtbot.waitUntil(lambda: not view.enhanced_badge.isVisible(), timeout=WAIT_MS)
    assert _centre_colour(view) == colour

    QTest.keyClick(window, "V")
    QTest.keyClick(window, Qt.Key.Key_Right)  # the look stays on for the next image
    qtbot.waitUntil(
        lambda: any(v.enhanced_badge.isVisible() and v.sha256 == window.navigator.current.sha256
                    for v in (window.viewer_panel.left_view, window.viewer_panel.right_view)),
        timeout=WAIT_MS,
    )  # fmt: skip


def test_zoom_fit_and_actual_size_with_indicator(qtbot, open_workstation, image_folder) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(2, size=256))
    window = ws.window
    window.viewer.set_show_pair(False)
    view = window.viewer_panel.left_view
    qtbot.waitUntil(
        lambda: view.has_image() and view.sha256 == window.navigator.current.sha256, timeout=WAIT_MS
    )
    assert view.fitted and view.zoom_badge.text().startswith("Fit")
    QTest.keyClick(window, "O")
    assert view.scale_factor == 1.0 and view.zoom_badge.text() == "100%"
    QTest.keyClick(window, "+")
    assert abs(view.scale_factor - 1.25) < 1e-6 and view.zoom_badge.text() == "125%"
    QTest.keyClick(window, "-")
    assert abs(view.scale_factor - 1.0) < 1e-6
    QTest.keyClick(window, "F")
    assert view.fitted


def test_both_eyes_of_a_patient_side_by_side(qtbot, open_workstation, image_folder) -> None:  # type: ignore[no-untyped-def]
    ws = open_workstation(image_folder(4))
    window = ws.window
    panel = window.viewer_panel
    qtbot.waitUntil(
        lambda: panel.left_view.has_image() and panel.right_view.has_image(), timeout=WAIT_MS
    )
    # Facing the patient: right eye (OD) on the left of the screen, left eye (OS) on the right.
    assert panel.left_view.eye_badge.text().startswith("OD")
    assert panel.right_view.eye_badge.text().startswith("OS")
    assert {panel.left_view.sha256, panel.right_view.sha256} == {
        e.sha256
        for e in window.model.entries()
        if e.patient_id == window.navigator.current.patient_id
    }
    QTest.keyClick(window, "B")
    qtbot.waitUntil(
        lambda: (
            not panel.right_view.isVisible()
            and panel.left_view.sha256 == window.navigator.current.sha256
        ),
        timeout=WAIT_MS,
    )


def test_the_other_eye_described_after_the_current_image_joins_it(
    qtbot, open_workstation, image_folder
) -> None:  # type: ignore[no-untyped-def]
    # The scan describes files in parallel: the current image can be shown before its other
    # eye has a record. Replay that order: shown alone, then the partner's record arrives.
    ws = open_workstation(image_folder(4))
    window = ws.window
    panel = window.viewer_panel
    current = window.navigator.current
    partner = window.model.partner_of(current)
    assert partner is not None
    window.viewer.show(current, None)  # as when the partner was not yet described
    qtbot.waitUntil(lambda: not panel.right_view.isVisible(), timeout=WAIT_MS)
    window.model.records_added.emit([partner.sha256])
    qtbot.waitUntil(
        lambda: panel.left_view.has_image() and panel.right_view.has_image(), timeout=WAIT_MS
    )
    assert {panel.left_view.sha256, panel.right_view.sha256} == {current.sha256, partner.sha256}
