"""Builders for image-decoding tests: a fundus-like array and reference encoders/decoders.

Exposed as fixtures (``--import-mode=importlib`` makes conftest helpers unimportable).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _fundus_like(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """H×W×3 uint8: a smooth colour gradient inside an ellipse, black outside, plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 60 + 150 * x / max(width - 1, 1)
    green = 30 + 90 * y / max(height - 1, 1)
    blue = 20 + 40 * (x + y) / max(width + height - 2, 1)
    rgb = np.stack([red, green, blue], axis=-1) + rng.normal(0, 6, (height, width, 3))
    inside = (x - width / 2) ** 2 / (width / 2) ** 2 + (y - height / 2) ** 2 / (height / 2) ** 2
    rgb[inside > 1] = 0
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _encode(array: np.ndarray, fmt: str, mode: str | None = None, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, fmt, **params)
    return buffer.getvalue()


def _reference(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def fundus() -> np.ndarray:
    """A 96×128 fundus-like RGB array."""
    return _fundus_like()


@pytest.fixture
def make_fundus() -> Callable[..., np.ndarray]:
    """``make_fundus(height, width, seed)`` -> H×W×3 uint8."""
    return _fundus_like


@pytest.fixture
def encode() -> Callable[..., bytes]:
    """``encode(array, fmt, mode=None, **params)``: Pillow, the reference encoder."""
    return _encode


@pytest.fixture
def pil_rgb() -> Callable[[Path], np.ndarray]:
    """Reference decode with Pillow: no EXIF transpose, alpha dropped, grey to three channels."""
    return _reference
