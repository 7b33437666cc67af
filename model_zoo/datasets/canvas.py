"""The canvas lesions are painted on: the image plus one boolean mask per lesion type."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from model_zoo.datasets.anatomy import FloatImage, Geometry

LESION_TYPES: tuple[str, ...] = (
    "microaneurysm",
    "haemorrhage",
    "hard_exudate",
    "cotton_wool",
    "venous_beading",
    "neovascularisation",
    "preretinal_haemorrhage",
    "small_drusen",
    "large_drusen",
    "cnv",
)
"""Keys of ``SyntheticFundus.lesion_masks``, always all present."""
DR_LESIONS: tuple[str, ...] = LESION_TYPES[:7]
AMD_LESIONS: tuple[str, ...] = (
    "small_drusen",
    "large_drusen",
    "cnv",
    "haemorrhage",
    "hard_exudate",
)

Ellipse = tuple[float, float, float, float, float]
"""(centre x, centre y, semi-axis x, semi-axis y) in pixels and rotation in degrees."""

SHIFT = 3
SCALE = float(1 << SHIFT)


class Canvas:
    """The image being painted plus one boolean mask per lesion type.

    Lesions are composited "over" the background in a small region of interest, their colour
    scaled to the local brightness so that a lesion in the dark periphery is darker too.
    """

    def __init__(self, img: FloatImage, geom: Geometry) -> None:
        self.img = img
        self.geom = geom
        self.masks: dict[str, NDArray[np.bool_]] = {
            name: np.zeros((geom.height, geom.width), np.bool_) for name in LESION_TYPES
        }
        self._base_level = float(np.mean(geom.base_colour))

    def px(self, length: float, floor: float) -> float:
        """Normalised length -> pixels, never below ``floor`` pixels."""
        return max(floor, length * self.geom.radius)

    def paint(
        self,
        name: str | None,
        ellipses: list[Ellipse],
        colour: tuple[float, float, float],
        opacity: float,
        blur: float,
        cut_above: float | None = None,
    ) -> None:
        """Paint filled ellipses as one lesion and record them in the ``name`` mask.

        Args:
            name: lesion type (a key of LESION_TYPES), or None to paint without a mask.
            ellipses: shapes in pixels; their union is the lesion.
            colour: RGB 0-1 at full illumination.
            opacity: 0-1 at the lesion's centre.
            blur: Gaussian softness of the edge in pixels.
            cut_above: clear the shape above this y (pixels): a pre-retinal haemorrhage's
                fluid level.
        """
        margin = 3.0 * blur + 2.0
        x0 = int(min(e[0] - max(e[2], e[3]) for e in ellipses) - margin)
        x1 = int(max(e[0] + max(e[2], e[3]) for e in ellipses) + margin) + 1
        y0 = int(min(e[1] - max(e[2], e[3]) for e in ellipses) - margin)
        y1 = int(max(e[1] + max(e[2], e[3]) for e in ellipses) + margin) + 1
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(self.geom.width, x1), min(self.geom.height, y1)
        if x0 >= x1 or y0 >= y1:
            return
        patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for cx, cy, ax, ay, angle in ellipses:
            centre = (int(round((cx - x0) * SCALE)), int(round((cy - y0) * SCALE)))
            axes = (max(1, int(round(ax * SCALE))), max(1, int(round(ay * SCALE))))
            cv2.ellipse(patch, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
        if cut_above is not None:
            patch[: max(0, int(cut_above) - y0)] = 0
        hard = patch >= 128
        if cut_above is None:
            # A lesion smaller than a pixel still owns the pixel under its centre.
            for cx, cy, _, _, _ in ellipses:
                ix, iy = int(round(cx)) - x0, int(round(cy)) - y0
                if 0 <= iy < hard.shape[0] and 0 <= ix < hard.shape[1]:
                    hard[iy, ix] = True
                    patch[iy, ix] = max(int(patch[iy, ix]), 160)
        if name is not None:
            self.masks[name][y0:y1, x0:x1] |= hard
        alpha = patch.astype(np.float32) * np.float32(opacity / 255.0)
        if blur >= 0.3:
            alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), blur), np.float32)
        roi = self.img[y0:y1, x0:x1]
        level = float(np.clip(np.mean(roi) / self._base_level, 0.35, 1.15))
        target = np.array(colour, np.float32) * np.float32(level)
        roi += alpha[..., None] * (target - roi)
