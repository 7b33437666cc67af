"""Issue 22, item 2: small files that cost gigabytes and seconds are refused before decoding.

Each bomb of ``tests/fuzz/hostile.py`` is built at run time and read with default limits in a
fresh process that reports the outcome and how far its peak RSS grew (VmHWM reset before the
read). Asserted: the refusal, its reason, that the message names the limit it hit,
and that memory grew by no more than the file's own bytes plus a small margin. Times are
printed (``-s``), never asserted; ``benchmarks/bench_bombs.py`` measures them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.hostile import BOMBS

REPO = Path(__file__).resolve().parents[2]

EXPECTED: dict[str, tuple[str, str]] = {
    # bomb: (LoadError reason, words of the limit named in the message)
    "png_rgba16": ("deflate_bomb", "the limit is 32 times"),
    "tiff_rgba16_deflate": ("deflate_bomb", "the limit is 32 times"),
    "dicom_rle_rgb16": ("deflate_bomb", "the limit is 32 times"),
    "dicom_rle_grey16": ("deflate_bomb", "the limit is 32 times"),
    "dicom_j2k_grey16": ("deflate_bomb", "the limit is 32 times"),
    "dicom_empty_elements": ("too_large", "more than 100,000 data elements, the limit"),
    "dicom_deflated_elements": ("too_large", "more than 100,000 data elements, the limit"),
    "jpeg_comments": ("corrupt", "limit of 2048 marker segments"),
    "jpeg_fill": ("corrupt", "16 MB before the image data"),
    "jpeg_restarts": ("corrupt", "limit of 2048 marker segments"),
    "png_text_chunks": ("corrupt", "limit of 4096 chunks besides image data"),
}
MARGIN_MB = 128
"""Memory a refusal may take beyond the file's bytes (hashing, parsing the header, inflating
a deflated DICOM up to its cap)."""

_MEASURE = """
import json, sys, time
from model_zoo.io import LoadError, read_image

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # VmHWM back to the current RSS: the imports' peak is not the file's
base = status("VmRSS")
start = time.perf_counter()
try:
    image = read_image(sys.argv[1])
    result = ["decoded", "%dx%d" % image.rgb.shape[:2]]
except LoadError as error:
    result = [error.reason, str(error)]
result += [time.perf_counter() - start, (status("VmHWM") - base) / 1024]
print(json.dumps(result))
"""


def test_every_bomb_has_an_expectation() -> None:
    assert set(EXPECTED) == set(BOMBS)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_the_bomb_is_refused_within_its_memory(tmp_path: Path, name: str) -> None:
    suffix, build = BOMBS[name]
    path = build(tmp_path / f"{name}{suffix}")
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: unbounded, some took minutes
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    reason, message, seconds, growth_mb = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"{name}: {reason} in {seconds:.2f} s, +{growth_mb:.0f} MB: {message}")
    expected_reason, limit_words = EXPECTED[name]
    assert (reason, limit_words in message) == (expected_reason, True), message
    file_mb = path.stat().st_size / 2**20
    assert growth_mb < file_mb + MARGIN_MB, (growth_mb, file_mb)
    assert run.stderr == ""  # nothing printed by a decoder
