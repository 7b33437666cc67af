"""Camera rendition and quality defects of a synthetic fundus photograph.

Every image gets a slightly different exposure, white balance, gamma and sensor grain. Ungradable
images get one defect that hides the small vessels or a large part of the field:

- ``"blur"``: media opacity / defocus: heavy blur plus a veiling haze;
- ``"underexposed"``: a dark, noisy, low-contrast image;
- ``"artefact"``: out-of-focus eyelashes across the field, dust spots and a flare.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from model_zoo.datasets.anatomy import FloatImage, Geometry

DEFECTS: tuple[str, ...] = ("blur", "underexposed", "artefact")
"""Quality defects; each one makes an image ungradable."""
UNGRADABLE_REASONS: dict[str, str] = {
    "blur": "blur",
    "underexposed": "exposure",
    "artefact": "artefact",
}
"""Defect -> ungradable reason code (the values of ``sall_desktop.domain.UngradableReason``)."""

_WORK_RADIUS = 128.0
"""Large, smooth defect layers are drawn at a resolution where the field radius is this many
pixels, then resized: an out-of-focus eyelash needs no 3000-pixel detail."""


def _work_scale(geom: Geometry) -> float:
    return min(1.0, _WORK_RADIUS / geom.radius)


def _upsample(layer: NDArray[np.float32], geom: Geometry) -> NDArray[np.float32]:
    if layer.shape[:2] == (geom.height, geom.width):
        return layer
    out = cv2.resize(layer, (geom.width, geom.height), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out, np.float32)


def _blur(img: FloatImage, geom: Geometry, rng: np.random.Generator) -> FloatImage:
    # Down- then up-sampling is an (almost) Gaussian blur at a fraction of the cost at 3000 px.
    factor = rng.uniform(0.025, 0.04) * geom.radius
    small_w = max(8, int(round(geom.width / factor * 2.0)))
    small_h = max(8, int(round(geom.height / factor * 2.0)))
    small = cv2.resize(img, (small_w, small_h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 1.0)
    out = np.asarray(cv2.resize(small, (geom.width, geom.height), interpolation=cv2.INTER_CUBIC))
    haze = rng.uniform(0.08, 0.16)
    return np.asarray(out * (1.0 - haze) + haze * np.float32(0.55) * out.mean(), np.float32)


def _underexpose(img: FloatImage, rng: np.random.Generator) -> FloatImage:
    img *= np.float32(rng.uniform(0.14, 0.24))
    return img


def _artefacts(img: FloatImage, geom: Geometry, rng: np.random.Generator) -> FloatImage:
    s = _work_scale(geom)
    w, h = max(8, int(round(geom.width * s))), max(8, int(round(geom.height * s)))
    r = geom.radius * s
    cx, cy = geom.cx * s, geom.cy * s
    lashes = np.zeros((h, w), np.float32)
    from_top = rng.random() < 0.5
    edge_y = cy - r if from_top else cy + r
    direction = 1.0 if from_top else -1.0
    for _ in range(int(rng.integers(4, 9))):
        x0 = cx + rng.uniform(-0.8, 0.8) * r
        reach = rng.uniform(0.5, 1.1) * r
        bend = rng.uniform(-0.5, 0.5) * r
        t = np.linspace(0.0, 1.0, 24)
        xs = x0 + bend * t**2 + rng.uniform(-0.2, 0.2) * r * t
        ys = edge_y - direction * 0.1 * r + direction * reach * t
        pts = np.stack([xs, ys], axis=1).round().astype(np.int32)
        thick = max(2, int(round(rng.uniform(0.04, 0.09) * r)))
        cv2.polylines(lashes, [pts], False, 1.0, thick, cv2.LINE_AA)
    lashes = np.asarray(cv2.GaussianBlur(lashes, (0, 0), 0.05 * r), np.float32)
    dust = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(10, 30))):
        a, d = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.random())
        centre = (int(cx + d * math.cos(a)), int(cy + d * math.sin(a)))
        radius = max(1, int(rng.uniform(0.015, 0.05) * r))
        cv2.circle(dust, centre, radius, float(rng.uniform(0.4, 0.8)), -1, cv2.LINE_AA)
    dust = np.asarray(cv2.GaussianBlur(dust, (0, 0), 0.015 * r + 0.5), np.float32)
    flare = np.zeros((h, w), np.float32)
    fa = rng.uniform(0, 2 * math.pi)
    fc = (int(cx + 0.85 * r * math.cos(fa)), int(cy + 0.85 * r * math.sin(fa)))
    cv2.circle(flare, fc, int(0.45 * r), 1.0, -1, cv2.LINE_AA)
    flare = cv2.GaussianBlur(flare, (0, 0), 0.2 * r) * rng.uniform(0.4, 0.7)
    darkening = np.clip(0.92 * lashes + dust, 0.0, 0.95)
    dark = _upsample(darkening, geom)
    bright = _upsample(np.asarray(flare, np.float32), geom)
    img *= (1.0 - dark)[..., None]
    img += bright[..., None] * np.array([0.75, 0.75, 0.8], np.float32)
    return img


def apply_defect(
    img: FloatImage, geom: Geometry, defect: str, rng: np.random.Generator
) -> FloatImage:
    """Apply one quality defect (a key of DEFECTS); returns the (possibly new) image."""
    if defect == "blur":
        return _blur(img, geom, rng)
    if defect == "underexposed":
        return _underexpose(img, rng)
    if defect == "artefact":
        return _artefacts(img, geom, rng)
    raise ValueError(f"unknown quality defect {defect!r}; expected one of {DEFECTS}")


def finish(
    img: FloatImage, geom: Geometry, rng: np.random.Generator, grain_scale: float
) -> NDArray[np.uint8]:
    """Camera rendition: grain, exposure, white balance, field stop and gamma -> RGB uint8."""
    # Grain of a few pixels (retinal texture, sensor noise): half-resolution noise, smoothed and
    # upsampled, which is also cheaper than full-resolution noise at 3000 px.
    half = (max(1, geom.width // 2), max(1, geom.height // 2))
    grain = rng.standard_normal((half[1], half[0]), dtype=np.float32)
    grain = np.asarray(cv2.GaussianBlur(grain, (0, 0), 0.7), np.float32)
    grain = np.asarray(
        cv2.resize(grain, (geom.width, geom.height), interpolation=cv2.INTER_LINEAR), np.float32
    )
    amp = rng.uniform(0.02, 0.032) * grain_scale
    field = np.zeros((geom.height, geom.width), np.uint8)
    centre = (int(round(geom.cx * 16)), int(round(geom.cy * 16)))
    cv2.circle(field, centre, int(round(geom.radius * 16)), 255, -1, cv2.LINE_AA, 4)
    # One per-pixel factor: field stop (anti-aliased) x (1 + grain), scaled to 0-255.
    factor = cv2.multiply(field, grain, scale=amp, dtype=cv2.CV_32F)
    factor = cv2.add(factor, field, dtype=cv2.CV_32F)
    img *= factor[..., None]
    out = np.asarray(cv2.convertScaleAbs(img), np.uint8)
    # Exposure, white balance and gamma go into one lookup table per channel.
    gain = rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3)
    gamma = rng.uniform(0.88, 1.12)
    levels = np.arange(256, dtype=np.float64) / 255.0
    lut = np.stack([np.clip(levels * g, 0, 1) ** gamma for g in gain], axis=-1)
    lut8 = np.clip(255.0 * lut + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3)
    return np.asarray(cv2.LUT(out, lut8), np.uint8)
