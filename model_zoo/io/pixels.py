"""Pixel conversions shared by the raster and DICOM decoders (OpenCV, numpy)."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

_RGB = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
_GREY = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION
# IMREAD_REDUCED_COLOR_n includes the BGR bit; IMREAD_COLOR_RGB may not be combined with it,
# so the reduced RGB flags are built from the scale bits (16, 32, 48) alone.
JPEG_FLAGS: dict[int, tuple[int, int]] = {
    1: (_RGB, _GREY),
    2: (cv2.IMREAD_REDUCED_GRAYSCALE_2 | _RGB, cv2.IMREAD_REDUCED_GRAYSCALE_2 | _GREY),
    4: (cv2.IMREAD_REDUCED_GRAYSCALE_4 | _RGB, cv2.IMREAD_REDUCED_GRAYSCALE_4 | _GREY),
    8: (cv2.IMREAD_REDUCED_GRAYSCALE_8 | _RGB, cv2.IMREAD_REDUCED_GRAYSCALE_8 | _GREY),
}
"""``reduce`` -> (colour flags, grey flags) for ``cv2.imdecode`` of JPEG data (libjpeg's DCT
scaling; EXIF orientation ignored)."""


#: Samples converted per step: the lookup's index array is 8 bytes a sample, so converting a
#: 100 Mpx image in one go would need gigabytes of temporaries.
_CHUNK_SAMPLES = 1 << 22


@functools.lru_cache(maxsize=16)
def _scale_table(dtype: str, bits: int) -> np.ndarray:
    """uint8 table indexed by a sample's unsigned bit pattern: the 8-bit value of every sample.

    Signed samples are shifted onto ``0 .. 2**bits - 1`` first; samples outside the ``bits``
    range clip (what ``np.clip`` before the rescale did).
    """
    kind = np.dtype(dtype)
    size = 1 << (8 * kind.itemsize)
    codes = np.arange(size, dtype=np.int64)
    if kind.kind == "i":
        codes = np.where(codes >= size // 2, codes - size, codes) + (1 << (bits - 1))
    maximum = (1 << bits) - 1
    values = np.clip(codes, 0, maximum)
    return ((values * 255 + maximum // 2) // maximum).astype(np.uint8)


def scale_to_uint8(array: np.ndarray, bits: int) -> np.ndarray:
    """Map samples in ``0 .. 2**bits - 1`` linearly onto ``0 .. 255``, rounding to nearest.

    ``bits == 8`` with a ``uint8`` array is returned as is. For 16 bits the formula is
    ``(v * 255 + 32767) // 65535``: 0 -> 0, 65535 -> 255, 257 * k -> k. Signed samples are
    shifted by ``2**(bits-1)`` first; values outside the range clip. 8- and 16-bit integer
    arrays (any strides: a channel-reversed view is fine) go through a lookup table in
    chunks, so the only full-size allocation is the C-contiguous ``uint8`` result.
    """
    if bits == 8 and array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "ui" or array.dtype.itemsize > 2:
        raise ValueError(f"cannot scale {array.dtype} samples to 8 bits")
    bits = max(1, min(bits, 8 * array.dtype.itemsize))
    table = _scale_table(array.dtype.str, bits)
    codes = array.view(np.dtype(f"u{array.dtype.itemsize}"))
    out = np.empty(array.shape, np.uint8)
    if array.ndim == 0 or array.size == 0:
        out[...] = table[codes]
        return out
    row = max(1, array.size // array.shape[0])
    step = max(1, _CHUNK_SAMPLES // row)
    for start in range(0, array.shape[0], step):
        out[start : start + step] = table[codes[start : start + step]]
    return out


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """H×W uint8 -> H×W×3 uint8 with three equal channels."""
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def reduce_area(rgb: np.ndarray, reduce: int) -> np.ndarray:
    """Downscale by ``reduce`` with area averaging to (ceil(H/reduce), ceil(W/reduce))."""
    if reduce == 1:
        return rgb
    height, width = rgb.shape[:2]
    size = (max(1, math.ceil(width / reduce)), max(1, math.ceil(height / reduce)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def opencv_to_rgb8(image: np.ndarray) -> np.ndarray | None:
    """Convert an ``IMREAD_UNCHANGED`` result to H×W×3 uint8 RGB; ``None`` if unsupported.

    Grey becomes three channels, BGR(A) becomes RGB with alpha dropped (not composited),
    16-bit samples are scaled with :func:`scale_to_uint8`. Float or 32-bit samples are refused.
    Needs one full-size allocation beyond ``image``: the RGB result.
    """
    if image.dtype not in (np.uint8, np.uint16):
        return None
    bits = 8 * image.dtype.itemsize
    if image.ndim == 2:
        return grey_to_rgb(scale_to_uint8(image, bits))
    channels = image.shape[2]
    if channels == 1:
        return grey_to_rgb(scale_to_uint8(image[:, :, 0], bits))
    if channels not in (3, 4):
        return None
    # Reorder (and drop alpha) on a view, then scale into the one RGB result: no full-size
    # intermediate of the source's width.
    rgb = image[:, :, 2::-1]
    return scale_to_uint8(rgb, bits) if bits == 16 else np.ascontiguousarray(rgb)
