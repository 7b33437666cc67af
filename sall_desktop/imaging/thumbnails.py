"""Thumbnail pixels: choose the reduced-decode factor and resize to fit a square, aspect kept."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

REDUCE_FACTORS: tuple[int, ...] = (1, 2, 4, 8)
"""Factors the reduced JPEG decoder supports (libjpeg DCT scaling)."""


def reduce_factor_for(width: int, height: int, max_side: int) -> int:
    """The largest reduced-decode factor that still yields at least ``max_side`` on the long side.

    Decoding at 1/8 scale is several times faster than a full decode, but a thumbnail upscaled
    from too small a decode looks soft, so we stop at the factor that keeps enough pixels.

    Args:
        width: full image width in pixels (0 when unknown: then 1, a full decode).
        height: full image height in pixels.
        max_side: target thumbnail long side in pixels (> 0).
    """
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    long_side = max(width, height)
    if long_side <= 0:
        return 1
    best = 1
    for factor in REDUCE_FACTORS:
        if long_side // factor >= max_side:
            best = factor
    return best


def fit_within(rgb: npt.NDArray[np.uint8], max_side: int) -> npt.NDArray[np.uint8]:
    """Resize so the long side is at most ``max_side`` (area filter), keeping the aspect ratio.

    Images already small enough are returned as a contiguous copy, never upscaled.

    Args:
        rgb: H×W×C uint8 image.
        max_side: maximum long side in pixels (> 0).
    """
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    height, width = rgb.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return np.ascontiguousarray(rgb).copy()
    scale = max_side / long_side
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
