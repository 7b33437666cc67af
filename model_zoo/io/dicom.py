"""DICOM decoding with pydicom: strict, allowlisted and bounded (R14).

Order of checks, cheapest first, so a hostile file is refused before anything large is built:

1. the File Meta group is walked by hand (SOP class and transfer syntax, no pydicom yet);
2. SOP class allowlist (docs/grading-conventions.md), transfer syntax allowlist (a decoder must be
   installed for it);
3. Deflated Explicit VR LE is inflated here in chunks under a cap (pydicom would inflate the
   whole body with no cap: a 0.6 MB file costs 1.2 GB);
4. the data set's elements are counted by a walk that stops at a limit, then ``dcmread``
   without ``force`` (both in :mod:`model_zoo.io.dicom_parse`);
5. Pixel Data present; Rows × Columns × Frames against ``max_pixels``; native Pixel Data length;
6. the decode budget (:mod:`model_zoo.io.budget`): frame 1's samples at their bit depth and
   channel count, times the chosen decoder's copies, against ``max_decode_bytes``, and a
   compressed frame's expansion;
7. decode frame 1 only: JPEG Baseline/Extended 8-bit through OpenCV (fast path, reduced
   decoding for thumbnails), everything else through pydicom's decoders.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from typing import Any

import cv2
import numpy as np
import pydicom.uid as uids
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import as_pixel_options

from model_zoo.io.budget import DecodeCost, check_budget
from model_zoo.io.dicom_parse import inflate, meta_group, parse, parse_inflated, short
from model_zoo.io.errors import LoadError, fail
from model_zoo.io.headers import HeaderError, JpegHeader, jpeg_is_complete, probe_jpeg
from model_zoo.io.pixels import JPEG_FLAGS, grey_to_rgb, reduce_area, scale_to_uint8
from model_zoo.io.quiet import decoder_output_filtered

#: SOP classes we accept (docs/grading-conventions.md, the R14 allowlist).
ALLOWED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.5": "Wide Field Ophthalmic Photography Stereographic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
}
_FAST_JPEG = frozenset({uids.JPEGBaseline8Bit, uids.JPEGExtended12Bit})
_NATIVE = frozenset(
    {uids.ImplicitVRLittleEndian, uids.ExplicitVRLittleEndian, uids.ExplicitVRBigEndian}
)
#: Peak memory of pydicom's decoders in units of the frame they return, by bytes per sample
#: (1, 2): what the decode budget multiplies frame 1's samples by. Native: dcmread's copy of
#: the Pixel Data and the array; RLE: segment buffers and de-interleaving; JPEG 2000:
#: openjpeg's 32-bit working samples; other pylibjpeg codecs: their buffers. The measurements
#: behind these are in docs/limitations.md.
_DECODER_COPIES: dict[str, tuple[float, float]] = {
    "native": (2.0, 2.0),
    uids.RLELossless: (4.0, 4.0),
    "jpeg2000": (8.0, 6.0),
    "other": (6.0, 6.0),
}
_COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422"})
_GREY_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})
_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) LE, BE


def _decoder_available(transfer_syntax: uids.UID) -> bool:
    """Whether pydicom has a working decoder (with its plugin installed) for the syntax."""
    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except NotImplementedError:
        return False


def _printable(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= 64 else clean[:61] + "..."


def _syntax_name(transfer_syntax: str) -> str:
    uid = uids.UID(transfer_syntax)
    if uid.is_valid and uid.name != str(uid):
        return str(uid.name)
    return f"'{_printable(transfer_syntax)}'"


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise ValueError(f"missing {keyword}")
        return default
    return int(value)


def _text(ds: Dataset, keyword: str) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on invalid values; we only read
            value = ds.get(keyword, "")
            return str(value).strip() if value is not None else ""
    except Exception:  # noqa: BLE001 - an undecodable text tag is just absent metadata
        return ""


def _fast_jpeg(
    path: str | os.PathLike[str],
    frame: bytes,
    header: JpegHeader,
    photometric: str,
    reduce: int,
) -> np.ndarray | None:
    """Decode a JPEG frame with OpenCV; ``None`` where only pydicom gets the colours right.

    libjpeg converts YCbCr to RGB when the codestream says so (JFIF marker, Adobe transform
    1, or neither marker with component ids other than "RGB"). The one case it gets wrong is a
    codestream with no marker whose DICOM photometric says RGB: the samples are RGB but
    libjpeg would transform them; pydicom decodes it raw, so it takes that case.
    """
    colour = header.channels == 3
    if photometric not in (_COLOUR_PHOTOMETRICS if colour else _GREY_PHOTOMETRICS):
        return None  # e.g. PALETTE COLOR: pydicom applies the lookup table
    if colour and not (header.jfif or header.adobe_transform is not None):
        rgb_ids = header.component_ids == (82, 71, 66)
        lower_ids = header.component_ids == (114, 103, 98)
        if lower_ids or (photometric == "RGB" and not rgb_ids):
            return None
    if not jpeg_is_complete(frame, header):
        raise fail(path, "truncated", "is a DICOM file whose JPEG image is cut short")
    flags = JPEG_FLAGS[reduce][0 if colour else 1]
    with decoder_output_filtered():  # libjpeg's "Corrupt JPEG data" lines
        image = cv2.imdecode(np.frombuffer(frame, np.uint8), flags)
    if image is None:
        raise fail(path, "corrupt", "is a DICOM file whose JPEG image is damaged")
    if not colour:
        if photometric == "MONOCHROME1":
            image = 255 - image
        image = grey_to_rgb(image)
    return np.asarray(image)


def _decode_pydicom(path: str | os.PathLike[str], ds: Dataset, syntax: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoder = get_decoder(uids.UID(syntax))
            with decoder_output_filtered():  # openjpeg's and libjpeg's lines on damaged frames
                arr, props = decoder.as_array(ds, index=0, validate=True, **as_pixel_options(ds))
            photometric = str(props.get("photometric_interpretation", ""))
            palette = photometric == "PALETTE COLOR"
            if palette:
                arr = apply_color_lut(arr, ds)
                photometric = "RGB"
    except LoadError:
        raise
    except Exception as error:  # noqa: BLE001 - decoder failures are damaged files
        reason = "truncated" if "less than expected" in str(error) else "corrupt"
        raise fail(
            path, reason, f"has pixel data that could not be decoded ({short(error)})"
        ) from None
    if palette:
        bits = 8 * arr.dtype.itemsize  # LUT entries are 8 or 16 bits wide
    else:
        stored = _int(ds, "BitsStored", _int(ds, "BitsAllocated", 8))
        bits = max(1, min(stored, 8 * arr.dtype.itemsize))
    # Signed samples are shifted onto 0 .. 2**bits - 1, out-of-range ones clipped, in chunks:
    # widening the whole frame to 32 bits first cost more than the frame itself.
    image = scale_to_uint8(arr, bits)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if image.ndim == 3:
            image = image[:, :, 0]
        if photometric == "MONOCHROME1":
            image = 255 - image
        return grey_to_rgb(image)
    if photometric != "RGB" or image.ndim != 3 or image.shape[2] != 3:
        raise fail(
            path,
            "unsupported_format",
            f"uses photometric interpretation {photometric or '(none)'}, which is not supported",
        )
    return image


def decode_dicom(
    path: str | os.PathLike[str], data: bytes, reduce: int, max_pixels: int, max_decode_bytes: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode frame 1 of a DICOM file held in ``data``.

    Returns:
        ``(rgb, fields)``: H×W×3 uint8 RGB (reduced by ``reduce``) and the :class:`ImageMeta`
        fields read from the data set (everything except sha256 and the name rules).

    Raises:
        LoadError: Any refusal listed in the module docstring.
    """
    with warnings.catch_warnings():
        # pydicom warns about every invalid value it meets; the outcome is a LoadError or an
        # image, and warnings from hostile files would only flood the decode worker's log.
        warnings.simplefilter("ignore")
        try:
            return _decode_dicom(path, data, reduce, max_pixels, max_decode_bytes)
        except LoadError:
            raise
        except (NotImplementedError, ValueError, TypeError, KeyError, IndexError) as error:
            # pydicom converts an element's value when it is first read, so a damaged element
            # (one byte of a VR changed: "unknown Value Representation") fails wherever the
            # decode happens to read it first.
            raise fail(path, "corrupt", f"is a damaged DICOM file ({short(error)})") from None


def _decode_dicom(
    path: str | os.PathLike[str], data: bytes, reduce: int, max_pixels: int, max_decode_bytes: int
) -> tuple[np.ndarray, dict[str, Any]]:
    meta_end, file_meta = meta_group(path, data)
    sop_meta, syntax = file_meta.get(0x0002, ""), file_meta[0x0010]
    if sop_meta and sop_meta not in ALLOWED_SOP_CLASSES:
        raise _sop_refusal(path, sop_meta)
    ds, body = _dataset(path, data, meta_end, syntax, max_pixels)
    sop_dataset = _text(ds, "SOPClassUID")
    if sop_meta and sop_dataset and sop_dataset != sop_meta:
        raise fail(
            path,
            "corrupt",
            "is a damaged DICOM file (its header and body name different SOP classes)",
        )
    sop = sop_meta or sop_dataset
    if sop not in ALLOWED_SOP_CLASSES:
        raise _sop_refusal(path, sop)
    _check_pixel_data(path, ds, body)
    rows, cols, samples, bits_allocated, frames = _geometry(path, ds, max_pixels)
    photometric = _text(ds, "PhotometricInterpretation").upper()
    image: np.ndarray | None = None
    if syntax in _FAST_JPEG and bits_allocated == 8:
        width, height = math.ceil(cols / reduce), math.ceil(rows / reduce)
        fast = DecodeCost(width, height, 3, 8, copies=2.0, rgb_pixels=width * height)
        check_budget(path, "DICOM", fast, max_decode_bytes)
        image = _first_jpeg_frame(path, ds, (cols, rows, samples, frames), photometric, reduce)
    if image is None:
        # After inflation the data set is plain Explicit VR LE: decode it as such.
        effective = str(ds.file_meta.get("TransferSyntaxUID", syntax))
        if "2000" in uids.UID(effective).name:
            _check_j2k_size(path, ds, (cols, rows, samples))
        cost = _pydicom_cost(ds, effective, (rows, cols, samples, bits_allocated), photometric)
        check_budget(path, "DICOM", cost, max_decode_bytes)
        image = reduce_area(_decode_pydicom(path, ds, effective), reduce)
    fields: dict[str, Any] = {
        "width": cols,
        "height": rows,
        "bit_depth": _int(ds, "BitsStored", bits_allocated),
        "study_date": _date(_text(ds, "StudyDate")),
        "modality": _text(ds, "Modality"),
        "sop_class_uid": sop,
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "transfer_syntax": syntax,
        "frames": max(frames, 1),
        "burned_in_annotation": _text(ds, "BurnedInAnnotation").upper(),
        "laterality": _laterality(ds),
        "patient_id": _text(ds, "PatientID"),
    }
    return np.ascontiguousarray(image), fields


def _dataset(
    path: str | os.PathLike[str], data: bytes, meta_end: int, syntax: str, max_pixels: int
) -> tuple[Dataset, bytes]:
    """The parsed data set and the bytes after the meta group (inflated when deflated)."""
    if syntax == uids.DeflatedExplicitVRLittleEndian:
        inflated = inflate(path, data[meta_end:], max_pixels)
        return parse_inflated(path, inflated), inflated
    if syntax not in (
        uids.ImplicitVRLittleEndian,
        uids.ExplicitVRLittleEndian,
        uids.ExplicitVRBigEndian,
    ) and not _decoder_available(uids.UID(syntax)):
        raise fail(
            path,
            "unsupported_transfer_syntax",
            f"is compressed as {_syntax_name(syntax)}, and no decoder for it is installed",
        )
    return parse(path, data, meta_end, syntax), data[meta_end:]


def _pydicom_cost(
    ds: Dataset, syntax: str, geometry: tuple[int, int, int, int], photometric: str
) -> DecodeCost:
    """What pydicom's decoder for ``syntax`` needs for frame 1 of ``(rows, cols, samples,
    bits allocated)``; a compressed frame is also judged by its expansion."""
    rows, cols, samples, bits = geometry
    uid = uids.UID(syntax)
    wide = 1 if bits > 8 else 0
    if syntax in _NATIVE:
        copies, compressed = _DECODER_COPIES["native"][wide], None
    else:
        family = "jpeg2000" if "2000" in uid.name else syntax
        copies = _DECODER_COPIES.get(family, _DECODER_COPIES["other"])[wide]
        pixel_data = ds.get("PixelData")
        compressed = len(pixel_data) if isinstance(pixel_data, bytes | bytearray) else None
        if syntax in _FAST_JPEG:
            compressed = None  # DCT JPEG: bounded by its pixels, and dark photographs shrink far
    palette = photometric == "PALETTE COLOR"  # the lookup's RGB output, up to 16 bits
    return DecodeCost(
        cols,
        rows,
        samples,
        bits,
        copies=copies,
        extra=6 * rows * cols if palette else 0,
        compressed=compressed,
        rgb_pixels=rows * cols,
    )


_J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC then SIZ: where a JPEG 2000 codestream states its size


def _check_j2k_size(
    path: str | os.PathLike[str], ds: Dataset, expected: tuple[int, int, int]
) -> None:
    """Refuse a JPEG 2000 frame whose own size differs from the data set's (cols, rows, samples).

    openjpeg allocates what the codestream's SIZ marker says, not what the DICOM header says:
    a 17 KB file whose header claims 36 x 40 once cost 1.4 GB. The marker is read first.
    """
    pixel_data = ds.get("PixelData")
    if not isinstance(pixel_data, bytes | bytearray):
        return
    at = pixel_data.find(_J2K_SIZ)
    if at < 0 or len(pixel_data) < at + 4 + 38:
        raise fail(path, "corrupt", "has JPEG 2000 pixel data without a readable size marker")
    (xsiz, ysiz, xosiz, yosiz) = struct.unpack_from(">4I", pixel_data, at + 8)
    (components,) = struct.unpack_from(">H", pixel_data, at + 4 + 36)
    found = (xsiz - xosiz, ysiz - yosiz, components)
    if found != expected:
        raise fail(
            path,
            "corrupt",
            f"has a JPEG 2000 frame of {found[0]}x{found[1]} with {found[2]} components where "
            f"the header says {expected[0]}x{expected[1]} with {expected[2]}",
        )


def _check_pixel_data(path: str | os.PathLike[str], ds: Dataset, body: bytes) -> None:
    if "PixelData" in ds:
        return
    if any(tag in body for tag in _PIXEL_DATA_TAGS):
        # pydicom drops an element that runs past the end of the file without an error.
        raise fail(path, "truncated", "is a DICOM file that is cut short (in its pixel data)")
    kind = "Float Pixel Data" if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds else ""
    detail = (
        f"holds {kind}, which is not supported" if kind else "contains no image (no pixel data)"
    )
    raise fail(path, "no_pixel_data", detail)


def _geometry(
    path: str | os.PathLike[str], ds: Dataset, max_pixels: int
) -> tuple[int, int, int, int, int]:
    """``(rows, cols, samples per pixel, bits allocated, frames)``, checked."""
    try:
        rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
        samples = _int(ds, "SamplesPerPixel", 1)
        bits_allocated = _int(ds, "BitsAllocated")
        frames = _int(ds, "NumberOfFrames", 1) or 1
    except (ValueError, TypeError) as error:
        raise fail(path, "corrupt", f"is a damaged DICOM file ({short(error)})") from None
    if samples not in (1, 3):
        raise fail(
            path, "unsupported_format", f"has {samples} samples per pixel, which is not supported"
        )
    if rows <= 0 or cols <= 0 or frames < 0:
        raise fail(
            path,
            "corrupt",
            f"is a damaged DICOM file (Rows {rows}, Columns {cols}, Number of Frames {frames})",
        )
    if bits_allocated not in (8, 16):
        raise fail(
            path, "unsupported_format", f"has {bits_allocated}-bit samples, which are not supported"
        )
    total = rows * cols * frames
    if total > max_pixels:
        raise fail(
            path,
            "too_large",
            f"declares {cols} × {rows} pixels × {frames} frame(s) "
            f"({total / 1e6:.0f} Mpx), above the {max_pixels / 1e6:.0f} Mpx limit",
        )
    return rows, cols, samples, bits_allocated, frames


def _first_jpeg_frame(
    path: str | os.PathLike[str],
    ds: Dataset,
    shape: tuple[int, int, int, int],
    photometric: str,
    reduce: int,
) -> np.ndarray | None:
    """Frame 0 of 8-bit encapsulated JPEG through the fast decoder; None to use pydicom's.

    Args:
        shape: ``(cols, rows, samples, frames)`` the header declares.
    """
    cols, rows, samples, frames = shape
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=frames)
        header = probe_jpeg(frame)
    except HeaderError as error:
        raise fail(
            path,
            "truncated" if error.truncated else "corrupt",
            f"is a DICOM file whose JPEG image is damaged ({error})",
        ) from None
    except Exception as error:  # noqa: BLE001 - broken encapsulation
        raise fail(
            path, "corrupt", f"is a DICOM file whose image data is damaged ({short(error)})"
        ) from None
    if (header.width, header.height, header.channels) != (cols, rows, samples):
        raise fail(
            path,
            "corrupt",
            f"is a damaged DICOM file (its JPEG image is {header.width} × {header.height} × "
            f"{header.channels}, but the header says {cols} × {rows} × {samples})",
        )
    if header.bit_depth != 8:
        return None
    return _fast_jpeg(path, frame, header, photometric, reduce)


def _sop_refusal(path: str | os.PathLike[str], sop: str) -> LoadError:
    name = uids.UID(sop).name if sop else ""
    label = f"{name} ({sop})" if name and name != sop else (_printable(sop) or "none")
    return fail(
        path,
        "unsupported_sop_class",
        f"is a DICOM object of an unsupported SOP class: {label}; only ophthalmic and "
        "VL photographs and secondary captures are read",
    )


def _laterality(ds: Dataset) -> str:
    value = _text(ds, "ImageLaterality").upper()
    return value if value in ("R", "L", "B") else ""


def _date(value: str) -> str:
    return value if len(value) == 8 and value.isdigit() else ""
