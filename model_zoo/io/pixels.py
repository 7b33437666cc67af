"""Pixel conversions shared by the raster and DICOM decoders (OpenCV, numpy)."""

from __future__ import annotations

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


def scale_to_uint8(array: np.ndarray, bits: int) -> np.ndarray:
    """Map samples in ``0 .. 2**bits - 1`` linearly onto ``0 .. 255``, rounding to nearest.

    ``bits == 8`` with a ``uint8`` array is returned as is. For 16 bits the formula is
    ``(v * 255 + 32767) // 65535``: 0 -> 0, 65535 -> 255, 257 * k -> k.
    """
    if bits == 8 and array.dtype == np.uint8:
        return array
    maximum = (1 << bits) - 1
    wide = array.astype(np.uint32 if bits <= 16 else np.uint64)
    return ((wide * 255 + maximum // 2) // maximum).astype(np.uint8)


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
    """
    if image.dtype == np.uint16:
        image = scale_to_uint8(image, 16)
    elif image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return grey_to_rgb(image)
    channels = image.shape[2]
    if channels == 1:
        return grey_to_rgb(image[:, :, 0])
    if channels == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    if channels == 4:
        return np.ascontiguousarray(image[:, :, 2::-1])
    return None
