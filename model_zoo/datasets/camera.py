"""Camera profiles: the same synthetic eye as another clinic's camera would photograph it.

A model trained on one camera meets another in every new clinic: softer focus, uneven flash,
vignetting, a colour cast, another tone curve, harder JPEG compression and a different field of
view. A :class:`CameraProfile` names those differences so that a "new clinic" can be drawn from
the generator with known grades and lesion masks (the loop benchmark, ``docs/loop-benchmark.md``).

Each image varies around its profile (``jitter``) with draws seeded by the image's own seed, so
the same spec through the same profile always gives the same bytes. Numpy and OpenCV only.

Example:
    >>> from model_zoo.datasets.synthetic import FundusSpec, render_fundus
    >>> fundus = render_fundus(FundusSpec(seed=7, size=256))
    >>> clinic = through_camera(fundus, CAMERA_PROFILES["clinic-b"])
    >>> clinic.rgb.shape
    (256, 256, 3)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from model_zoo.datasets.synthetic import SyntheticFundus

_STREAM_PROFILE = 0xCA


@dataclass(frozen=True)
class CameraProfile:
    """How one camera renders a fundus, relative to the generator's own rendition.

    Attributes:
        name: registry key (``reference``, ``clinic-b``...).
        description: one line for people.
        blur_sigma: defocus, Gaussian sigma as a fraction of the image width (0 = sharp).
        flash_tilt: illumination falling linearly across the field: brightness at the field's
            far edge is ``1 - flash_tilt`` of the near edge's (0 = even).
        flash_angle: direction (degrees, image axes) the flash comes from.
        vignetting: brightness lost at the field's rim, falling off with the squared radius.
        colour_gain: RGB gains (white balance); ``(1.1, 1.0, 0.8)`` is warm.
        gamma: tone curve exponent on [0, 1] values (> 1 darkens mid-tones).
        jpeg_quality: quality the images are written with.
        field_scale: magnification about the image centre; > 1 is a narrower field of view
            (the disc looks larger and the frame clips more of the field).
        jitter: relative per-image variation of every parameter above (uniform, +-jitter).
    """

    name: str
    description: str
    blur_sigma: float = 0.0
    flash_tilt: float = 0.0
    flash_angle: float = 0.0
    vignetting: float = 0.0
    colour_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 1.0
    jpeg_quality: int = 92
    field_scale: float = 1.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            (self.blur_sigma >= 0, "blur_sigma must be >= 0"),
            (0 <= self.flash_tilt < 1, "flash_tilt must be in [0, 1)"),
            (0 <= self.vignetting < 1, "vignetting must be in [0, 1)"),
            (all(g > 0 for g in self.colour_gain), "colour_gain must be positive"),
            (self.gamma > 0, "gamma must be > 0"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must be 1-100"),
            (0.5 <= self.field_scale <= 2.0, "field_scale must be in [0.5, 2]"),
            (0 <= self.jitter < 1, "jitter must be in [0, 1)"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"camera profile {self.name!r}: {message}")


CAMERA_PROFILES: dict[str, CameraProfile] = {
    p.name: p
    for p in (
        CameraProfile("reference", "the generator's own camera: no change"),
        CameraProfile(
            "clinic-b",
            "a second clinic: defocus, flash from the upper left with vignetting, warm cast, "
            "darker mid-tones, JPEG q75",
            blur_sigma=0.006,
            flash_tilt=0.45,
            flash_angle=225.0,
            vignetting=0.35,
            colour_gain=(1.12, 0.96, 0.72),
            gamma=1.3,
            jpeg_quality=75,
            field_scale=1.0,
            jitter=0.15,
        ),
        CameraProfile(
            "handheld",
            "a handheld non-mydriatic camera: narrower field, softer focus, cool cast, "
            "brighter, JPEG q70",
            blur_sigma=0.008,
            flash_tilt=0.25,
            flash_angle=90.0,
            vignetting=0.45,
            colour_gain=(0.85, 1.0, 1.1),
            gamma=0.8,
            jpeg_quality=70,
            field_scale=1.15,
            jitter=0.2,
        ),
    )
}
"""Profiles by name; ``reference`` leaves an image as the generator drew it."""


def camera_profile(name: str) -> CameraProfile:
    """The registered profile called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return CAMERA_PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown camera profile {name!r}; choose from {', '.join(CAMERA_PROFILES)}"
        ) from None


def _vary(value: float, jitter: float, rng: np.random.Generator) -> float:
    return value * (1.0 + jitter * (2.0 * float(rng.random()) - 1.0))


def _zoom(image: NDArray[np.uint8], scale: float, interpolation: int) -> NDArray[np.uint8]:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), 0.0, scale)
    out = cv2.warpAffine(
        image, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_CONSTANT
    )
    return np.asarray(out, np.uint8)


def through_camera(fundus: SyntheticFundus, profile: CameraProfile) -> SyntheticFundus:
    """``fundus`` as ``profile``'s camera would have taken it (masks and landmarks follow).

    The JPEG quality is not applied here: the dataset writer encodes with
    ``profile.jpeg_quality``.
    """
    if profile.name == "reference" and profile == CAMERA_PROFILES["reference"]:
        return fundus
    rng = np.random.default_rng([fundus.spec.seed, _STREAM_PROFILE])
    jitter = profile.jitter
    rgb = fundus.rgb
    height, width = rgb.shape[:2]
    masks = fundus.lesion_masks
    cx, cy, radius = fundus.field_centre[0], fundus.field_centre[1], fundus.field_radius
    disc, fovea = fundus.disc_centre, fundus.fovea_centre
    scale = _vary(profile.field_scale, jitter / 4, rng) if profile.field_scale != 1.0 else 1.0
    if scale != 1.0:
        rgb = _zoom(rgb, scale, cv2.INTER_LINEAR)
        masks = {
            k: np.asarray(_zoom(m.astype(np.uint8), scale, cv2.INTER_NEAREST), bool)
            for k, m in masks.items()
        }
        mid_x, mid_y = (width - 1) / 2.0, (height - 1) / 2.0

        def moved(p: tuple[float, float]) -> tuple[float, float]:
            return (mid_x + (p[0] - mid_x) * scale, mid_y + (p[1] - mid_y) * scale)

        cx, cy = moved((cx, cy))
        radius *= scale
        disc, fovea = moved(disc), moved(fovea)
    x = rgb.astype(np.float32) / np.float32(255.0)
    sigma = _vary(profile.blur_sigma, jitter, rng) * width
    if sigma > 0.3:
        x = np.asarray(cv2.GaussianBlur(x, (0, 0), sigma), np.float32)
    xs = (np.arange(width, dtype=np.float32) - np.float32(cx)) / np.float32(radius)
    ys = (np.arange(height, dtype=np.float32) - np.float32(cy)) / np.float32(radius)
    gx, gy = np.meshgrid(xs, ys)
    angle = math.radians(profile.flash_angle + 30.0 * jitter * (2.0 * float(rng.random()) - 1.0))
    # Distance along the flash direction, -1 at the near edge of the field to +1 at the far one.
    along = -(gx * np.float32(math.cos(angle)) + gy * np.float32(math.sin(angle)))
    tilt = min(0.95, _vary(profile.flash_tilt, jitter, rng))
    light = 1.0 - tilt * (np.clip(along, -1.0, 1.0) + 1.0) / 2.0
    vignetting = min(0.95, _vary(profile.vignetting, jitter, rng))
    light *= 1.0 - vignetting * np.clip(gx * gx + gy * gy, 0.0, 1.0)
    x *= light[..., None]
    gain = np.asarray([_vary(g, jitter / 2, rng) for g in profile.colour_gain], np.float32)
    x *= gain
    np.clip(x, 0.0, 1.0, out=x)
    x **= np.float32(_vary(profile.gamma, jitter / 2, rng))
    out = np.asarray(np.clip(x * 255.0 + 0.5, 0, 255), np.uint8)
    return dataclasses.replace(
        fundus,
        rgb=out,
        lesion_masks=masks,
        field_centre=(cx, cy),
        field_radius=radius,
        disc_centre=disc,
        fovea_centre=fovea,
    )


__all__ = ["CAMERA_PROFILES", "CameraProfile", "camera_profile", "through_camera"]
