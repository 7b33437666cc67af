"""The scan plan without Qt: every file found and described once, the end reported once, and a
scan thread that dies reported as the end with its error."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from sall_desktop.services.catalogue import DescribedFile, FolderCatalogue, FoundFile
from sall_desktop.services.scan_plan import start_scan, watch_scan
from tests.unit.services.conftest import HANG_GUARD_S


def _folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(n):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        assert cv2.imwrite(str(root / f"p{i}_left.jpg"), pixels)
    return root


def test_a_planned_scan_finds_describes_and_ends_once(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "study", 5)
    found: list[FoundFile] = []
    described: list[DescribedFile] = []
    ends: list[BaseException | None] = []
    done = threading.Event()
    catalogue = start_scan(str(folder), on_found=found.extend, on_described=described.append)

    def ended(error: BaseException | None) -> None:
        ends.append(error)
        done.set()

    watcher = watch_scan(catalogue, ended)
    assert done.wait(HANG_GUARD_S)
    watcher.join(HANG_GUARD_S)
    assert sorted(f.path.name for f in found) == [f"p{i}_left.jpg" for i in range(5)]
    assert sorted(d.found.path.name for d in described) == [f"p{i}_left.jpg" for i in range(5)]
    assert ends == [None]


def test_a_scan_thread_that_dies_ends_the_scan_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = start_scan(
        str(_folder(tmp_path / "study", 1)), on_found=lambda _: None, on_described=lambda _: None
    )
    catalogue.wait()

    def broken(self: FolderCatalogue) -> None:
        raise RuntimeError("the scan thread died")

    monkeypatch.setattr(FolderCatalogue, "wait", broken)
    ends: list[BaseException | None] = []
    watch_scan(catalogue, ends.append).join(HANG_GUARD_S)
    assert len(ends) == 1 and isinstance(ends[0], RuntimeError)
