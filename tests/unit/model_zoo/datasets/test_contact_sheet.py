"""The captioned contact sheet used for docs/synthetic_contact_sheet.png."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model_zoo.datasets.contact_sheet import (
    caption,
    gallery_specs,
    render_contact_sheet,
    write_contact_sheet,
)


def test_gallery_covers_every_grade_and_defect() -> None:
    specs = gallery_specs()
    assert {s.dr_grade for s in specs if s.gradable} == {0, 1, 2, 3, 4}
    assert {s.amd_grade for s in specs if s.gradable} == {0, 1, 2, 3}
    assert {s.defect for s in specs} == {None, "blur", "underexposed", "artefact"}
    assert caption(specs[2]) == "DR 2 · AMD 0 · R"
    assert caption(specs[-1]) == "ungradable (artefact) · L"


def test_sheet_grid_and_png(tmp_path: Path) -> None:
    specs = gallery_specs(size=96)[:5]
    sheet = render_contact_sheet(specs, tile=64, columns=4)
    assert sheet.shape == (2 * (64 + 22) + 3 * 6, 4 * 64 + 5 * 6, 3)
    path = tmp_path / "sheet.png"
    write_contact_sheet(path, specs, tile=64)
    decoded = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, sheet)
