"""Decode benchmarks for model_zoo.io, measured in one run on generated 3000×2000 images.

1. Thumbnail: ``read_image(jpeg, reduce=8)`` vs naive Pillow full decode + resize to the same
   size (goal >= 5x).
2. DICOM JPEG Baseline: ``read_image(dcm)`` (OpenCV fast path on the encapsulated frame) vs
   ``pydicom.dcmread`` + ``ds.pixel_array`` (goal >= 8x).

Both sides include opening and reading the file. Median of several runs after one warm-up.

Usage: ``.venv/bin/python benchmarks/bench_decode.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import model_zoo.io  # noqa: F401  # isort: skip - sets OPENCV_IO_MAX_IMAGE_PIXELS before cv2
import numpy as np
import pydicom
from PIL import Image

from model_zoo.io import read_image
from model_zoo.io.dicom_write import write_dicom

WIDTH, HEIGHT = 3000, 2000


def fundus_like(seed: int = 0) -> np.ndarray:
    """HEIGHT×WIDTH×3 uint8: smooth colour gradient in an ellipse, black outside, plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    rgb = np.stack(
        [60 + 150 * x / WIDTH, 30 + 90 * y / HEIGHT, 20 + 40 * (x + y) / (WIDTH + HEIGHT)], -1
    )
    rgb += rng.normal(0, 4, rgb.shape).astype(np.float32)
    outside = ((x - WIDTH / 2) / (WIDTH / 2)) ** 2 + ((y - HEIGHT / 2) / (HEIGHT / 2)) ** 2 > 1
    rgb[outside] = 0
    return np.asarray(np.clip(rgb, 0, 255), dtype=np.uint8)


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up: page cache, lazy imports, plugin discovery
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    rgb = fundus_like()
    with tempfile.TemporaryDirectory() as folder:
        jpeg = Path(folder) / "fundus.jpg"
        Image.fromarray(rgb).save(jpeg, "JPEG", quality=92)
        dcm = Path(folder) / "fundus.dcm"
        write_dicom(dcm, rgb, transfer_syntax="jpeg_baseline", jpeg_quality=92)

        thumb = read_image(jpeg, reduce=8).rgb
        size = (thumb.shape[1], thumb.shape[0])

        def naive_thumbnail() -> object:
            with Image.open(jpeg) as image:
                return image.convert("RGB").resize(size)

        def pydicom_full() -> object:
            return pydicom.dcmread(dcm).pixel_array

        def fast_full() -> object:
            return read_image(dcm).rgb

        ours_thumb = median_seconds(lambda: read_image(jpeg, reduce=8), args.repeats)
        naive = median_seconds(naive_thumbnail, args.repeats)
        ours_dcm = median_seconds(fast_full, args.repeats)
        reference = median_seconds(pydicom_full, args.repeats)
        diff = np.abs(read_image(dcm).rgb.astype(np.int16) - pydicom_full()).mean()  # type: ignore[operator]

    print(f"image {WIDTH}x{HEIGHT}, JPEG {jpeg.name} q92, median of {args.repeats}")
    print(
        f"thumbnail {size[0]}x{size[1]}: read_image(reduce=8) {ours_thumb * 1e3:.1f} ms, "
        f"PIL full load + resize {naive * 1e3:.1f} ms, ratio {naive / ours_thumb:.1f}x (goal >= 5x)"
    )
    print(
        f"DICOM JPEG Baseline: read_image fast path {ours_dcm * 1e3:.1f} ms, "
        f"pydicom pixel_array {reference * 1e3:.1f} ms, ratio {reference / ours_dcm:.1f}x "
        f"(goal >= 8x); mean |diff| {diff:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
