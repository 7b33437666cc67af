"""Issue 22, item 8: libjpeg's "Corrupt JPEG data" and libpng's errors never reach stderr, while
what other code writes to stderr during a decode still does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[4]

_SCRIPT = """
import os, sys
import cv2, numpy as np
from model_zoo.io import LoadError, read_image
from model_zoo.io.quiet import decoder_output_filtered

if sys.argv[1] == "raw":  # the decoders as they are: they print
    for path in sys.argv[2:]:
        cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    sys.exit()
for path in sys.argv[2:]:
    try:
        read_image(path)
    except LoadError:
        pass
with decoder_output_filtered():
    print("a line of our own", file=sys.stderr)
    os.write(2, b"Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\\n")
    with decoder_output_filtered():  # nested windows share one capture
        os.write(2, b"libpng error: IDAT: CRC error\\n")
print("after", file=sys.stderr)
"""


def test_decoder_warnings_are_dropped_and_other_output_is_kept(tmp_path: Path) -> None:
    rgb = np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    jpeg = bytearray(cv2.imencode(".jpg", rgb)[1].tobytes())
    jpeg[-40:-2] = b"\x00" * 38  # damaged entropy data: decodes, with a warning
    png = bytearray(cv2.imencode(".png", rgb)[1].tobytes())
    png[-20] ^= 0xFF  # a CRC error in the last IDAT: refused
    paths = [tmp_path / "a.jpg", tmp_path / "b.png"]
    paths[0].write_bytes(bytes(jpeg))
    paths[1].write_bytes(bytes(png))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, mode, *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=True,
        )
        return done.stderr

    raw = run("raw")
    assert "Corrupt JPEG data" in raw and "libpng error" in raw  # the files do provoke them
    assert run("read_image") == "a line of our own\nafter\n"
