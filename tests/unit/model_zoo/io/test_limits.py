"""Bad input (R14, R15): each file gives a specific LoadError, and memory stays bounded."""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from openjpeg.utils import encode_array as j2k_encode
from PIL import Image

from model_zoo.io import REASONS, LoadError, read_image
from model_zoo.io.dicom_write import write_dicom

Encode = Callable[..., bytes]
REPO = Path(__file__).resolve().parents[4]


def _reason(path: Path, **kwargs: int) -> LoadError:
    with pytest.raises(LoadError) as caught:
        read_image(path, **kwargs)
    error = caught.value
    assert error.reason in REASONS
    assert str(error).startswith(path.name + " ")  # a sentence about this file
    assert error.path == str(path)
    return error


def _rewrite(path: Path, **values: object) -> Path:
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------- builders


def _tiff(
    width: int, height: int, *, strip_count: int | None = None, tile: int | None = None
) -> bytes:
    """Minimal little-endian 8-bit grey TIFF; optional lying strip length or giant tile."""
    pixels = bytes(range(256)) * (width * height // 256 + 1)
    pixels = pixels[: width * height]
    entries: list[tuple[int, int, int]] = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (277, 3, 1),
    ]
    data_offset = 8 + 2 + 12 * 10 + 4
    if tile is None:
        entries += [(273, 4, data_offset), (278, 4, height)]
        entries += [(279, 4, strip_count if strip_count is not None else len(pixels))]
    else:
        entries += [(322, 4, tile), (323, 4, tile), (324, 4, data_offset)]
        entries += [(325, 4, len(pixels))]
    entries.sort()
    ifd = struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, 1) + packed
    ifd += b"\0\0\0\0"
    header = b"II*\x00" + struct.pack("<I", 8)
    body = header + ifd
    return body + b"\0" * (data_offset - len(body)) + pixels


def _png_claiming(width: int, height: int, encode: Encode) -> bytes:
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # keep the IHDR CRC valid
    return bytes(data)


def _jpeg_claiming(width: int, height: int, encode: Encode) -> bytes:
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _deflate_bomb(path: Path, inflated_mib: int = 1152) -> Path:
    """A Deflated DICOM whose body inflates to about ``inflated_mib`` MiB of zeros.

    Built from independent full-flush deflate blocks so the 1.2 GB is never materialised.
    """
    write_dicom(path, np.zeros((4, 4, 3), np.uint8), transfer_syntax="explicit_le")
    plain = path.read_bytes()
    meta_end = 132 + 12 + struct.unpack("<I", plain[140:144])[0]
    pixel = plain.find(b"\xe0\x7f\x10\x00OB")
    meta = pydicom.dcmread(path).file_meta
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    meta_bytes = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_file_meta_info(meta_bytes, meta, enforce_standard=True)
    chunk = 16 << 20
    count = inflated_mib * (1 << 20) // chunk
    head = plain[meta_end:pixel] + b"\xe0\x7f\x10\x00OB\0\0" + struct.pack("<I", chunk * count)
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    prefix = first.compress(head) + first.flush(zlib.Z_FULL_FLUSH)
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = zeros.compress(bytes(chunk)) + zeros.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    final = end.compress(b"") + end.flush()
    path.write_bytes(plain[:128] + b"DICM" + meta_bytes.getvalue() + prefix + piece * count + final)
    return path


def _overflowed_length(path: Path) -> Path:
    """Rows = Columns = 40000 RGB: the true length (4.8 GB) wraps modulo 2**32 (pydicom #1274)."""
    write_dicom(path, np.zeros((4, 4, 3), np.uint8), transfer_syntax="explicit_le")
    _rewrite(path, Rows=40000, Columns=40000)
    data = bytearray(path.read_bytes())
    at = data.find(b"\xe0\x7f\x10\x00OB")
    data[at + 8 : at + 12] = struct.pack("<I", (40000 * 40000 * 3) % 2**32)
    path.write_bytes(bytes(data))
    return path


# ------------------------------------------------------------------------ simple cases


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert _reason(path).reason == "empty"
    dcm = tmp_path / "empty.dcm"
    dcm.write_bytes(b"")
    assert _reason(dcm).reason == "empty"


@pytest.mark.parametrize("name", ["photo.jpg", "README", "notes.dcm"])
def test_text_files_are_not_images(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("# SALL Desktop\nThis folder holds the screening photographs.\n")
    error = _reason(path)
    assert error.reason == "not_an_image"
    assert str(error) == f"{name} is not an image file (it starts like a text file)"


def test_missing_file_and_folder_are_io_errors(tmp_path: Path) -> None:
    assert _reason(tmp_path / "gone.jpg").reason == "io_error"
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert _reason(folder).reason == "io_error"


def _foreign_formats(encode: Encode) -> dict[str, bytes]:
    colour = np.full((64, 64, 3), 90, np.uint8)

    def cv(ext: str, image: np.ndarray = colour) -> bytes:
        ok, data = cv2.imencode(ext, image)
        assert ok
        return data.tobytes()

    fits = b"SIMPLE  =                    T".ljust(80) + b"BITPIX  =                    8".ljust(80)
    fits += b"END".ljust(80)
    return {
        "PPM": cv(".ppm"),
        "PGM": cv(".pgm", colour[:, :, 0].copy()),
        "PAM": cv(".pam"),
        "PFM": cv(".pfm", colour.astype(np.float32)),
        "HDR": cv(".hdr"),
        "SUN raster": cv(".ras"),
        "JPEG 2000 (JP2)": cv(".jp2"),
        "JPEG 2000 codestream": bytes(j2k_encode(colour[:, :, 0].copy())),
        "WebP": cv(".webp"),
        "GIF": encode(colour, "GIF"),
        "AVIF": cv(".avif"),
        "FITS": fits.ljust(2880) + bytes(64 * 64),
        "PDF": encode(colour, "PDF"),
        "EPS": encode(colour, "EPS"),
    }


def test_foreign_formats_renamed_png_are_refused(tmp_path: Path, encode: Encode) -> None:
    for label, data in _foreign_formats(encode).items():
        path = tmp_path / f"{label.replace(' ', '_')}.png"
        path.write_bytes(data)
        error = _reason(path)
        assert error.reason == "unsupported_format", (label, str(error))
        assert "unsupported format" in str(error)
    # The allowlist matters: OpenCV itself would have decoded the PPM and the HDR.
    assert cv2.imdecode(np.frombuffer(_foreign_formats(encode)["PPM"], np.uint8), -1) is not None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "BMP"])
def test_truncated_rasters(tmp_path: Path, fundus: np.ndarray, encode: Encode, fmt: str) -> None:
    data = encode(fundus, fmt, **({"compression": "tiff_lzw"} if fmt == "TIFF" else {}))
    for cut in (len(data) // 2, len(data) - 2, 40):
        path = tmp_path / f"cut{cut}.{fmt.lower()}"
        path.write_bytes(data[:cut])
        assert _reason(path).reason in ("truncated", "corrupt")


def test_truncated_jpeg_says_so(tmp_path: Path, fundus: np.ndarray, encode: Encode) -> None:
    path = tmp_path / "half.jpg"
    path.write_bytes(encode(fundus, "JPEG")[:-300])
    error = _reason(path)
    assert error.reason == "truncated" and "cut short" in str(error)


def test_tiff_with_giant_strip_or_tile(tmp_path: Path) -> None:
    good = tmp_path / "good.tif"
    good.write_bytes(_tiff(32, 16))
    assert read_image(good).rgb.shape == (16, 32, 3)  # the builder makes valid TIFFs
    strip = tmp_path / "strip.tif"
    strip.write_bytes(_tiff(32, 16, strip_count=0xFFFFFFF0))
    error = _reason(strip)
    assert error.reason in ("truncated", "corrupt") and "strips" in str(error)
    tile = tmp_path / "tile.tif"
    tile.write_bytes(_tiff(32, 16, tile=65536))
    assert _reason(tile).reason == "too_large"


def test_header_sizes_are_checked_before_decoding(tmp_path: Path, encode: Encode) -> None:
    png = tmp_path / "huge.png"
    png.write_bytes(_png_claiming(20000, 20000, encode))
    error = _reason(png)
    assert error.reason == "too_large" and "20000 × 20000" in str(error)
    jpeg = tmp_path / "huge.jpg"
    jpeg.write_bytes(_jpeg_claiming(65000, 65000, encode))
    assert _reason(jpeg).reason == "too_large"
    small = tmp_path / "small.png"
    small.write_bytes(encode(np.zeros((100, 100, 3), np.uint8), "PNG"))
    assert _reason(small, max_pixels=9999).reason == "too_large"
    assert read_image(small, max_pixels=10000).rgb.shape == (100, 100, 3)


def test_real_9000_square_png_over_a_50_mpx_limit(tmp_path: Path) -> None:
    path = tmp_path / "9000.png"
    Image.new("1", (9000, 9000)).save(path)  # 1-bit: a real 81 Mpx PNG of ~10 kB
    error = _reason(path, max_pixels=50_000_000)
    assert error.reason == "too_large" and "9000 × 9000" in str(error)


# ----------------------------------------------------------------------------- DICOM


def test_dicom_without_pixel_data(tmp_path: Path, fundus: np.ndarray) -> None:
    path = tmp_path / "nopixels.dcm"
    write_dicom(path, fundus, transfer_syntax="explicit_le")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    error = _reason(path)
    assert error.reason == "no_pixel_data" and "no image" in str(error)


def test_dicom_size_limits(tmp_path: Path, fundus: np.ndarray) -> None:
    big = tmp_path / "big.dcm"
    write_dicom(big, fundus, transfer_syntax="explicit_le")
    _rewrite(big, Rows=65535, Columns=65535)
    error = _reason(big)
    assert error.reason == "too_large" and "65535 × 65535" in str(error)
    frames = tmp_path / "frames.dcm"
    write_dicom(frames, fundus[:64, :64], transfer_syntax="jpeg_baseline")
    _rewrite(frames, NumberOfFrames=100000)
    error = _reason(frames)
    assert error.reason == "too_large" and "100000 frame" in str(error)
    overflow = _reason(_overflowed_length(tmp_path / "overflow.dcm"))
    assert overflow.reason == "truncated" and "declares 505032704 bytes" in str(overflow)


def test_pixel_data_length_past_end_of_file(tmp_path: Path, fundus: np.ndarray) -> None:
    path = tmp_path / "liar.dcm"
    write_dicom(path, fundus, transfer_syntax="explicit_le")
    data = bytearray(path.read_bytes())
    at = data.find(b"\xe0\x7f\x10\x00OB")
    data[at + 8 : at + 12] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    assert _reason(path).reason == "truncated"


def test_deflated_dicom_still_loads(tmp_path: Path, fundus: np.ndarray) -> None:
    path = tmp_path / "deflated.dcm"
    write_dicom(path, fundus, transfer_syntax="deflated")
    np.testing.assert_array_equal(read_image(path).rgb, fundus)


@pytest.mark.parametrize("syntax", ["explicit_le", "jpeg_baseline", "rle", "jpeg2000", "deflated"])
def test_dicom_truncated_at_random_offsets(tmp_path: Path, fundus: np.ndarray, syntax: str) -> None:
    path = tmp_path / "whole.dcm"
    write_dicom(path, fundus[:48, :64], transfer_syntax=syntax, frames=2)
    data = path.read_bytes()
    offsets = np.random.default_rng(14).integers(1, len(data), 50)
    cut = tmp_path / "cut.dcm"
    reasons = set()
    for offset in offsets:
        cut.write_bytes(data[:offset])
        reasons.add(_reason(cut).reason)
    assert reasons <= {"truncated", "not_an_image", "corrupt", "no_pixel_data"}
    assert "truncated" in reasons


def test_load_error_survives_copy_and_process_boundaries() -> None:
    error = LoadError("/data/a.jpg", "truncated", "a.jpg is a JPEG file that is cut short")
    for clone in (copy.copy(error), copy.deepcopy(error)):  # the pickle protocol, as a pool uses
        assert (clone.path, clone.reason, str(clone)) == (error.path, error.reason, str(error))
    with pytest.raises(ValueError, match="reason"):
        LoadError("x", "bad_reason", "x")


# ------------------------------------------------------------------------ memory bound

_MEASURE = """
import json, sys, time
from model_zoo.io import LoadError, read_image

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))

cases = json.loads(sys.argv[1])
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset the peak (VmHWM) to the current RSS, forgetting import peaks
base = status("VmRSS")
out = {}
for name, path, limit in cases:
    start = time.perf_counter()
    try:
        image = read_image(path, max_pixels=limit)
        result = "ok %dx%d" % image.rgb.shape[:2]
    except LoadError as error:
        result = error.reason
    out[name] = [result, round(time.perf_counter() - start, 3)]
print(json.dumps({"results": out, "growth_mb": (status("VmHWM") - base) / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_hostile_corpus_stays_under_memory_bound(
    tmp_path: Path, fundus: np.ndarray, encode: Encode
) -> None:
    default = 100_000_000
    files: dict[str, tuple[Path, int, str]] = {}

    def add(name: str, path: Path, expected: str, limit: int = default) -> None:
        files[name] = (path, limit, expected)

    add("deflate_bomb", _deflate_bomb(tmp_path / "bomb.dcm"), "deflate_bomb")
    big = tmp_path / "rows65535.dcm"
    write_dicom(big, fundus, transfer_syntax="explicit_le")
    add("rows65535", _rewrite(big, Rows=65535, Columns=65535), "too_large")
    frames = tmp_path / "frames.dcm"
    write_dicom(frames, fundus[:64, :64], transfer_syntax="explicit_le")
    add("frames100000", _rewrite(frames, NumberOfFrames=100000), "too_large")
    add("overflow", _overflowed_length(tmp_path / "overflow.dcm"), "truncated")
    png = tmp_path / "claim.png"
    png.write_bytes(_png_claiming(20000, 20000, encode))
    add("png20000", png, "too_large")
    real = tmp_path / "real9000.png"
    Image.new("1", (9000, 9000)).save(real)
    add("png9000", real, "too_large", 50_000_000)
    strip = tmp_path / "strip.tif"
    strip.write_bytes(_tiff(32, 16, strip_count=0xFFFFFFF0))
    add("tiff_strip", strip, "truncated")
    tile = tmp_path / "tile.tif"
    tile.write_bytes(_tiff(32, 16, tile=65536))
    add("tiff_tile", tile, "too_large")
    jpeg = tmp_path / "claim.jpg"
    jpeg.write_bytes(_jpeg_claiming(65000, 65000, encode))
    add("jpeg65000", jpeg, "too_large")
    valid = tmp_path / "valid.dcm"
    write_dicom(valid, fundus)
    add("valid_after", valid, "ok 96x128")

    cases = [[name, str(path), limit] for name, (path, limit, _) in files.items()]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    results = {name: value[0] for name, value in report["results"].items()}
    assert results == {name: expected for name, (_, _, expected) in files.items()}
    assert report["growth_mb"] < 200, report
    print(report)  # per-file seconds, for the record (-s shows it)
