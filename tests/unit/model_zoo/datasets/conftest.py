"""Builders for the synthetic-fundus tests: cached renders at small sizes (seconds in total)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest

from model_zoo.datasets.synthetic import FundusSpec, SyntheticFundus, render_fundus

SIZE = 192
"""Small enough to be fast, large enough for every lesion type to own pixels."""
SEEDS = (11, 12, 13, 14, 15)


@functools.lru_cache(maxsize=128)
def _cached(spec: FundusSpec) -> SyntheticFundus:
    return render_fundus(spec)


@pytest.fixture
def fundus() -> Callable[..., SyntheticFundus]:
    """``fundus(seed, dr, amd, laterality="R", size=SIZE)`` -> a (cached) rendered image."""

    def make(
        seed: int, dr: int | None, amd: int | None, laterality: str = "R", size: int = SIZE
    ) -> SyntheticFundus:
        return _cached(
            FundusSpec(seed=seed, size=size, dr_grade=dr, amd_grade=amd, laterality=laterality)
        )

    return make


def quadrant_hits(mask: np.ndarray, fovea: tuple[float, float]) -> set[int]:
    """Quadrants about the fovea (0 upper-left, 1 upper-right, 2 lower-left, 3 lower-right)
    that contain at least one mask pixel."""
    ys, xs = np.nonzero(mask)
    return {int(q) for q in (xs >= fovea[0]).astype(int) + 2 * (ys >= fovea[1]).astype(int)}
