"""Deterministic hostile inputs for the image loaders (issue 22), shared by the tests, the
fuzz campaign (``tests/fuzz/campaign.py``) and ``benchmarks/bench_bombs.py``.

* :func:`seed_files`: small valid files covering every decoder path, the mutation campaign's
  seeds. Byte-identical on every run (fixed pixels, fixed DICOM UIDs).
* :data:`BOMBS`: builders of the issue's "small files that cost gigabytes and seconds". Each
  writes its file from small repeated pieces, so building one never holds the decoded size.
* :func:`damaged_vr`: a valid DICOM with one byte of one data element's VR changed.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid as uids
from PIL import Image
from pydicom.encaps import encapsulate

from model_zoo.io.dicom_write import write_dicom

CORPUS = Path(__file__).resolve().parent / "corpus"
SIDE = 10_000
"""The bombs' width and height: 100 Mpx, exactly the default pixel cap."""


# ------------------------------------------------------------------------------- seeds


def _fixed_uids(data: bytes, syntax: str | None = None) -> bytes:
    """``data`` with write_dicom's random UIDs replaced by fixed ones (a byte-stable seed),
    re-encoded as ``syntax`` when given (pydicom deflates a Deflated data set on save)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = uids.UID(syntax)
    for n, keyword in enumerate(("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")):
        if keyword in ds:
            setattr(ds, keyword, f"1.2.826.0.1.3680043.10.1022.{n + 1}")
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1022.1"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_bytes(array: np.ndarray, syntax: str, **kwargs: object) -> bytes:
    """``write_dicom(array, transfer_syntax=syntax, **kwargs)`` as stable bytes."""
    deflate = syntax == "deflated"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.dcm"
        written = "explicit_le" if deflate else syntax
        write_dicom(path, array, transfer_syntax=written, **kwargs)  # type: ignore[arg-type]
        data = path.read_bytes()
    return _fixed_uids(data, uids.DeflatedExplicitVRLittleEndian if deflate else None)


def _pillow(array: np.ndarray, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **params)
    return buffer.getvalue()


def seed_files() -> list[tuple[str, bytes]]:
    """``(suffix, bytes)`` of 36×40 valid files: every raster codec and DICOM transfer syntax
    read_image decodes, 8- and 16-bit."""
    rng = np.random.default_rng(16)
    rgb = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
    grey16 = rgb[:, :, 0].astype(np.uint16) * 257
    seeds = [
        (".jpg", _pillow(rgb, "JPEG")),
        (".jpg", _pillow(rgb, "JPEG", progressive=True, quality=80)),
        (".png", _pillow(rgb, "PNG")),
        (".png", _pillow(grey16, "PNG")),
        (".tif", _pillow(rgb, "TIFF")),
        (".tif", _pillow(rgb, "TIFF", compression="tiff_adobe_deflate")),
        (".bmp", _pillow(rgb, "BMP")),
    ]
    for syntax in ("explicit_le", "implicit_le", "jpeg_baseline", "rle", "jpeg2000", "deflated"):
        seeds.append((".dcm", dicom_bytes(rgb, syntax, frames=2, laterality="L")))
    for syntax in ("rle", "jpeg2000", "jpeg_lossless"):
        seeds.append((".dcm", dicom_bytes(grey16, syntax, sop_class="op16")))
    return seeds


def damaged_vr(array: np.ndarray, syntax: str, tag: tuple[int, int], vr: bytes) -> bytes:
    """A valid DICOM of ``array`` whose element ``tag`` has its VR's second byte zeroed.

    The issue's reproduction: (0028,0002) SamplesPerPixel's "US" becomes "U\\0".
    """
    data = bytearray(dicom_bytes(array, syntax))
    at = data.find(struct.pack("<HH", *tag) + vr)
    if at < 0:
        raise ValueError(f"no element {tag} with VR {vr!r} in a {syntax} file")
    data[at + 5] = 0
    return bytes(data)


# ------------------------------------------------------------------------------- bombs


def _zeros_deflate(total: int, block: int, *, raw: bool) -> bytes:
    """A deflate stream of ``total`` zero bytes built from one compressed ``block``, repeated.

    Full-flush blocks are independent, so concatenating them is a valid stream and the
    ``total`` bytes are never held. ``raw``: no zlib header/trailer (DICOM Deflated);
    otherwise a zlib stream whose Adler-32 of n zeros is ``(n mod 65521) << 16 | 1``.
    """
    if total % block:
        raise ValueError("total must be a multiple of block")
    piece_maker = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = piece_maker.compress(bytes(block)) + piece_maker.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = piece * (total // block) + end.compress(b"") + end.flush()
    if raw:
        return body
    return b"\x78\xda" + body + struct.pack(">I", ((total % 65521) << 16) | 1)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_rgba16(path: Path) -> Path:
    """10,000 × 10,000 RGBA 16-bit PNG of zeros (about 780 KB; 800 MB of samples)."""
    row = 1 + SIDE * 8  # filter byte + 4 channels × 2 bytes
    idat = _zeros_deflate(row * SIDE, row * 100, raw=False)
    ihdr = struct.pack(">IIBBBBB", SIDE, SIDE, 16, 6, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
    path.write_bytes(png + _png_chunk(b"IEND", b""))
    return path


def tiff_rgba16_deflate(path: Path) -> Path:
    """The same image as a TIFF of 100 Adobe-deflate strips (about 780 KB)."""
    rows_per_strip = 100
    strip = _zeros_deflate(SIDE * 8 * rows_per_strip, SIDE * 8 * rows_per_strip, raw=False)
    strips = SIDE // rows_per_strip
    entries = [
        (256, 4, 1, SIDE),  # ImageWidth
        (257, 4, 1, SIDE),  # ImageLength
        (258, 3, 4, None),  # BitsPerSample 16,16,16,16 (at an offset)
        (259, 3, 1, 8),  # Compression: Adobe deflate
        (262, 3, 1, 2),  # RGB
        (273, 4, strips, None),  # StripOffsets
        (277, 3, 1, 4),  # SamplesPerPixel
        (278, 4, 1, rows_per_strip),
        (279, 4, strips, None),  # StripByteCounts
        (284, 3, 1, 1),  # PlanarConfiguration: chunky
        (338, 3, 1, 2),  # ExtraSamples: unassociated alpha
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size
    offsets_at = bits_at + 8
    counts_at = offsets_at + 4 * strips
    data_at = counts_at + 4 * strips
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 258:
            value = bits_at
        elif tag == 273:
            value = offsets_at
        elif tag == 279:
            value = counts_at
        assert value is not None
        packed = (
            struct.pack("<HH", value, 0) if typ == 3 and count == 1 else struct.pack("<I", value)
        )
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += b"\0\0\0\0"
    tables = struct.pack("<4H", 16, 16, 16, 16)
    tables += b"".join(struct.pack("<I", data_at + i * len(strip)) for i in range(strips))
    tables += struct.pack("<I", len(strip)) * strips
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + tables + strip * strips)
    return path


def _rle_zero_segment(length: int) -> bytes:
    # A replicate run (header byte -127) gives 128 copies of the next byte.
    runs, rest = divmod(length, 128)
    segment = b"\x81\x00" * runs + (bytes([257 - rest, 0]) if rest else b"")
    return segment + (b"\x00" if len(segment) % 2 else b"")


def _rle_frame(samples: int, bytes_per_sample: int, pixels: int) -> bytes:
    count = samples * bytes_per_sample
    segment = _rle_zero_segment(pixels)
    offsets = [64 + i * len(segment) for i in range(count)]
    header = struct.pack("<16I", count, *offsets, *([0] * (15 - count)))
    return header + segment * count


def _dicom_with_frame(path: Path, frame: bytes, syntax: str, samples: int, bits: int) -> Path:
    shape = (4, 4, 3) if samples == 3 else (4, 4)
    small = np.zeros(shape, np.uint16 if bits == 16 else np.uint8)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(small, "explicit_le", sop_class="op16")))
    ds.file_meta.TransferSyntaxUID = uids.UID(syntax)
    ds.Rows = ds.Columns = SIDE
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_rle_rgb16(path: Path) -> Path:
    """RLE Lossless DICOM of a 10,000² 16-bit RGB frame of zeros (about 9.4 MB)."""
    frame = _rle_frame(3, 2, SIDE * SIDE)
    return _dicom_with_frame(path, frame, uids.RLELossless, 3, 16)


def dicom_rle_grey16(path: Path) -> Path:
    """RLE Lossless DICOM of a 10,000² 16-bit grey frame of zeros (about 3 MB)."""
    return _dicom_with_frame(path, _rle_frame(1, 2, SIDE * SIDE), uids.RLELossless, 1, 16)


def dicom_j2k_grey16(path: Path) -> Path:
    """JPEG 2000 Lossless DICOM of a 10,000² 16-bit grey frame of zeros (under 1 KB).

    Encoding it takes a few seconds and 1 GB, so the tests use the committed copy
    (``corpus/bomb-j2k-grey16-10000.dcm``); this is how it was made.
    """
    from openjpeg.utils import encode_array

    frame = bytes(encode_array(np.zeros((SIDE, SIDE), np.uint16), photometric_interpretation=2))
    return _dicom_with_frame(path, frame, uids.JPEG2000Lossless, 1, 16)


def _empty_elements(count: int) -> bytes:
    """``count`` distinct zero-length explicit-VR LE elements (8 bytes each), private groups."""
    per_group = 0xF000  # elements 0x1000-0xFFFF: no group lengths or private creators
    index = np.arange(count, dtype=np.int64)
    records = np.zeros(count, dtype=[("g", "<u2"), ("e", "<u2"), ("vr", "S2"), ("n", "<u2")])
    records["g"] = 0x0009 + 2 * (index // per_group)
    records["e"] = 0x1000 + index % per_group
    records["vr"] = b"LO"
    return records.tobytes()


def _split_at_body(data: bytes) -> tuple[bytes, bytes]:
    """(preamble + DICM + meta group, data set) of an explicit-VR DICOM file."""
    meta_end = 132 + 12 + struct.unpack("<I", data[140:144])[0]
    return data[:meta_end], data[meta_end:]


def dicom_empty_elements(path: Path, megabytes: int = 96) -> Path:
    """A valid small DICOM with ``megabytes`` MB of empty elements before its data set."""
    head, body = _split_at_body(dicom_bytes(np.zeros((8, 8, 3), np.uint8), "explicit_le"))
    path.write_bytes(head + _empty_elements(megabytes * 2**20 // 8) + body)
    return path


def dicom_deflated_elements(path: Path, elements: int = 4_000_000) -> Path:
    """A Deflated DICOM whose data set is ``elements`` empty elements, then a small image."""
    data = dicom_bytes(np.zeros((8, 8, 3), np.uint8), "explicit_le")
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = uids.DeflatedExplicitVRLittleEndian
    meta = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    _, body = _split_at_body(data)
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    deflated = packer.compress(_empty_elements(elements) + body) + packer.flush()
    path.write_bytes(data[:128] + b"DICM" + meta.getvalue() + deflated)
    return path


def _small_jpeg() -> bytes:
    rng = np.random.default_rng(22)
    return _pillow(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")


def jpeg_comments(path: Path, megabytes: int = 64) -> Path:
    """A valid JPEG with ``megabytes`` MB of empty COM segments after SOI."""
    count = megabytes * 2**20 // 4
    path.write_bytes(b"\xff\xd8" + b"\xff\xfe\x00\x02" * count + _small_jpeg()[2:])
    return path


def jpeg_fill(path: Path, megabytes: int = 64) -> Path:
    """A valid JPEG with ``megabytes`` MB of 0xFF fill bytes before its first marker."""
    path.write_bytes(b"\xff\xd8" + b"\xff" * (megabytes * 2**20) + _small_jpeg()[2:])
    return path


def jpeg_restarts(path: Path, megabytes: int = 64) -> Path:
    """A JPEG with ``megabytes`` MB of stray restart markers (FF D0) before its frame."""
    count = megabytes * 2**20 // 2
    path.write_bytes(b"\xff\xd8" + b"\xff\xd0" * count + _small_jpeg()[2:])
    return path


def png_text_chunks(path: Path, megabytes: int = 64) -> Path:
    """A valid 64 × 64 PNG with ``megabytes`` MB of empty tEXt chunks before its image data."""
    png = _pillow(np.zeros((64, 64, 3), np.uint8), "PNG")
    text = _png_chunk(b"tEXt", b"")
    path.write_bytes(png[:33] + text * (megabytes * 2**20 // len(text)) + png[33:])
    return path


def png_rgb16_photo(path: Path) -> Path:
    """A legitimate 10,000² 16-bit RGB PNG (a gradient with noise in its low bits): 600 MB of
    samples in a file of a few hundred MB, which the limits must let through."""
    import cv2

    rng = np.random.default_rng(100)
    ramp = np.linspace(0, 60000, SIDE, dtype=np.uint16)
    image = np.empty((SIDE, SIDE, 3), np.uint16)
    for channel in range(3):
        image[:, :, channel] = ramp[None, :] if channel != 1 else ramp[:, None]
    image += rng.integers(0, 64, image.shape, dtype=np.uint16)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    data.tofile(path)
    return path


LEGIT: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "png_rgb16_photo": (".png", png_rgb16_photo),
}
"""Large legitimate images the limits must let through: name -> (suffix, builder)."""

BOMBS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "png_rgba16": (".png", png_rgba16),
    "tiff_rgba16_deflate": (".tif", tiff_rgba16_deflate),
    "dicom_rle_rgb16": (".dcm", dicom_rle_rgb16),
    "dicom_rle_grey16": (".dcm", dicom_rle_grey16),
    "dicom_j2k_grey16": (".dcm", lambda p: _copy(CORPUS / "bomb-j2k-grey16-10000.dcm", p)),
    "dicom_empty_elements": (".dcm", dicom_empty_elements),
    "dicom_deflated_elements": (".dcm", dicom_deflated_elements),
    "jpeg_comments": (".jpg", jpeg_comments),
    "jpeg_fill": (".jpg", jpeg_fill),
    "jpeg_restarts": (".jpg", jpeg_restarts),
    "png_text_chunks": (".png", png_text_chunks),  # found while walking PNG chunks, not the issue's
}
"""name -> (suffix, builder(path) -> path)."""


def _copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target
