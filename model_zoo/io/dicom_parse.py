"""Parsing a DICOM file's structure, bounded: the File Meta group, capped inflation, and an
element-count walk before pydicom builds one object per element.

pydicom reads every element of a data set into an object (several hundred bytes each), so a
file of millions of empty elements costs gigabytes and minutes before any image check can
run. :func:`count_elements` walks the same structure with no objects and stops at
:data:`~model_zoo.io.limits.MAX_DICOM_ELEMENTS`.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import pydicom
import pydicom.uid as uids
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset

from model_zoo.io.errors import LoadError, fail
from model_zoo.io.limits import MAX_DICOM_ELEMENTS

#: Deflated bodies may inflate to at most this many times the compressed size ...
DEFLATE_RATIO_CAP = 32
#: ... but a small file may always inflate to this much (headers, tiny images) ...
DEFLATE_FLOOR_BYTES = 32 << 20
_INFLATE_CHUNK = 1 << 20
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = (0x7FE0, 0x0010)


class ElementBudgetError(ValueError):
    """A data set has more elements than the walk allows."""


def count_elements(
    data: bytes, start: int, *, implicit: bool, little: bool, limit: int = MAX_DICOM_ELEMENTS
) -> int:
    """Count the data elements of the data set in ``data[start:]``, stopping past ``limit``.

    Elements inside sequences are counted (a sequence is walked into, not skipped), and so
    are items and delimiters; an encapsulated Pixel Data's fragments are skipped by length.
    The walk only bounds work: it trusts lengths as pydicom will, and a malformed structure
    simply ends it (pydicom then reports the damage).

    Raises:
        ElementBudgetError: more than ``limit`` elements.
    """
    order = "<" if little else ">"
    tags, u32, u16 = (
        struct.Struct(order + "HH"),
        struct.Struct(order + "I"),
        struct.Struct(order + "H"),
    )
    end, pos, count, fragments = len(data), start, 0, False
    while pos + 8 <= end:
        count += 1
        if count > limit:
            raise ElementBudgetError(f"more than {limit:,} data elements")
        group, element = tags.unpack_from(data, pos)
        if group == 0xFFFE:  # item or delimiter: a tag and a 4-byte length, no VR
            (length,) = u32.unpack_from(data, pos + 4)
            pos += 8
            if element == 0xE0DD:
                fragments = False
            elif element == 0xE000 and fragments and length != _UNDEFINED:
                pos += length  # a Pixel Data fragment holds bytes, not elements
            continue  # an item of a sequence: its elements follow
        vr = b""
        if implicit:
            (length,) = u32.unpack_from(data, pos + 4)
            pos += 8
        else:
            vr = bytes(data[pos + 4 : pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    break
                (length,) = u32.unpack_from(data, pos + 8)
                pos += 12
            else:
                (length,) = u16.unpack_from(data, pos + 6)
                pos += 8
        if length == _UNDEFINED:
            fragments = (group, element) == _PIXEL_DATA
            continue
        if vr == b"SQ" or (implicit and _is_sequence(group, element)):
            continue  # walk into a sequence of defined length as well
        pos += length
    return count


def _is_sequence(group: int, element: int) -> bool:
    try:
        return bool(dictionary_VR((group << 16) | element) == "SQ")
    except KeyError:
        return False


def check_element_budget(
    path: str | os.PathLike[str], data: bytes, start: int, *, implicit: bool, little: bool
) -> None:
    """Refuse a data set of more than :data:`~model_zoo.io.limits.MAX_DICOM_ELEMENTS` elements."""
    try:
        count_elements(data, start, implicit=implicit, little=little)
    except ElementBudgetError as error:
        raise fail(
            path,
            "too_large",
            f"is a DICOM file with {error}, the limit for one file; it was not read",
        ) from None


def meta_group(path: str | os.PathLike[str], data: bytes) -> tuple[int, dict[int, str]]:
    """Walk the (always explicit VR little endian) File Meta group; return its end and UIDs."""
    offset = 132
    values: dict[int, str] = {}
    while offset + 8 <= len(data):
        group, element = struct.unpack("<HH", data[offset : offset + 4])
        if group != 0x0002:
            break
        vr = data[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            if offset + 12 > len(data):
                break
            length = struct.unpack("<I", data[offset + 8 : offset + 12])[0]
            start = offset + 12
        else:
            length = struct.unpack("<H", data[offset + 6 : offset + 8])[0]
            start = offset + 8
        if length == 0xFFFFFFFF or start + length > len(data):
            raise fail(path, "truncated", "is a damaged DICOM file (its header is cut short)")
        if element in (0x0002, 0x0010):
            values[element] = data[start : start + length].decode("ascii", "replace")
            values[element] = values[element].rstrip("\x00 ")
        offset = start + length
    if offset + 8 > len(data):
        raise fail(path, "truncated", "is a damaged DICOM file (it ends after its header)")
    if 0x0010 not in values:
        raise fail(path, "corrupt", "is a damaged DICOM file (no transfer syntax in its header)")
    return offset, values


def inflate(path: str | os.PathLike[str], body: bytes, max_pixels: int) -> bytes:
    """Inflate a Deflated data set in 1 MiB steps, refusing output beyond the cap."""
    cap = min(
        max(DEFLATE_FLOOR_BYTES, DEFLATE_RATIO_CAP * len(body)),
        6 * max_pixels + DEFLATE_FLOOR_BYTES,  # the largest legitimate image plus headers
    )
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    chunks: list[bytes] = []
    produced = 0
    pending = body
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            produced += len(chunk)
            if produced > cap:
                raise fail(
                    path,
                    "deflate_bomb",
                    f"is a compressed DICOM file that expands to more than {cap >> 20} MB "
                    "(a decompression bomb); it was not opened",
                )
            chunks.append(chunk)
            pending = inflater.unconsumed_tail
            # eof: trailing pad bytes stay in unconsumed_tail; no output: nothing left to do.
            if not pending or inflater.eof or not chunk:
                break
        chunks.append(inflater.flush())
    except zlib.error as error:
        raise fail(path, "corrupt", f"is a damaged deflated DICOM file ({error})") from None
    return b"".join(chunks)


def parse(path: str | os.PathLike[str], data: bytes, body_start: int, syntax: str) -> Dataset:
    """``dcmread`` of a whole file once its data set (from ``body_start``) passed the element
    budget; any parser failure is a damaged-file ``LoadError``."""
    check_element_budget(
        path,
        data,
        body_start,
        implicit=syntax == uids.ImplicitVRLittleEndian,
        little=syntax != uids.ExplicitVRBigEndian,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
            _check_declared_length(path, ds)
            ds.get("PixelData")  # materialise now, so parse errors surface here
    except (LoadError, MemoryError):
        raise
    except EOFError:
        raise fail(path, "truncated", "is a DICOM file that is cut short") from None
    except Exception as error:  # noqa: BLE001 - any parser failure is a damaged file
        raise fail(path, "corrupt", f"is a damaged DICOM file ({short(error)})") from None
    return ds


def parse_inflated(path: str | os.PathLike[str], inflated: bytes) -> Dataset:
    """The data set of an inflated Deflated file (plain Explicit VR Little Endian)."""
    check_element_budget(path, inflated, 0, implicit=False, little=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_dataset(io.BytesIO(inflated), is_implicit_VR=False, is_little_endian=True)
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
            _check_declared_length(path, ds)
            ds.get("PixelData")
    except (LoadError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - any parser failure is a damaged file
        raise fail(path, "corrupt", f"is a damaged DICOM file ({short(error)})") from None
    return ds


def _check_declared_length(path: str | os.PathLike[str], ds: Dataset) -> None:
    """Refuse Pixel Data whose declared length runs past the end of the file.

    pydicom reads what is there and keeps quiet (the pydicom #1274 family: a length field
    that overflowed or lies), so the declared length is compared with the bytes read.
    """
    raw = ds.get_item(0x7FE00010)
    declared = getattr(raw, "length", None)
    value = getattr(raw, "value", None)
    if declared is None or declared == 0xFFFFFFFF or not isinstance(value, bytes | bytearray):
        return
    if len(value) < declared:
        raise fail(
            path,
            "truncated",
            f"is a damaged DICOM file (its pixel data declares {declared} bytes, "
            f"but only {len(value)} are in the file)",
        )


def short(error: BaseException) -> str:
    """The first line of ``error``'s message, at most 160 characters (its type when empty)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
