"""I/O benchmark (issue 2): decode ratios and time to the first catalogue entries.

Prints, measured in this one run:
- thumbnail via reduced decode / naive PIL full load + resize (goal >= 5x)   [bench_decode]
- DICOM JPEG fast path / pydicom pixel_array (goal >= 8x)                     [bench_decode]
- time to the first 500 catalogue entries of a 10,000-file folder (goal < 0.5 s)

Run: ``.venv/bin/python benchmarks/bench_io.py`` (or ``make bench``).
"""

from __future__ import annotations

import runpy
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sall_desktop.services.catalogue import FolderCatalogue, FoundFile

N_FILES = 10_000
FIRST = 500


def make_folder(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", base)
    assert ok
    data = encoded.tobytes()
    # 100 patients' folders of 100 files each, distinct bytes (a counter in a JPEG comment
    # would need re-encoding; appending after EOI keeps the file valid and the content distinct).
    for i in range(n):
        folder = root / f"patient_{i // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"{i}_{'left' if i % 2 else 'right'}.jpg").write_bytes(
            data + i.to_bytes(4, "little")
        )


def time_to_first_entries(root: Path) -> tuple[float, float]:
    found: list[FoundFile] = []
    first_at: list[float] = []
    start = time.perf_counter()

    def on_found(batch: list[FoundFile]) -> None:
        found.extend(batch)
        if len(found) >= FIRST and not first_at:
            first_at.append(time.perf_counter() - start)

    catalogue = FolderCatalogue(root, on_found=on_found, batch=FIRST).start()
    catalogue.wait()
    total = time.perf_counter() - start
    return first_at[0], total


def main() -> None:
    decode = Path(__file__).with_name("bench_decode.py")
    if decode.exists():
        try:
            runpy.run_path(str(decode), run_name="__main__")
        except SystemExit as stop:  # bench_decode ends with sys.exit(main())
            if stop.code:
                raise
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folder(root, N_FILES)
        first, total = time_to_first_entries(root)
    print(
        f"catalogue: first {FIRST} of {N_FILES} entries in {first:.3f} s (goal < 0.5 s); "
        f"all {N_FILES} found and described in {total:.1f} s"
    )


if __name__ == "__main__":
    main()
