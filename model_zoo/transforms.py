"""Preprocessing, defined once from the model card (architecture.md rule 5).

Training, batch inference and the GUI (through services) all call :func:`eval_transform` /
:func:`train_transform` with the model's card and :func:`load_for_model` to decode, so a model
always sees pixels prepared exactly as during its training.

Pipeline: optional fundus crop -> resize to ``input_size`` square -> (training: flips, rotation,
colour jitter) -> ``(x / 255 - mean) / std`` -> float32 ``[3, S, S]``.

The transforms are small frozen dataclasses rather than closures so that DataLoader workers
started with the ``spawn`` method (Windows, macOS, frozen apps) can receive them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

# model_zoo.io first: it sets OpenCV's pixel cap (R15), which cv2 reads once, at import.
from model_zoo.io import LoadedImage, read_image  # isort: skip

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from model_zoo.cards import ModelCard

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
    # reduction over a length-3 axis takes ~0.25 s on a 3000×2000 photograph, this ~10 ms.
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


@dataclass(frozen=True, slots=True)
class Preprocess:
    """Card-defined preprocessing: ``uint8 H×W×3 RGB -> float32 [3, S, S]`` normalised tensor.

    Build it with :func:`eval_transform` or :func:`train_transform`. With ``augment`` the
    random draws use torch's global generator, which DataLoader seeds per worker.

    Attributes:
        input_size: ``S``, pixels.
        mean: RGB mean on the [0, 1] scale.
        std: RGB standard deviation on the [0, 1] scale.
        interpolation: card filter name.
        fundus_crop: crop to the fundus circle before resizing.
        crop_threshold: brightness threshold of the crop.
        augment: random flips, ±``max_rotation`` degrees and mild colour jitter.
        max_rotation: degrees.
        jitter: maximum relative change of brightness, contrast and saturation.
    """

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    fundus_crop: bool = False
    crop_threshold: int = 10
    augment: bool = False
    max_rotation: float = 15.0
    jitter: float = 0.1

    def prepare(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Crop (if configured) and resize: ``uint8 S×S×3``, before any augmentation."""
        _check_rgb(rgb)
        if self.fundus_crop:
            rgb = fundus_crop(rgb, threshold=self.crop_threshold)
        return resize_square(rgb, self.input_size, self.interpolation)

    def __call__(self, rgb: NDArray[np.uint8]) -> torch.Tensor:
        """Preprocess one image: ``uint8 H×W×3 RGB -> float32 [3, S, S]``."""
        image = self.prepare(rgb)
        if self.augment:
            return self._augmented(image)
        std = np.asarray(self.std, dtype=np.float32)
        scale: NDArray[np.float32] = np.float32(1.0 / 255.0) / std
        shift: NDArray[np.float32] = -np.asarray(self.mean, dtype=np.float32) / std
        chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        chw *= scale[:, None, None]
        chw += shift[:, None, None]
        return torch.from_numpy(chw)

    def _augmented(self, image: NDArray[np.uint8]) -> torch.Tensor:
        draws = torch.rand(6).tolist()
        if draws[0] < 0.5:
            image = image[:, ::-1]
        if draws[1] < 0.5:
            image = image[::-1, :]
        angle = (2.0 * draws[2] - 1.0) * self.max_rotation
        size = self.input_size
        matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, 1.0)
        rotated = cv2.warpAffine(
            np.ascontiguousarray(image),
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        x = np.asarray(rotated, dtype=np.float32) / np.float32(255.0)
        brightness, contrast, saturation = (1.0 + (2.0 * d - 1.0) * self.jitter for d in draws[3:])
        x *= brightness
        gray = x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        x = (x - gray.mean()) * contrast + gray.mean()
        gray = x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        x = (x - gray[..., None]) * saturation + gray[..., None]
        np.clip(x, 0.0, 1.0, out=x)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


def _from_card(card: ModelCard, *, augment: bool) -> Preprocess:
    options = card.preprocessing
    return Preprocess(
        input_size=card.input_size,
        mean=card.mean,
        std=card.std,
        interpolation=card.interpolation,
        fundus_crop=bool(options.get("fundus_crop", False)),
        crop_threshold=int(options.get("crop_threshold", 10)),
        augment=augment,
    )


def eval_transform(card: ModelCard) -> Preprocess:
    """Deterministic preprocessing of ``card``'s model: ``uint8 H×W×3 -> float32 [3, S, S]``.

    Example:
        >>> x = eval_transform(card)(rgb)          # rgb: H×W×3 uint8
        >>> x.shape == (3, card.input_size, card.input_size)
        True
    """
    return _from_card(card, augment=False)


def train_transform(card: ModelCard, *, augment: bool) -> Preprocess:
    """Training preprocessing: :func:`eval_transform` plus, with ``augment``, random horizontal
    and vertical flips, a rotation of up to ±15° and ±10 % brightness/contrast/saturation."""
    return _from_card(card, augment=augment)


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


def load_for_model(
    path: str | os.PathLike[str], card: ModelCard, *, reduce_hint: int = 8
) -> LoadedImage:
    """Decode ``path`` at the resolution :func:`choose_reduce` picks for ``card``.

    The full size is only known after decoding, so the file is first decoded at
    ``reduce_hint`` (cheap when large) and decoded again only when the hint was wrong; pass the
    previous image's factor as the hint when reading a folder from one camera.

    Raises:
        model_zoo.io.LoadError: the file cannot be decoded (message for the grader).
    """
    first = read_image(path, reduce=reduce_hint)
    wanted = choose_reduce(first.meta.width, first.meta.height, card.input_size)
    if wanted == reduce_hint:
        return first
    return read_image(path, reduce=wanted)
