"""Preprocessing, defined once from the model card (docs/sall-method.md, Model).

Training, batch inference and the GUI (through services) all call :func:`eval_transform` /
:func:`train_transform` with the model's card and :func:`load_for_model` to decode, so a model
always sees pixels prepared exactly as during its training.

Pipeline: optional fundus crop -> resize to ``input_size`` square -> (training: flips, rotation,
colour jitter) -> ``(x / 255 - mean) / std`` -> float32 ``[3, S, S]``.

The transforms are small frozen dataclasses rather than closures so that DataLoader workers
started with the ``spawn`` method (Windows, macOS, frozen apps) can receive them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

# model_zoo.prepare first: through model_zoo.io it sets OpenCV's pixel cap (R15) before cv2 loads.
from model_zoo.prepare import (  # isort: skip
    REDUCE_FACTORS,
    InputSpec,
    choose_reduce,
    fundus_crop,
    read_for_model,
    resize_square,
)

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from model_zoo.cards import ModelCard
from model_zoo.io import LoadedImage

__all__ = [
    "REDUCE_FACTORS",
    "InputSpec",
    "Preprocess",
    "camera_jitter",
    "choose_reduce",
    "eval_transform",
    "fundus_crop",
    "load_for_model",
    "resize_square",
    "train_transform",
]


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
        camera: with ``augment``, also another camera's rendition (:func:`camera_jitter`):
            defocus, uneven flash, vignetting, colour cast and tone curve.
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
    camera: bool = False

    @property
    def input_spec(self) -> InputSpec:
        """The crop-and-resize part, which decides the pixels (torch-free, cacheable)."""
        return InputSpec(self.input_size, self.interpolation, self.fundus_crop, self.crop_threshold)

    def prepare(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Crop (if configured) and resize: ``uint8 S×S×3``, before any augmentation."""
        return self.input_spec.prepare(rgb)

    def __call__(self, rgb: NDArray[np.uint8]) -> torch.Tensor:
        """Preprocess one image: ``uint8 H×W×3 RGB -> float32 [3, S, S]``."""
        image = self.prepare(rgb)
        if self.augment:
            return self._augmented(image)
        return self.normalise(image)

    def _scale_shift(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Per channel, ``x / 255 · scale + shift`` as ``x · scale + shift`` (float32): the one
        arithmetic :meth:`normalise` and :meth:`normalise_batch` share, bit for bit."""
        std = np.asarray(self.std, dtype=np.float32)
        scale: NDArray[np.float32] = np.float32(1.0 / 255.0) / std
        shift: NDArray[np.float32] = -np.asarray(self.mean, dtype=np.float32) / std
        return scale, shift

    def _check_prepared(self, prepared: NDArray[np.uint8]) -> None:
        size = self.input_size
        if prepared.shape != (size, size, 3) or prepared.dtype != np.uint8:
            raise ValueError(
                f"expected a prepared {size}×{size}×3 uint8 image, "
                f"got {prepared.dtype} {prepared.shape}"
            )

    def normalise(self, prepared: NDArray[np.uint8]) -> torch.Tensor:
        """``uint8 S×S×3`` from :meth:`prepare` (or an input cache) -> float32 ``[3, S, S]``."""
        self._check_prepared(prepared)
        scale, shift = self._scale_shift()
        chw = np.ascontiguousarray(prepared.transpose(2, 0, 1), dtype=np.float32)
        chw *= scale[:, None, None]
        chw += shift[:, None, None]
        return torch.from_numpy(chw)

    def normalise_batch(self, prepared: Sequence[NDArray[np.uint8]]) -> torch.Tensor:
        """Prepared images -> float32 ``[B, 3, S, S]``, laid out channels-last.

        The arithmetic runs where the pixels lie (``B×S×S×3``, a row of ``S·3`` values at a
        time) and the result is a permuted view of it: the channels_last model of
        :class:`~model_zoo.predictor.Predictor` takes it without a copy; normalising each image
        to ``[3, S, S]`` and converting the batch back would cost two transposing copies.
        Images that are consecutive rows of one block (how the input cache reads a forward
        pass's images) are read in place; others are stacked first, which costs time between
        the forward passes of batch grading (see docs/benchmarks.md, "Figures formerly in
        docstrings"). Each value is the one :meth:`normalise` gives, bit for bit.

        Runs torch operations: call it from the thread that runs the model (a second thread
        running torch starts a second OpenMP team, which slows both).
        """
        size = self.input_size
        for image in prepared:
            self._check_prepared(image)
        per_channel = self._scale_shift()
        scale, shift = (torch.from_numpy(np.tile(values, size)) for values in per_channel)
        pixels = _as_block(prepared, size)
        rows = torch.from_numpy(pixels).view(len(prepared) * size, size * 3).to(torch.float32)
        rows.mul_(scale).add_(shift)
        return rows.view(len(prepared), size, size, 3).permute(0, 3, 1, 2)

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
        if self.camera:
            x = camera_jitter(x, torch.rand(8).tolist())
        brightness, contrast, saturation = (1.0 + (2.0 * d - 1.0) * self.jitter for d in draws[3:])
        x *= brightness
        gray = x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        x = (x - gray.mean()) * contrast + gray.mean()
        gray = x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        x = (x - gray[..., None]) * saturation + gray[..., None]
        np.clip(x, 0.0, 1.0, out=x)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


def camera_jitter(x: NDArray[np.float32], draws: Sequence[float]) -> NDArray[np.float32]:
    """``x`` (``S×S×3`` in [0, 1]) as a randomly different fundus camera would render it.

    Eight uniform draws in [0, 1) choose a flash falling off across the field (up to 40 % of the
    brightness) from a random side, vignetting (up to 30 % at the rim), per-channel gains
    (x0.85-1.18), a gamma (0.8-1.25) and, one time in three, a slight defocus (sigma up to half
    a percent of the side). These span the renditions a model meets clinic to clinic, so that
    fine-tuning on one clinic learns the lesions rather than that clinic's camera. Blur is rare
    and slight because at 128 px a microaneurysm is a pixel or two: a stronger, always-on blur
    cost the loop benchmark's candidates DR agreement on both cameras.
    """
    size = x.shape[0]
    if draws[0] < 1.0 / 3.0:
        sigma = draws[0] * 3.0 * 0.005 * size
        if sigma > 0.3:
            x = np.asarray(cv2.GaussianBlur(x, (0, 0), sigma), np.float32)
    axis = (np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2)) / np.float32(size / 2)
    gx, gy = np.meshgrid(axis, axis)
    angle = 2.0 * np.pi * draws[1]
    along = np.clip(gx * np.float32(np.cos(angle)) + gy * np.float32(np.sin(angle)), -1.0, 1.0)
    light = 1.0 - np.float32(0.4 * draws[2]) * (along + 1.0) / 2.0
    light *= 1.0 - np.float32(0.3 * draws[3]) * np.clip(gx * gx + gy * gy, 0.0, 1.0)
    gains = np.exp(np.log(1.18) * (2.0 * np.asarray(draws[4:7], np.float32) - 1.0))
    x = x * light[..., None] * gains.astype(np.float32)
    np.clip(x, 0.0, 1.0, out=x)
    gamma = float(np.exp(np.log(1.25) * (2.0 * draws[7] - 1.0)))
    return np.asarray(x**gamma, np.float32)


def _as_block(prepared: Sequence[NDArray[np.uint8]], size: int) -> NDArray[np.uint8]:
    """The images as one ``B×S×S×3`` array: a view when they are consecutive rows of one
    block, as the input cache reads them, else a stacked copy."""
    if not prepared:
        return np.empty((0, size, size, 3), np.uint8)
    block, first = prepared[0].base, prepared[0]
    if isinstance(block, np.ndarray) and block.ndim == 4 and block.flags.c_contiguous:
        origin = block.__array_interface__["data"][0]
        start, misaligned = divmod(first.__array_interface__["data"][0] - origin, first.nbytes)
        end = start + len(prepared)
        if (
            not misaligned
            and 0 <= start
            and end <= len(block)
            and block.shape[1:] == first.shape
            and all(
                image.base is block
                and image.flags.c_contiguous
                and image.__array_interface__["data"][0] == origin + (start + n) * first.nbytes
                for n, image in enumerate(prepared)
            )
        ):
            return block[start:end]
    return np.stack(prepared)


def _from_card(card: ModelCard, *, augment: bool, camera: bool = False) -> Preprocess:
    spec = InputSpec.of(card)
    return Preprocess(
        input_size=spec.input_size,
        mean=card.mean,
        std=card.std,
        interpolation=spec.interpolation,
        fundus_crop=spec.fundus_crop,
        crop_threshold=spec.crop_threshold,
        augment=augment,
        camera=camera,
    )


def eval_transform(card: ModelCard) -> Preprocess:
    """Deterministic preprocessing of ``card``'s model: ``uint8 H×W×3 -> float32 [3, S, S]``.

    Example:
        >>> x = eval_transform(card)(rgb)          # rgb: H×W×3 uint8
        >>> x.shape == (3, card.input_size, card.input_size)
        True
    """
    return _from_card(card, augment=False)


def train_transform(card: ModelCard, *, augment: bool, camera: bool = False) -> Preprocess:
    """Training preprocessing: :func:`eval_transform` plus, with ``augment``, random horizontal
    and vertical flips, a rotation of up to ±15° and ±10 % brightness/contrast/saturation, and
    with ``camera`` another camera's rendition (:func:`camera_jitter`)."""
    return _from_card(card, augment=augment, camera=camera)


def load_for_model(
    path: str | os.PathLike[str], card: ModelCard, *, reduce_hint: int = 8
) -> LoadedImage:
    """Decode ``path`` at the resolution :func:`choose_reduce` picks for ``card``
    (:func:`model_zoo.prepare.read_for_model` with the card's input size).

    Raises:
        model_zoo.io.LoadError: the file cannot be decoded (message for the grader).
    """
    return read_for_model(path, card.input_size, reduce_hint=reduce_hint)
