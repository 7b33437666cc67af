"""Display enhancement of fundus photographs: red-free, CLAHE, gamma, brightness and contrast.

These change only what the grader sees, never the stored image or what a model reads. Every
function takes and returns an H×W×3 ``uint8`` RGB array and never modifies its input. They run
off the GUI thread (a 3000×2000 CLAHE costs tens of milliseconds).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]
"""H×W×3 uint8 RGB."""

GAMMA_RANGE = (0.3, 3.0)
BRIGHTNESS_RANGE = (-100, 100)
CONTRAST_RANGE = (0.3, 3.0)


class EnhancePreset(enum.StrEnum):
    """The named looks a grader cycles through."""

    NONE = "none"
    RED_FREE = "red_free"
    """Green channel as grey: vessels, haemorrhages and microaneurysms stand out (red-free)."""
    CLAHE = "clahe"
    """Contrast-limited adaptive histogram equalisation of lightness, colours kept."""
    RED_FREE_CLAHE = "red_free_clahe"
    """Green channel, then CLAHE: the strongest look for small red lesions."""


PRESET_LABELS: dict[EnhancePreset, str] = {
    EnhancePreset.NONE: "Original",
    EnhancePreset.RED_FREE: "Red-free",
    EnhancePreset.CLAHE: "CLAHE",
    EnhancePreset.RED_FREE_CLAHE: "Red-free + CLAHE",
}


@dataclass(frozen=True, slots=True)
class Enhancement:
    """A display enhancement; the identity (all defaults) shows the image unchanged.

    Args:
        preset: the named look applied first.
        gamma: display gamma in ``GAMMA_RANGE``; > 1 brightens mid-tones, < 1 darkens them.
        brightness: added to every channel after contrast, in grey levels, ``BRIGHTNESS_RANGE``.
        contrast: multiplier around mid-grey (128), ``CONTRAST_RANGE``.
        clahe_clip: CLAHE clip limit (OpenCV units), used by the CLAHE presets, in (0, 40].
    """

    preset: EnhancePreset = EnhancePreset.NONE
    gamma: float = 1.0
    brightness: int = 0
    contrast: float = 1.0
    clahe_clip: float = 2.5

    def __post_init__(self) -> None:
        if not GAMMA_RANGE[0] <= self.gamma <= GAMMA_RANGE[1]:
            raise ValueError(f"gamma must be in {GAMMA_RANGE}, got {self.gamma}")
        if not BRIGHTNESS_RANGE[0] <= self.brightness <= BRIGHTNESS_RANGE[1]:
            raise ValueError(f"brightness must be in {BRIGHTNESS_RANGE}, got {self.brightness}")
        if not CONTRAST_RANGE[0] <= self.contrast <= CONTRAST_RANGE[1]:
            raise ValueError(f"contrast must be in {CONTRAST_RANGE}, got {self.contrast}")
        if not 0 < self.clahe_clip <= 40:
            raise ValueError(f"clahe_clip must be in (0, 40], got {self.clahe_clip}")

    @property
    def is_identity(self) -> bool:
        """True when applying it would return the image unchanged."""
        return (
            self.preset is EnhancePreset.NONE
            and self.gamma == 1.0
            and self.brightness == 0
            and self.contrast == 1.0
        )

    def describe(self) -> str:
        """Short text for the "enhanced" badge, e.g. ``"Red-free · γ 1.4"``; empty for identity."""
        if self.is_identity:
            return ""
        parts = [] if self.preset is EnhancePreset.NONE else [PRESET_LABELS[self.preset]]
        if self.gamma != 1.0:
            parts.append(f"γ {self.gamma:.2f}")
        if self.contrast != 1.0:
            parts.append(f"contrast ×{self.contrast:.2f}")
        if self.brightness:
            parts.append(f"brightness {self.brightness:+d}")
        return " · ".join(parts)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")


def red_free(rgb: RGBImage) -> RGBImage:
    """The green channel shown as grey (red-free photography simulated)."""
    _check_rgb(rgb)
    green = np.ascontiguousarray(rgb[:, :, 1])
    return np.repeat(green[:, :, None], 3, axis=2)


def _clahe_tile_grid(shape: tuple[int, ...]) -> tuple[int, int]:
    # About 8 tiles across the fundus field whatever the resolution, so the look is the same on a
    # thumbnail-sized preview and on the full image.
    return (8, 8) if min(shape[:2]) >= 64 else (2, 2)


def clahe(rgb: RGBImage, clip: float = 2.5) -> RGBImage:
    """CLAHE on the lightness channel (CIE L*a*b*), so colours keep their hue."""
    _check_rgb(rgb)
    equaliser = cv2.createCLAHE(clipLimit=clip, tileGridSize=_clahe_tile_grid(rgb.shape))
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = equaliser.apply(np.ascontiguousarray(lab[:, :, 0]))
    return np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), dtype=np.uint8)


def _grey_clahe(grey: npt.NDArray[np.uint8], clip: float) -> npt.NDArray[np.uint8]:
    equaliser = cv2.createCLAHE(clipLimit=clip, tileGridSize=_clahe_tile_grid(grey.shape))
    return np.asarray(equaliser.apply(np.ascontiguousarray(grey)), dtype=np.uint8)


def tone_lut(
    *, gamma: float = 1.0, brightness: int = 0, contrast: float = 1.0
) -> npt.NDArray[np.uint8]:
    """The 256-entry lookup table for gamma, then contrast around 128, then brightness."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    levels = np.power(levels, 1.0 / gamma) * 255.0
    levels = (levels - 128.0) * contrast + 128.0 + brightness
    lut: npt.NDArray[np.uint8] = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    return lut


def apply_enhancement(rgb: RGBImage, enhancement: Enhancement) -> RGBImage:
    """Apply ``enhancement`` to an RGB image and return a new array of the same shape.

    Args:
        rgb: H×W×3 uint8 RGB; never modified.
        enhancement: what to apply; the identity returns a copy.

    Raises:
        ValueError: ``rgb`` is not H×W×3 uint8.

    Example:
        >>> shown = apply_enhancement(image, Enhancement(EnhancePreset.RED_FREE, gamma=1.3))
    """
    _check_rgb(rgb)
    preset = enhancement.preset
    if preset is EnhancePreset.NONE:
        out = rgb.copy()
    elif preset is EnhancePreset.RED_FREE:
        out = red_free(rgb)
    elif preset is EnhancePreset.CLAHE:
        out = clahe(rgb, enhancement.clahe_clip)
    else:
        grey = _grey_clahe(rgb[:, :, 1], enhancement.clahe_clip)
        out = np.repeat(grey[:, :, None], 3, axis=2)
    if enhancement.gamma != 1.0 or enhancement.brightness or enhancement.contrast != 1.0:
        lut = tone_lut(
            gamma=enhancement.gamma,
            brightness=enhancement.brightness,
            contrast=enhancement.contrast,
        )
        out = np.asarray(cv2.LUT(out, lut), dtype=np.uint8)
    return out


def next_preset(preset: EnhancePreset) -> EnhancePreset:
    """The preset after ``preset`` in the cycle a grader steps through with one key."""
    order = list(EnhancePreset)
    return order[(order.index(preset) + 1) % len(order)]
