"""``read_image``: the one entry point that turns an image file into RGB pixels (R14, R15).

Decisions (documented here because callers depend on them):

- **Format by content, never by suffix.** The magic-byte allowlist picks the decoder; a JPEG
  renamed ``.dcm`` is decoded as the JPEG it is (``meta.file_format == "jpeg"``), a WebP
  renamed ``.png`` is refused.
- **No EXIF orientation.** Pixels come back in stored order (``IMREAD_IGNORE_ORIENTATION``;
  ``IMREAD_UNCHANGED`` ignores it too). Fundus cameras do not rotate via EXIF, the laterality
  sanity check (disc vs fovea) and the EyePACS "inverted image" notch refer to stored order,
  and DICOM has no EXIF: one rule for every format.
- **16-bit to 8-bit** is a linear rescale of the full 16-bit range, ``(v*255 + 32767) // 65535``
  (DICOM: of the Bits Stored range). No windowing, no sBIT handling.
- **Alpha is dropped**, not composited. Grey images come back as three equal channels.
- **Sizes are checked from the header before decoding**: width × height (DICOM: × frames)
  against ``max_pixels``; for TIFF also the largest strip/tile, and every strip or tile must lie
  inside the file. Then the decode budget (:mod:`model_zoo.io.budget`): the memory the decode
  needs, counting bit depth and channels, against ``max_decode_bytes``, and how far a
  losslessly compressed image would expand. Both hold in every process that calls this
  function, so the command line and training are bounded like the GUI's decode processes.
- **Every failure is a** :class:`LoadError`: whatever a decoder raises (pydicom's
  ``NotImplementedError`` for a damaged VR, ``struct.error``, ``RecursionError`` on deep
  nesting, ``MemoryError``) is turned into one at this function's boundary.
- The file is read once into memory (size-capped), hashed from those bytes, and decoded from
  them: the hash always describes the pixels returned.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model_zoo.io.budget import DecodeCost, check_budget
from model_zoo.io.dicom import decode_dicom
from model_zoo.io.dicom_parse import short
from model_zoo.io.errors import LoadError, fail
from model_zoo.io.hashing import hash_bytes
from model_zoo.io.headers import (
    Header,
    HeaderError,
    JpegHeader,
    jpeg_is_complete,
    probe_bmp,
    probe_jpeg,
    probe_png,
    probe_tiff,
)
from model_zoo.io.limits import DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS, file_size_cap
from model_zoo.io.loaded import ImageMeta, LoadedImage
from model_zoo.io.names import name_rules
from model_zoo.io.pixels import JPEG_FLAGS, opencv_to_rgb8, reduce_area
from model_zoo.io.quiet import decoder_output_filtered
from model_zoo.io.sniff import HEAD_BYTES, describe_unknown, sniff_format

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm"}
)
"""File suffixes a folder scan offers to :func:`read_image` (DICOM files without a suffix are
found by :func:`sniff_format` on their first 132 bytes)."""

_OPENCV_COPIES = 2.0
"""``cv2.imdecode``'s peak in units of the array it returns (it decodes, then copies)."""
_PROBES = {"jpeg": probe_jpeg, "png": probe_png, "tiff": probe_tiff, "bmp": probe_bmp}
_NAMES = {"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF", "bmp": "BMP"}


def _read_bytes(path: str | os.PathLike[str], max_pixels: int) -> bytes:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise fail(path, "io_error", "is a folder, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise fail(path, "io_error", "is not a regular file")  # FIFOs would block
        cap = file_size_cap(max_pixels)
        if info.st_size > cap:
            raise fail(
                path,
                "too_large",
                f"is {info.st_size / 2**20:.0f} MB, above the {cap / 2**20:.0f} MB limit "
                "for one image file",
            )
        with open(path, "rb") as handle:
            # read(n) reserves n bytes up front: ask for the size stat gave (one byte more shows
            # a file that grew), not the cap, or every read would reserve the cap's 864 MB.
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += handle.read(cap + 1 - len(data))
    except FileNotFoundError:
        raise fail(path, "io_error", "was not found (moved or deleted?)") from None
    except PermissionError:
        raise fail(path, "io_error", "cannot be read (permission denied)") from None
    except OSError as error:
        raise fail(path, "io_error", f"could not be read ({error.strerror or error})") from None
    except MemoryError:
        raise fail(path, "too_large", "needs more memory to read than is available") from None
    if not data:
        raise fail(path, "empty", "is empty (0 bytes)")
    if len(data) > cap:
        raise fail(path, "too_large", "grew beyond the size limit while it was being read")
    return data


def _check_pixels(path: str | os.PathLike[str], header: Header, max_pixels: int, kind: str) -> None:
    total = header.width * header.height
    if total > max_pixels:
        raise fail(
            path,
            "too_large",
            f"is a {kind} image of {header.width} × {header.height} pixels "
            f"({total / 1e6:.0f} Mpx), above the {max_pixels / 1e6:.0f} Mpx limit",
        )
    if header.largest_block > max_pixels:
        raise fail(
            path,
            "too_large",
            f"is a {kind} image with a {header.largest_block / 1e6:.0f} Mpx strip or tile, "
            f"above the {max_pixels / 1e6:.0f} Mpx limit",
        )


def _raster_cost(fmt: str, header: Header, reduce: int, file_bytes: int) -> DecodeCost:
    """What OpenCV needs to decode a raster whose header is ``header`` (see DecodeCost)."""
    width, height = header.width, header.height
    if fmt == "jpeg":
        lossless = isinstance(header, JpegHeader) and header.sof in (0xC3, 0xC7, 0xCB, 0xCF)
        if reduce > 1 and not lossless:  # libjpeg decodes straight to the reduced size
            width, height = math.ceil(width / reduce), math.ceil(height / reduce)
        # Straight to 8-bit RGB: the result is the decoder's output; no expansion check.
        return DecodeCost(width, height, 3, 8, copies=_OPENCV_COPIES)
    bits = 16 if header.bit_depth == 16 else max(8, header.bit_depth)
    channels = header.channels
    extra = 0
    if fmt == "tiff":
        if channels < 3 and bits == 8:
            channels = 3  # palette and bilevel TIFFs come back as BGR
        extra = header.largest_block * channels * bits // 8  # the strip or tile buffer
    elif fmt == "bmp":
        channels = 4 if channels == 4 else 3
    return DecodeCost(
        width,
        height,
        channels,
        bits,
        copies=_OPENCV_COPIES,
        extra=extra,
        compressed=file_bytes,
        rgb_pixels=width * height,
    )


def _imdecode(buffer: np.ndarray, flags: int) -> np.ndarray | None:
    try:
        with decoder_output_filtered():  # libjpeg's "Corrupt JPEG data" lines
            image = cv2.imdecode(buffer, flags)
    except cv2.error:
        return None
    return None if image is None else np.asarray(image)


def _decode_raster(
    path: str | os.PathLike[str],
    data: bytes,
    fmt: str,
    reduce: int,
    limits: tuple[int, int],
) -> tuple[np.ndarray, Header]:
    kind = _NAMES[fmt]
    max_pixels, max_decode_bytes = limits
    try:
        header = _PROBES[fmt](data)
    except HeaderError as error:
        reason = "truncated" if error.truncated else "corrupt"
        raise fail(path, reason, f"is a damaged {kind} file ({error})") from None
    _check_pixels(path, header, max_pixels, kind)
    check_budget(path, kind, _raster_cost(fmt, header, reduce, len(data)), max_decode_bytes)
    buffer = np.frombuffer(data, np.uint8)
    image: np.ndarray | None = None
    if fmt == "jpeg":
        if not isinstance(header, JpegHeader) or not jpeg_is_complete(data, header):
            raise fail(path, "truncated", "is a JPEG file that is cut short")
        image = _imdecode(buffer, JPEG_FLAGS[reduce][0])
        if image is None and reduce > 1:
            # libjpeg cannot scale some codings (e.g. lossless); decode fully, then shrink.
            full = _imdecode(buffer, JPEG_FLAGS[1][0])
            image = None if full is None else reduce_area(full, reduce)
        expected = (math.ceil(header.height / reduce), math.ceil(header.width / reduce))
    else:
        raw = _imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if raw is not None:
            if raw.shape[:2] != (header.height, header.width):
                raise fail(path, "corrupt", f"is a damaged {kind} file (header and data disagree)")
            converted = opencv_to_rgb8(raw)
            if converted is None:
                raise fail(
                    path,
                    "unsupported_format",
                    f"is a {kind} image with {raw.dtype} samples in "
                    f"{1 if raw.ndim == 2 else raw.shape[2]} channel(s), which is not supported",
                )
            image = reduce_area(converted, reduce)
        expected = (math.ceil(header.height / reduce), math.ceil(header.width / reduce))
    if image is None:
        raise fail(
            path, "corrupt", f"is a damaged or cut-short {kind} file (it could not be decoded)"
        )
    if image.shape != (*expected, 3):
        raise fail(path, "corrupt", f"is a damaged {kind} file (decoded size is unexpected)")
    return np.ascontiguousarray(image), header


def read_image(
    path: str | os.PathLike[str],
    *,
    reduce: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> LoadedImage:
    """Decode an image file into RGB pixels plus metadata.

    Args:
        path: JPEG, PNG (8/16-bit), TIFF (8/16-bit), BMP or DICOM file. The format is taken
            from the content, not the suffix.
        reduce: 1, 2, 4 or 8. Output is ``ceil(H/reduce) × ceil(W/reduce)``. JPEG (including
            the DICOM JPEG fast path) uses libjpeg's reduced DCT decoding, which is several
            times faster; other formats are decoded fully, then shrunk with INTER_AREA.
        max_pixels: Refuse images whose header declares more pixels (DICOM: rows × columns
            × frames) before decoding anything.
        max_decode_bytes: Refuse images whose decode would need more memory for pixel arrays
            (estimated from the header: bit depth, channels, the decoder's copies, the RGB
            result), and losslessly compressed images that would expand like a bomb.

    Returns:
        :class:`LoadedImage` with H×W×3 uint8 RGB pixels (frame 1 for multi-frame DICOM) and
        :class:`ImageMeta`. Laterality and patient id come from DICOM (0020,0062)/(0010,0020)
        when present, else from :func:`name_rules` on the file stem, each with its source.

    Raises:
        LoadError: Every refusal or failure, with ``reason`` one of
            :data:`model_zoo.io.errors.REASONS` and a grader-readable message.
        ValueError: ``reduce`` is not 1, 2, 4 or 8 (a programming error, not a file problem).
    """
    if reduce not in JPEG_FLAGS:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce!r}")
    data = _read_bytes(path, max_pixels)
    sha256 = hash_bytes(data)
    fmt = sniff_format(data[:HEAD_BYTES])
    if fmt is None:
        reason, detail = describe_unknown(data[:HEAD_BYTES])
        raise fail(path, reason, detail)
    rgb, fields = _decode(path, data, fmt, reduce, (max_pixels, max_decode_bytes))
    del data
    laterality = fields.pop("laterality", "")
    patient_id = fields.pop("patient_id", "")
    rule = name_rules(Path(os.fspath(path)).stem)
    lat_source = "dicom_tag" if laterality else ""
    pid_source = "dicom_tag" if patient_id else ""
    if rule is not None:
        if not laterality:
            laterality, lat_source = rule[0], "filename_rule"
        if not patient_id:
            patient_id, pid_source = rule[1], "filename_rule"
    meta = ImageMeta(
        sha256=sha256,
        file_format=fmt,
        laterality=laterality,
        laterality_source=lat_source,
        patient_id=patient_id,
        patient_id_source=pid_source,
        **fields,
    )
    return LoadedImage(rgb=rgb, meta=meta)


def _decode(
    path: str | os.PathLike[str], data: bytes, fmt: str, reduce: int, limits: tuple[int, int]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode ``data``; any failure at all becomes a ``LoadError`` (the R16 boundary)."""
    kind = "DICOM" if fmt == "dicom" else _NAMES[fmt]
    try:
        if fmt == "dicom":
            return decode_dicom(path, data, reduce, *limits)
        rgb, header = _decode_raster(path, data, fmt, reduce, limits)
        bit_depth = 16 if header.bit_depth == 16 else 8
        return rgb, {"width": header.width, "height": header.height, "bit_depth": bit_depth}
    except LoadError:
        raise
    except MemoryError:
        raise fail(path, "too_large", "needs more memory to decode than is available") from None
    except RecursionError:
        raise fail(
            path, "corrupt", f"is a damaged {kind} file (its structure is nested too deeply)"
        ) from None
    except Exception as error:  # noqa: BLE001 - a decoder's failure is a file's, never a crash
        raise fail(
            path,
            "corrupt",
            f"is a damaged {kind} file ({type(error).__name__}: {short(error)})",
        ) from error


__all__ = ["SUPPORTED_SUFFIXES", "LoadError", "read_image"]
