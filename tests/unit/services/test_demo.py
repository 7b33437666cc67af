"""The demo folder is generated once, completely, into the data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from sall_desktop.services.demo import READY_MARKER, demo_folder, demo_ready, ensure_demo_folder


def test_demo_is_generated_once_into_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".demo-partial-99999").mkdir()  # left by an interrupted first run
    assert not demo_ready()
    folder = ensure_demo_folder(n=4, size=128)
    assert folder == demo_folder() == tmp_path / "home" / "demo"
    images = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    assert len(images) == 4 and (folder / READY_MARKER).is_file()
    assert not list((tmp_path / "home").glob(".demo-partial-*"))
    stamps = {p: p.stat().st_mtime_ns for p in images}
    assert ensure_demo_folder(n=4, size=128) == folder
    assert {p: p.stat().st_mtime_ns for p in images} == stamps  # not generated again


def test_an_incomplete_demo_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "half.jpg").write_bytes(b"\xff\xd8")
    ensure_demo_folder(folder, n=2, size=96)
    assert not (folder / "half.jpg").exists() and demo_ready(folder)
