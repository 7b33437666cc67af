"""The decode budget (issue 22): bit depth and channels count, legitimate images still decode,
header walks stop at their limits, and 16-bit scaling never widens the whole image."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import model_zoo.io.budget as budget_module
import model_zoo.io.pixels as pixels_module
from model_zoo.io import LoadError, read_image
from model_zoo.io.decode import _raster_cost
from model_zoo.io.dicom_parse import ElementBudgetError, count_elements
from model_zoo.io.dicom_write import write_dicom
from model_zoo.io.headers import Header, JpegHeader
from model_zoo.io.limits import (
    DEFAULT_MAX_DECODE_BYTES,
    MAX_DICOM_ELEMENTS,
    MAX_JPEG_SEGMENTS,
    MAX_PNG_OTHER_CHUNKS,
)
from model_zoo.io.pixels import scale_to_uint8

REPO = Path(__file__).resolve().parents[4]
MB = 2**20


def _noise(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(0, info.max, shape, endpoint=True, dtype=dtype)


def _png(path: Path, array: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    path.write_bytes(data.tobytes())
    return path


# ------------------------------------------------------------------------- the estimate


def test_a_100_mpx_16_bit_rgb_image_fits_the_default_budget_and_rgba_does_not() -> None:
    rgb = _raster_cost("png", Header(10_000, 10_000, 16, 3), 1, 300 * MB)
    rgba = _raster_cost("png", Header(10_000, 10_000, 16, 4), 1, 400 * MB)
    assert rgb.memory <= DEFAULT_MAX_DECODE_BYTES < rgba.memory
    jpeg = _raster_cost("jpeg", JpegHeader(10_000, 10_000, 8, 3), 1, 20 * MB)
    assert jpeg.memory == 2 * 300_000_000 and jpeg.compressed is None  # no expansion check
    reduced = _raster_cost("jpeg", JpegHeader(10_000, 10_000, 8, 3), 8, 20 * MB)
    assert reduced.memory == 2 * 1250 * 1250 * 3


def test_bit_depth_and_channels_decide_the_refusal(tmp_path: Path) -> None:
    # 600 × 500 × 4 × 16-bit = 2.4 MB of samples, twice (OpenCV's copy), plus 1.2 MB of RGB
    # result and grey plane: 6.0 MB. Without alpha 4.8 MB, in 8 bits 3.6 MB.
    rgba16 = _png(tmp_path / "rgba16.png", _noise((500, 600, 4), np.uint16))
    rgb16 = _png(tmp_path / "rgb16.png", _noise((500, 600, 3), np.uint16))
    rgba8 = _png(tmp_path / "rgba8.png", _noise((500, 600, 4), np.uint8))
    limit = 5_400_000
    with pytest.raises(LoadError) as caught:
        read_image(rgba16, max_decode_bytes=limit)
    error = caught.value
    assert error.reason == "too_large"
    assert "600 × 500 pixels with 4 × 16-bit sample(s) per pixel" in str(error)
    assert "needs about 6 MB of memory, above the 5 MB limit" in str(error)
    assert read_image(rgb16, max_decode_bytes=limit).rgb.shape == (500, 600, 3)
    assert read_image(rgba8, max_decode_bytes=limit).rgb.shape == (500, 600, 3)


@pytest.mark.parametrize(("syntax", "fits"), [("explicit_le", True), ("rle", False)])
def test_dicom_budget_counts_the_decoders_copies(tmp_path: Path, syntax: str, fits: bool) -> None:
    path = tmp_path / f"{syntax}.dcm"
    write_dicom(path, _noise((200, 300, 3), np.uint16), transfer_syntax=syntax, sop_class="op16")
    limit = 1_000_000  # 360 kB of 16-bit samples twice, 240 kB of result; RLE's 4 copies: not
    if fits:
        assert read_image(path, max_decode_bytes=limit).meta.bit_depth == 16
    else:
        with pytest.raises(LoadError) as caught:
            read_image(path, max_decode_bytes=limit)
        assert caught.value.reason == "too_large" and "3 × 16-bit" in str(caught.value)


def test_a_compressed_image_may_expand_up_to_the_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _png(tmp_path / "zeros.png", np.zeros((400, 500, 3), np.uint16))
    assert read_image(path).rgb.shape == (400, 500, 3)  # 1.2 MB of zeros: under the floor
    monkeypatch.setattr(budget_module, "EXPANSION_FLOOR_BYTES", 1 << 20)
    with pytest.raises(LoadError) as caught:
        read_image(path)
    assert caught.value.reason == "deflate_bomb" and "like a decompression bomb" in str(
        caught.value
    )
    noisy = _png(tmp_path / "noise.png", _noise((400, 500, 3), np.uint16))
    assert read_image(noisy).rgb.shape == (400, 500, 3)  # a photograph barely compresses


# ----------------------------------------------------------------- the 16 -> 8-bit scaling


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.int8])
def test_scaling_in_chunks_matches_the_formula(
    monkeypatch: pytest.MonkeyPatch, dtype: type
) -> None:
    monkeypatch.setattr(pixels_module, "_CHUNK_SAMPLES", 1000)  # many chunks on a small array
    info = np.iinfo(dtype)
    array = np.random.default_rng(3).integers(info.min, info.max, (37, 41, 3), endpoint=True)
    array = array.astype(dtype)
    for bits in range(1, 8 * array.dtype.itemsize + 1):
        shifted = array.astype(np.int64) + ((1 << (bits - 1)) if info.min < 0 else 0)
        maximum = (1 << bits) - 1
        expected = (np.clip(shifted, 0, maximum) * 255 + maximum // 2) // maximum
        got = scale_to_uint8(array, bits)
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected.astype(np.uint8), err_msg=f"{dtype} {bits}")
    reversed_view = array[:, :, ::-1]
    np.testing.assert_array_equal(
        scale_to_uint8(reversed_view, 8 * array.dtype.itemsize),
        scale_to_uint8(array, 8 * array.dtype.itemsize)[:, :, ::-1],
    )


_PEAK = """
import json, sys
from model_zoo.io import read_image

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
base = status("VmRSS")
image = read_image(sys.argv[1])
print(json.dumps({"growth_mb": (status("VmHWM") - base) / 1024, "shape": image.rgb.shape}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_a_16_bit_rgba_image_decodes_without_widening(tmp_path: Path) -> None:
    height, width = 2000, 2500  # 40 MB of 16-bit RGBA samples, 15 MB of RGB result
    path = _png(tmp_path / "rgba16.png", _noise((height, width, 4), np.uint16))
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["shape"] == [height, width, 3]
    file_mb, samples_mb, rgb_mb = path.stat().st_size / MB, height * width * 8 / MB, 15
    # OpenCV's decode peaks at two copies of its output; widening to 32 bits afterwards would
    # add 80 MB per full-size temporary (several of them).
    assert report["growth_mb"] < file_mb + 2 * samples_mb + rgb_mb + 40, report


# ------------------------------------------------------------------------- header walks


def _jpeg(prefix: bytes) -> bytes:
    ok, data = cv2.imencode(".jpg", _noise((32, 32, 3), np.uint8))
    assert ok
    return b"\xff\xd8" + prefix + data.tobytes()[2:]


@pytest.mark.parametrize(
    ("name", "prefix", "refused"),
    [
        ("fill", b"\xff" * 100_000, False),
        ("comments", b"\xff\xfe\x00\x02" * (MAX_JPEG_SEGMENTS - 20), False),
        ("too_many_comments", b"\xff\xfe\x00\x02" * MAX_JPEG_SEGMENTS, True),
        ("restarts", b"\xff\xd0" * MAX_JPEG_SEGMENTS, True),
        ("long_fill", b"\xff" * (17 * MB), True),
    ],
)
def test_the_jpeg_marker_walk_stops_at_its_limits(
    tmp_path: Path, name: str, prefix: bytes, refused: bool
) -> None:
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(_jpeg(prefix))
    if not refused:
        assert read_image(path).rgb.shape == (32, 32, 3)
        return
    with pytest.raises(LoadError) as caught:
        read_image(path)
    assert "longer than the limit" in str(caught.value)


def _empty_elements(count: int) -> bytes:
    return b"".join(struct.pack("<HH2sH", 0x0009, 0x1000 + i, b"LO", 0) for i in range(count))


def test_element_walk_counts_nested_elements_and_skips_fragments(tmp_path: Path) -> None:
    path = tmp_path / "jpeg.dcm"
    write_dicom(path, _noise((32, 48, 3), np.uint8), transfer_syntax="jpeg_baseline", frames=3)
    data = path.read_bytes()
    start = 132 + 12 + struct.unpack("<I", data[140:144])[0]
    total = count_elements(data, start, implicit=False, little=True)
    # Fragments (the basic offset table and 3 frames) are skipped, not walked as elements.
    assert 20 < total < 60
    with pytest.raises(ElementBudgetError):
        count_elements(data, start, implicit=False, little=True, limit=total - 1)
    nested = b"\x40\x00\x30\xa7SQ\0\0\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
    inner = _empty_elements(10)
    closing = b"\xfe\xff\x0d\xe0\0\0\0\0\xfe\xff\xdd\xe0\0\0\0\0"
    assert count_elements(nested + inner + closing, 0, implicit=False, little=True) == 14


@pytest.mark.parametrize(
    ("extra", "refused"), [(MAX_DICOM_ELEMENTS - 100, False), (MAX_DICOM_ELEMENTS, True)]
)
def test_a_dicom_with_too_many_elements_is_refused_before_parsing(
    tmp_path: Path, extra: int, refused: bool
) -> None:
    path = tmp_path / "many.dcm"
    write_dicom(path, _noise((16, 16, 3), np.uint8), transfer_syntax="explicit_le")
    data = path.read_bytes()
    start = 132 + 12 + struct.unpack("<I", data[140:144])[0]
    records = np.zeros(extra, dtype=[("g", "<u2"), ("e", "<u2"), ("vr", "S2"), ("n", "<u2")])
    index = np.arange(extra)
    records["g"], records["e"], records["vr"] = (
        9 + 2 * (index // 0xF000),
        0x1000 + index % 0xF000,
        b"LO",
    )
    path.write_bytes(data[:start] + records.tobytes() + data[start:])
    if not refused:
        assert read_image(path).rgb.shape == (16, 16, 3)
        return
    with pytest.raises(LoadError) as caught:
        read_image(path)
    assert caught.value.reason == "too_large"
    assert f"more than {MAX_DICOM_ELEMENTS:,} data elements, the limit" in str(caught.value)


@pytest.mark.parametrize(("texts", "refused"), [(100, False), (MAX_PNG_OTHER_CHUNKS, True)])
def test_the_png_chunk_walk_stops_at_its_limit(tmp_path: Path, texts: int, refused: bool) -> None:
    png = cv2.imencode(".png", _noise((24, 32, 3), np.uint8))[1].tobytes()
    text = struct.pack(">I", 0) + b"tEXt" + struct.pack(">I", zlib.crc32(b"tEXt"))
    path = tmp_path / "texts.png"
    path.write_bytes(png[:33] + text * texts + png[33:])  # after IHDR
    if not refused:
        assert read_image(path).rgb.shape == (24, 32, 3)
        return
    with pytest.raises(LoadError) as caught:
        read_image(path)
    assert f"more chunks than the limit of {MAX_PNG_OTHER_CHUNKS}" in str(caught.value)
