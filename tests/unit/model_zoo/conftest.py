"""Shared builders for the model_zoo core tests (registry, cards, checkpoints, predictor).

Tiny sizes throughout (64-px inputs, resnet18) so every test runs in well under a second of
compute on a shared CPU.

This conftest also applies to the io/ and datasets/ sub-folders, so it imports nothing heavy at
module level: torch, cv2 and the model_zoo modules are imported inside the fixtures (an io test
may check that decoding never pulls in torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TINY_SIZE = 64


def _cv2() -> Any:
    """cv2, imported only after model_zoo.io has set OpenCV's pixel cap (read once at import)."""
    import model_zoo.io  # noqa: F401

    return importlib.import_module("cv2")


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a CPU shared by several jobs, OpenMP spinning makes small
    convolutions many times slower. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _make_card(
    *,
    backbone: str = "resnet18",
    tasks: tuple[Any, ...] | None = None,
    input_size: int = TINY_SIZE,
    fundus_crop: bool = False,
    provenance: Any = None,
) -> Any:
    from model_zoo.architectures.student import card_template
    from model_zoo.cards import SYNTHETIC_INTENDED_USE

    kwargs = {} if tasks is None else {"tasks": tasks}
    return card_template(
        name="test model",
        version="0.0.1",
        licence="Apache-2.0",
        intended_use=SYNTHETIC_INTENDED_USE,
        backbone=backbone,
        input_size=input_size,
        fundus_crop=fundus_crop,
        provenance=provenance,
        **kwargs,
    )


def _fundus_rgb(height: int = 192, width: int = 256, *, radius: int | None = None, seed: int = 0):
    """A crude fundus: black surround, orange-red textured disc, a bright optic disc."""
    import numpy as np

    cv2 = _cv2()

    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    r = radius if radius is not None else int(min(height, width) * 0.45)
    centre = (width // 2, height // 2)
    cv2.circle(image, centre, r, (200, 90, 40), thickness=-1)
    texture = rng.integers(0, 30, size=(height, width, 1), dtype=np.uint8)
    inside = image[..., :1] > 0
    image = np.where(inside, np.clip(image.astype(np.int16) + texture - 15, 0, 255), 0)
    image = image.astype(np.uint8)
    cv2.circle(image, (centre[0] + r // 2, centre[1]), max(2, r // 6), (250, 220, 150), -1)
    return image


@pytest.fixture
def card_factory() -> Callable[..., Any]:
    """``make_card(backbone=, tasks=, input_size=, fundus_crop=, provenance=) -> ModelCard``."""
    return _make_card


@pytest.fixture
def fundus_image() -> Callable[..., Any]:
    """``fundus_rgb(height, width, *, radius=None, seed=0)`` -> H×W×3 uint8 array."""
    return _fundus_rgb


@pytest.fixture
def tiny_card() -> Any:
    """A resnet18 DR+AMD ModelCard at 64 px, id "" (unsaved)."""
    return _make_card()


@pytest.fixture
def tiny_model(tiny_card: Any) -> Any:
    """A randomly initialised model matching ``tiny_card``, in eval mode, fixed seed."""
    import torch

    from model_zoo.registry import get_model

    torch.manual_seed(1234)
    kwargs = dict(tiny_card.architecture_kwargs)
    return get_model(tiny_card.architecture, tasks=tiny_card.tasks, **kwargs).eval()


@pytest.fixture
def write_jpeg() -> Callable[[Path, Any], Path]:
    """Write an RGB array as a JPEG file (test data only; the library decodes via model_zoo.io)."""

    cv2 = _cv2()

    def write(path: Path, rgb: Any) -> Path:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        path.write_bytes(encoded.tobytes())
        return path

    return write
