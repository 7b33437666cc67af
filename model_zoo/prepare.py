"""The pixels a model sees, cut from a photograph: fundus crop and resize, torch-free.

:class:`InputSpec` is the part of a card's preprocessing that decides those pixels (everything
before normalisation). It imports only NumPy and OpenCV, so the app's decode processes can
prepare a model's input while they read a file for the catalogue, without importing torch; the
torch side (:mod:`model_zoo.transforms`) normalises what this module prepares.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# model_zoo.io first: it sets OpenCV's pixel cap (R15), which cv2 reads once, at import.
from model_zoo.io import LoadedImage, read_image  # isort: skip

import cv2
import numpy as np
from numpy.typing import NDArray

from model_zoo.cards import ModelCard

PIPELINE_VERSION = "model_zoo.prepare/1"
"""Bump when the crop, the resize or the decoder reduction rule changes: it voids cached inputs."""

REDUCE_FACTORS = (8, 4, 2, 1)
"""Decoder down-scaling factors tried, largest first (JPEG can reduce in the DCT domain)."""

_SHRINK = {
    "nearest": cv2.INTER_NEAREST,
    # Shrinking with plain bilinear/bicubic aliases badly on 3000-px photographs; area averaging
    # is the anti-aliased equivalent (as torchvision's antialias=True).
    "bilinear": cv2.INTER_AREA,
    "bicubic": cv2.INTER_AREA,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
_ENLARGE = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_LINEAR,
    "lanczos": cv2.INTER_LANCZOS4,
}


def _check_rgb(rgb: NDArray[np.uint8]) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3:
        raise ValueError(f"expected an H×W×3 uint8 RGB array, got {_describe(rgb)}")
    if rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an H×W×3 uint8 RGB array, got shape {rgb.shape}")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def fundus_crop(rgb: NDArray[np.uint8], *, threshold: int = 10) -> NDArray[np.uint8]:
    """Crop to the bounding square of the fundus circle, removing the black surround.

    A row or column belongs to the fundus when it holds more than 5 % as many bright pixels (any
    channel > ``threshold``) as the fullest one, so hot pixels, JPEG noise and small burnt-in
    labels in the surround are ignored (the circle's one-pixel tips may be trimmed too). The
    crop is padded with black to a square, centred, so a circle that the camera clipped at the
    top and bottom stays round and centred.

    Args:
        rgb: ``H×W×3`` uint8 RGB.
        threshold: brightness (0-255) above which a pixel counts as fundus.

    Returns:
        A square ``S×S×3`` uint8 array (a new array). An all-dark image is only padded.
    """
    _check_rgb(rgb)
    rgb = np.ascontiguousarray(rgb)
    # 255 where any channel exceeds the threshold. OpenCV, not rgb.max(axis=2): numpy's
    # reduction over a length-3 axis is far slower on a full-size photograph.
    dark = cv2.inRange(rgb, (0, 0, 0), (threshold, threshold, threshold))
    mask: NDArray[np.uint8] = np.asarray(cv2.bitwise_not(dark), dtype=np.uint8)
    if not cv2.countNonZero(mask):
        return _pad_square(rgb)
    # Columns first, then rows counted only inside those columns, then columns again inside
    # those rows: a burnt-in label beside the circle then counts for neither.
    left, right = _span(_counts(mask, axis=0))
    top, bottom = _span(_counts(mask[:, left:right], axis=1))
    left, right = _span(_counts(mask[top:bottom], axis=0))
    return _pad_square(rgb[top:bottom, left:right])


def _counts(mask: NDArray[np.uint8], *, axis: int) -> NDArray[np.int32]:
    """Bright pixels per column (axis 0) or per row (axis 1) of a 0/255 mask."""
    sums = cv2.reduce(mask, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S)
    return np.asarray(sums, dtype=np.int32).ravel() // 255


def _span(counts: NDArray[np.int32]) -> tuple[int, int]:
    """First and one-past-last index whose count exceeds 5 % of the largest count."""
    keep = np.flatnonzero(counts > 0.05 * counts.max())
    return int(keep[0]), int(keep[-1]) + 1


def _pad_square(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    h, w = rgb.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    padded = cv2.copyMakeBorder(
        np.ascontiguousarray(rgb),
        top,
        side - h - top,
        left,
        side - w - left,
        cv2.BORDER_CONSTANT,
        value=(0, 0, 0),
    )
    return np.asarray(padded, dtype=np.uint8)


def resize_square(rgb: NDArray[np.uint8], size: int, interpolation: str) -> NDArray[np.uint8]:
    """Resize ``rgb`` to ``size×size`` with the card's filter (area-averaged when shrinking)."""
    h, w = rgb.shape[:2]
    if h == size and w == size:
        return rgb
    table = _SHRINK if size < max(h, w) else _ENLARGE
    out = cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=table[interpolation])
    return np.asarray(out, dtype=np.uint8)


def choose_reduce(width: int, height: int, input_size: int) -> int:
    """Largest decoder reduction (8, 4, 2, 1) that keeps the short side at ``input_size`` or more.

    A 3000×2000 photograph for a 512-px model decodes at 1/2 (1000 px), for a 224-px model at
    1/8 (250 px). Depends only on the image's own size, so a given file is always preprocessed
    identically, in training and in every inference run.
    """
    short = min(width, height)
    for factor in REDUCE_FACTORS:
        if math.ceil(short / factor) >= input_size:
            return factor
    return 1


def read_for_model(
    path: str | os.PathLike[str], input_size: int, *, reduce_hint: int = 8
) -> LoadedImage:
    """Decode ``path`` at the resolution :func:`choose_reduce` picks for ``input_size``.

    The full size is only known after decoding, so the file is first decoded at
    ``reduce_hint`` (cheap when large) and decoded again only when the hint was wrong; pass the
    previous image's factor as the hint when reading a folder from one camera.

    Raises:
        model_zoo.io.LoadError: the file cannot be decoded (message for the grader).
    """
    first = read_image(path, reduce=reduce_hint)
    wanted = choose_reduce(first.meta.width, first.meta.height, input_size)
    if wanted == reduce_hint:
        return first
    return read_image(path, reduce=wanted)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How a model's input is cut from a photograph: optional fundus crop, then a square resize.

    Two models with equal specs see identical pixels (before normalisation), so a fine-tuned
    version can use the inputs prepared for its parent. Frozen and small: it crosses into the
    decode processes.

    Attributes:
        input_size: ``S``, pixels.
        interpolation: card filter name.
        fundus_crop: crop to the fundus circle before resizing.
        crop_threshold: brightness threshold of the crop.
    """

    input_size: int
    interpolation: str
    fundus_crop: bool = False
    crop_threshold: int = 10

    @classmethod
    def of(cls, card: ModelCard) -> InputSpec:
        """The spec of ``card``'s preprocessing (the card alone: no weights, no torch)."""
        options = card.preprocessing
        return cls(
            input_size=card.input_size,
            interpolation=card.interpolation,
            fundus_crop=bool(options.get("fundus_crop", False)),
            crop_threshold=int(options.get("crop_threshold", 10)),
        )

    def prepare(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Crop (if configured) and resize: ``uint8 H×W×3 -> uint8 S×S×3``."""
        _check_rgb(rgb)
        if self.fundus_crop:
            rgb = fundus_crop(rgb, threshold=self.crop_threshold)
        return resize_square(rgb, self.input_size, self.interpolation)

    def read(self, path: str | os.PathLike[str], *, reduce_hint: int = 8) -> LoadedImage:
        """Decode ``path`` at the reduction this spec's input size calls for."""
        return read_for_model(path, self.input_size, reduce_hint=reduce_hint)

    @property
    def key(self) -> str:
        """A short digest of everything that decides the prepared pixels, OpenCV's version
        included (its resize may change between releases)."""
        return _spec_key(self)


@functools.lru_cache(maxsize=64)
def _spec_key(spec: InputSpec) -> str:
    # Cached: the input cache asks for it once per image.
    fields = {
        "pipeline": PIPELINE_VERSION,
        "opencv": cv2.__version__,
        "input_size": spec.input_size,
        "interpolation": spec.interpolation,
        "fundus_crop": spec.fundus_crop,
        "crop_threshold": spec.crop_threshold,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class PreparedInputs(Protocol):
    """Where prepared inputs of one :class:`InputSpec` are kept, by image SHA-256 (the app's is
    ``sall_desktop.store.input_cache.InputCache``). Reads and writes never raise for a storage
    problem: a missing or damaged entry is a miss, a failed write returns False."""

    @property
    def spec(self) -> InputSpec: ...

    def __contains__(self, sha256: object) -> bool: ...

    def get(self, sha256: str) -> NDArray[np.uint8] | None: ...

    def get_many(self, sha256s: Sequence[str]) -> dict[str, NDArray[np.uint8]]:
        """The inputs of those of ``sha256s`` that have a sound entry (one look-up for a batch)."""
        ...

    def put(self, sha256: str, prepared: NDArray[np.uint8]) -> bool: ...
