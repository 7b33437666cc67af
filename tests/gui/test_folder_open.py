"""A folder opens on its first image a grader can grade, not on a damaged file that sorts first."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_a_folder_opens_on_its_first_readable_image(
    qtbot: Any, open_workstation: Any, image_folder: Any
) -> None:
    folder: Path = image_folder(2)
    (folder / "a000_right.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    ws = open_workstation(folder)
    current = ws.window.navigator.current
    assert current is not None and current.gradable_image
    assert Path(current.path).name == "p000_left.jpg"  # the first readable by name
    first = ws.window.model.entry_at(0)
    assert first is not None and Path(first.path).name == "a000_right.jpg" and first.error
