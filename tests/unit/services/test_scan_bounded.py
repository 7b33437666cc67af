"""Issue 22, item 3: the headless scan (``scan``, ``import``, ``grade``) decodes in capped decode
processes, as the GUI does, and refuses the issue's bombs file by file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sall_desktop.services.decode_pool import DecodePool
from sall_desktop.services.folder_scan import scan_folder
from tests.fuzz.hostile import BOMBS


def test_the_issues_five_bombs_are_refused_and_the_folder_still_scans(tmp_path: Path) -> None:
    names = ["png_rgba16", "tiff_rgba16_deflate", "dicom_rle_rgb16", "dicom_rle_grey16"]
    names.append("dicom_j2k_grey16")
    for name in names:
        suffix, build = BOMBS[name]
        build(tmp_path / f"{name}{suffix}")
    image = np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert cv2.imwrite(str(tmp_path / "10_left.jpg"), image)
    summary = scan_folder(tmp_path, workers=1)
    assert [Path(r.path).name for r in summary.records] == ["10_left.jpg"]
    failures = {path.name: reason for path, reason in summary.failures}
    assert sorted(failures) == sorted(f"{n}{BOMBS[n][0]}" for n in names)
    assert all("decompression bomb" in reason for reason in failures.values()), failures


def test_the_scan_decodes_in_processes_with_a_memory_cap(tmp_path: Path) -> None:
    # 60 MB of 16-bit RGBA noise: fine in this process, too much for a worker given 32 MB of
    # address space beyond its start (the small file fits). The refusal shows the file was read
    # in a capped worker, not here.
    noise = np.random.default_rng(4).integers(0, 65536, (2500, 3000, 4), dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "big.png"), noise, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert cv2.imwrite(str(tmp_path / "small.png"), noise[:32, :32])
    pool = DecodePool(1, memory_limit=32 << 20)
    try:
        summary = scan_folder(tmp_path, decoder=pool)
    finally:
        pool.close()
    assert [Path(r.path).name for r in summary.records] == ["small.png"]
    ((path, reason),) = summary.failures
    assert path.name == "big.png" and "memory" in reason, reason
