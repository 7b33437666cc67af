"""Read image dimensions from headers, before any decoder allocates pixel memory (R15).

Each probe reads only the structure it needs from the in-memory bytes, validates it against
the buffer length, and raises :class:`HeaderError` (a plain message; the caller adds the path
and maps ``truncated`` vs ``corrupt``) on anything it cannot trust.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from model_zoo.io.limits import (
    MAX_JPEG_HEADER_BYTES,
    MAX_JPEG_SEGMENTS,
    MAX_PNG_CHUNKS,
    MAX_PNG_OTHER_CHUNKS,
)


class HeaderError(ValueError):
    """A header is malformed; ``truncated`` says whether the bytes simply ran out."""

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


@dataclass(frozen=True)
class Header:
    """Geometry declared by a file's header.

    Attributes:
        width: Columns in pixels.
        height: Rows in pixels.
        bit_depth: Bits per sample (8, 16...).
        channels: Samples per pixel the decoder returns, when the header says (PNG: palette and
            grey + alpha count 4).
        largest_block: Largest single decoder buffer in pixels the header implies beyond
            width × height (TIFF tile or strip), 0 when not applicable.
    """

    width: int
    height: int
    bit_depth: int = 8
    channels: int = 0
    largest_block: int = 0


@dataclass(frozen=True)
class JpegHeader(Header):
    """JPEG frame header plus the markers that decide colour conversion.

    Attributes:
        component_ids: Component identifiers from SOF (``[82, 71, 66]`` means "RGB").
        jfif: An APP0 JFIF marker precedes SOF (the data is YCbCr).
        adobe_transform: Transform flag of an APP14 Adobe marker (0: none/RGB, 1: YCbCr,
            2: YCCK), ``None`` when absent.
        sof: The SOF marker code (0xC0 baseline, 0xC1 extended, 0xC2 progressive, 0xC3
            lossless...).
        scan_start: Offset of the first SOS marker.
    """

    component_ids: tuple[int, ...] = field(default_factory=tuple)
    jfif: bool = False
    adobe_transform: int | None = None
    sof: int = 0xC0
    scan_start: int = 0


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
_FILL = re.compile(rb"\xff\xff+")  # fill bytes before a marker, skipped in C, not byte by byte


def probe_jpeg(data: bytes | memoryview) -> JpegHeader:
    """Walk JPEG marker segments to the first SOF, then to the first SOS.

    The walk stops at :data:`~model_zoo.io.limits.MAX_JPEG_SEGMENTS` segments or
    :data:`~model_zoo.io.limits.MAX_JPEG_HEADER_BYTES` bytes (a 64 MB run of empty comments or
    restart markers is millions of steps, and no camera writes such a header).
    """
    offset = 2
    jfif = False
    adobe: int | None = None
    frame: _Frame | None = None
    for _ in range(MAX_JPEG_SEGMENTS):
        if offset > MAX_JPEG_HEADER_BYTES:
            break
        marker, start, offset, body = _jpeg_segment(data, offset)
        if body is None:  # a standalone marker
            continue
        if marker == 0xE0 and body.startswith(b"JFIF\x00"):
            jfif = True
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            adobe = body[11]
        elif marker in _SOF_MARKERS:
            if frame is not None:
                raise HeaderError("the JPEG file has two frame headers")
            frame = _jpeg_frame(marker, body)
        elif marker == 0xDA:
            if frame is None:
                raise HeaderError("the JPEG file has image data before its frame header")
            if frame.width == 0 or frame.height == 0:
                raise HeaderError("the JPEG frame header declares zero width or height")
            return JpegHeader(
                width=frame.width,
                height=frame.height,
                bit_depth=frame.precision,
                channels=len(frame.component_ids),
                component_ids=frame.component_ids,
                jfif=jfif,
                adobe_transform=adobe,
                sof=frame.sof,
                scan_start=start,
            )
    raise HeaderError(
        f"its header is longer than the limit of {MAX_JPEG_SEGMENTS} marker segments or "
        f"{MAX_JPEG_HEADER_BYTES >> 20} MB before the image data"
    )


@dataclass(frozen=True)
class _Frame:
    """What a JPEG frame header (SOFn) declares."""

    sof: int
    precision: int
    height: int
    width: int
    component_ids: tuple[int, ...]


def _jpeg_segment(data: bytes | memoryview, offset: int) -> tuple[int, int, int, bytes | None]:
    """The segment at ``offset`` (fill bytes skipped): marker, its offset, end, body.

    The body is None for a standalone marker (no length field).
    """
    size = len(data)
    fill = _FILL.match(data, offset)
    if fill is not None:
        offset = fill.end() - 1  # the last 0xFF of a run of fill bytes starts the marker
    if offset + 2 > size:
        raise HeaderError("the JPEG header ends early", truncated=True)
    if data[offset] != 0xFF:
        raise HeaderError("the JPEG header is damaged (marker expected)")
    marker = data[offset + 1]
    if marker in _STANDALONE:
        return marker, offset, offset + 2, None
    if marker == 0xD9:
        raise HeaderError("the JPEG file ends before any image data", truncated=True)
    if offset + 4 > size:
        raise HeaderError("the JPEG header ends early", truncated=True)
    length = int.from_bytes(data[offset + 2 : offset + 4], "big")
    if length < 2:
        raise HeaderError("the JPEG header is damaged (bad segment length)")
    end = offset + 2 + length
    if end > size:
        raise HeaderError("the JPEG header ends early", truncated=True)
    return marker, offset, end, bytes(data[offset + 4 : end])


def _jpeg_frame(marker: int, body: bytes) -> _Frame:
    if len(body) < 6:
        raise HeaderError("the JPEG frame header is damaged")
    precision, height, width, count = struct.unpack(">BHHB", body[:6])
    if len(body) < 6 + 3 * count or count == 0:
        raise HeaderError("the JPEG frame header is damaged")
    ids = tuple(body[6 + 3 * i] for i in range(count))
    return _Frame(marker, precision, height, width, ids)


def jpeg_is_complete(data: bytes, header: JpegHeader) -> bool:
    """Whether an EOI marker follows the first scan (entropy data cannot contain FF D9)."""
    return data.find(b"\xff\xd9", header.scan_start) >= 0


def probe_png(data: bytes | memoryview) -> Header:
    """Read the IHDR chunk (it must be the first chunk), then count the chunks."""
    if len(data) < 33:
        raise HeaderError("the PNG header ends early", truncated=True)
    if bytes(data[12:16]) != b"IHDR" or int.from_bytes(data[8:12], "big") != 13:
        raise HeaderError("the PNG header is damaged (IHDR missing)")
    width, height, depth, colour = struct.unpack(">IIBB", bytes(data[16:26]))
    # Channels as OpenCV returns them: palette expands to BGR(A), grey + alpha to BGRA.
    channels = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16):
        raise HeaderError(f"the PNG header is damaged (colour type {colour}, depth {depth})")
    if width == 0 or height == 0 or width > 2**31 - 1 or height > 2**31 - 1:
        raise HeaderError("the PNG header declares an impossible size")
    _walk_png_chunks(data)
    return Header(width=width, height=height, bit_depth=depth, channels=channels)


_CHUNK_HEAD = struct.Struct(">I4s")


def _walk_png_chunks(data: bytes | memoryview) -> None:
    """Count the chunks up to IEND; refuse more than the limits (see limits.py).

    libpng keeps every text chunk in an array it regrows as it goes, so 64 MB of empty tEXt
    chunks is minutes of copying. A damaged structure simply ends the walk: libpng reports it.
    """
    pos, chunks, others = 8, 0, 0
    while pos + 8 <= len(data):
        length, kind = _CHUNK_HEAD.unpack_from(data, pos)
        chunks += 1
        others += kind != b"IDAT"
        if chunks > MAX_PNG_CHUNKS or others > MAX_PNG_OTHER_CHUNKS:
            raise HeaderError(
                f"it has more chunks than the limit of {MAX_PNG_OTHER_CHUNKS} chunks besides "
                f"image data, or {MAX_PNG_CHUNKS} in all"
            )
        if kind == b"IEND":
            return
        pos += 12 + length


def probe_bmp(data: bytes | memoryview) -> Header:
    """Read the BITMAPINFOHEADER (or the old 12-byte core header)."""
    if len(data) < 26:
        raise HeaderError("the BMP header ends early", truncated=True)
    dib = int.from_bytes(data[14:18], "little")
    if dib == 12:
        width, height, _planes, bpp = struct.unpack("<HHHH", bytes(data[18:26]))
        compression = 0
    else:
        if len(data) < 34:
            raise HeaderError("the BMP header ends early", truncated=True)
        width, height, _planes, bpp, compression = struct.unpack("<iiHHI", bytes(data[18:34]))
        height = abs(height)  # negative height: rows stored top-down
    if width <= 0 or height <= 0:
        raise HeaderError("the BMP header declares an impossible size")
    if bpp not in (1, 4, 8, 16, 24, 32):
        raise HeaderError(f"the BMP header declares {bpp} bits per pixel")
    pixel_offset = int.from_bytes(data[10:14], "little")
    if compression in (0, 3, 6) and bpp >= 8:  # uncompressed: the pixel array size is known
        stride = ((width * bpp + 31) // 32) * 4
        if pixel_offset + stride * height > len(data):
            raise HeaderError("the BMP pixel data is cut short", truncated=True)
    return Header(width=width, height=height, bit_depth=8, channels=max(1, bpp // 8))


_TIFF_TYPES = {1: (1, "B"), 3: (2, "H"), 4: (4, "I"), 16: (8, "Q"), 6: (1, "b"), 8: (2, "h")}
_TIFF_TYPES_SIGNED = {9: (4, "i"), 13: (4, "I"), 17: (8, "q"), 18: (8, "Q")}
_MAX_OFFSETS = 1 << 20  # strips/tiles per image we are willing to check


def _tiff_entries(data: bytes, big: bool, order: str, ifd: int) -> dict[int, tuple[int, int, int]]:
    """Return tag -> (type, count, value-or-offset position) for the IFD at ``ifd``."""
    count_size, entry_size = (8, 20) if big else (2, 12)
    if ifd < 8 or ifd + count_size > len(data):
        raise HeaderError("the TIFF directory lies past the end of the file", truncated=True)
    n = int.from_bytes(data[ifd : ifd + count_size], "little" if order == "<" else "big")
    if n == 0 or n > 4096:
        raise HeaderError(f"the TIFF directory has {n} entries")
    start = ifd + count_size
    if start + n * entry_size > len(data):
        raise HeaderError("the TIFF directory is cut short", truncated=True)
    entries: dict[int, tuple[int, int, int]] = {}
    count_fmt, count_len = ("Q", 8) if big else ("I", 4)
    for i in range(n):
        pos = start + i * entry_size
        tag, typ = struct.unpack(order + "HH", data[pos : pos + 4])
        (count,) = struct.unpack(order + count_fmt, data[pos + 4 : pos + 4 + count_len])
        entries[tag] = (typ, count, pos + 4 + count_len)
    return entries


def _tiff_values(
    data: bytes, big: bool, order: str, entry: tuple[int, int, int], limit: int
) -> list[int]:
    typ, count, pos = entry
    kind = _TIFF_TYPES.get(typ) or _TIFF_TYPES_SIGNED.get(typ)
    if kind is None:
        raise HeaderError(f"the TIFF directory uses unknown field type {typ}")
    item, fmt = kind
    if count == 0 or count > limit:
        raise HeaderError(f"the TIFF directory has a field with {count} values")
    inline = 8 if big else 4
    if item * count > inline:
        offset_fmt = "Q" if big else "I"
        (pos,) = struct.unpack(order + offset_fmt, data[pos : pos + inline])
    end = pos + item * count
    if end > len(data):
        raise HeaderError("a TIFF field lies past the end of the file", truncated=True)
    return list(struct.unpack(f"{order}{count}{fmt}", data[pos:end]))


def probe_tiff(data: bytes | memoryview) -> Header:
    """Read the first IFD; check strips/tiles lie inside the file and blocks are bounded."""
    buf = bytes(data[: len(data)])
    if len(buf) < 16:
        raise HeaderError("the TIFF header ends early", truncated=True)
    order = "<" if buf[:2] == b"II" else ">"
    big = struct.unpack(order + "H", buf[2:4])[0] == 43
    ifd = (
        struct.unpack(order + "Q", buf[8:16])[0] if big else struct.unpack(order + "I", buf[4:8])[0]
    )
    entries = _tiff_entries(buf, big, order, ifd)

    def scalar(tag: int, default: int | None = None) -> int:
        if tag not in entries:
            if default is None:
                raise HeaderError(f"the TIFF directory lacks required tag {tag}")
            return default
        return _tiff_values(buf, big, order, entries[tag], 64)[0]

    width, height = scalar(256), scalar(257)
    samples = scalar(277, 1)
    bits = max(_tiff_values(buf, big, order, entries[258], 64)) if 258 in entries else 1
    if width <= 0 or height <= 0 or width > 2**31 or height > 2**31:
        raise HeaderError("the TIFF header declares an impossible size")
    if samples < 1 or samples > 16 or bits not in (1, 2, 4, 8, 16, 32, 64):
        raise HeaderError(f"the TIFF header declares {samples} samples of {bits} bits")
    if 322 in entries or 323 in entries:
        block = scalar(322) * scalar(323)
        offsets_tag, counts_tag = 324, 325
    else:
        block = width * min(scalar(278, height), height)
        offsets_tag, counts_tag = 273, 279
    if offsets_tag not in entries or counts_tag not in entries:
        raise HeaderError("the TIFF directory has no image data offsets")
    offsets = _tiff_values(buf, big, order, entries[offsets_tag], _MAX_OFFSETS)
    counts = _tiff_values(buf, big, order, entries[counts_tag], _MAX_OFFSETS)
    if len(offsets) != len(counts):
        raise HeaderError("the TIFF strip tables disagree")
    for start, length in zip(offsets, counts, strict=True):
        if start + length > len(buf):
            raise HeaderError(
                "the TIFF image data lies past the end of the file (giant or cut-short strips)",
                truncated=start < len(buf),
            )
    return Header(width=width, height=height, bit_depth=bits, channels=samples, largest_block=block)
