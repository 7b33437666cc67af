"""GUI test fixtures: data folder in tmp_path, tiny synthetic images, a running workstation.

Every test runs with ``SALL_DESKTOP_HOME`` (settings, database, thumbnail cache) in its own
``tmp_path`` and fails if it leaves a thread running (napari's dangling-thread idea).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from sall_desktop.gui.theme import apply_theme

WAIT_MS = 10_000


@pytest.fixture(autouse=True)
def _data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _no_dangling_threads() -> Iterator[None]:
    """Fail a test that leaves a (non-daemon or daemon) thread of ours running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"threads left running: {[t.name for t in left]}"


def write_fundus_like(path: Path, seed: int, size: int = 64) -> Path:
    """A small JPEG that looks vaguely like a fundus: a reddish disc on black, with noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 2 - 2, (40, 80, 190), -1)  # BGR: orange-red
    noise = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    image = cv2.add(image, noise)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture()
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Make a folder of ``n`` distinct images named ``pNNN_left/right.jpg`` (two eyes a patient)."""

    def make(n: int = 24, *, name: str = "study", size: int = 64) -> Path:
        folder = tmp_path / name
        for i in range(n):
            eye = "left" if i % 2 else "right"
            write_fundus_like(folder / f"p{i // 2:03d}_{eye}.jpg", seed=i, size=size)
        return folder

    return make


@pytest.fixture()
def qapp_themed(qapp):  # type: ignore[no-untyped-def]
    apply_theme(qapp, "dark")
    return qapp


@pytest.fixture()
def open_workstation(qtbot, qapp_themed, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: build, show and start a workstation on a folder; closes everything after."""
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings

    opened = []

    def start(
        folder: Path | None,
        *,
        db: Path | None = None,
        grader: str | None = "Dr Test",
        auto_advance: bool = True,
        retry_delays: tuple[float, ...] | None = None,
        wait_scan: bool = True,
    ):  # type: ignore[no-untyped-def]
        settings = AppSettings(tmp_path / "home" / "settings.ini")
        settings.auto_advance = auto_advance
        settings.grader = grader or ""
        ws = create_workstation(
            db or tmp_path / "home" / "labels.sqlite", settings=settings, retry_delays=retry_delays
        )
        opened.append(ws)
        ws.window.show()
        ws.window.start(str(folder) if folder is not None else None)
        if wait_scan:
            _wait_scanned(qtbot, ws)
        return ws

    yield start
    for ws in opened:
        ws.window._closing_confirmed = True  # tests that check the quit question do it themselves
        ws.window.close()
        ws.shutdown()


def _wait_scanned(qtbot, ws) -> None:  # type: ignore[no-untyped-def]
    window = ws.window

    def ready() -> None:
        assert window.folders.folder
        assert not window.folders.scanning
        assert window.navigator.current is not None and window.navigator.current.record is not None
        assert not window.grading.loading

    qtbot.waitUntil(ready, timeout=WAIT_MS)


@pytest.fixture()
def wait_saved(qtbot):  # type: ignore[no-untyped-def]
    """``wait_saved(ws)``: wait until every grading write of ``ws`` committed."""

    def wait(ws) -> None:  # type: ignore[no-untyped-def]
        qtbot.waitUntil(lambda: ws.services.grading.pending_count == 0, timeout=WAIT_MS)

    return wait


@pytest.fixture()
def store_call():  # type: ignore[no-untyped-def]
    """``store_call(ws, fn)``: run ``fn(store)`` on the store thread, return its result."""

    def call(ws, fn):  # type: ignore[no-untyped-def]
        return ws.store.submit(fn).result(timeout=10)

    return call
