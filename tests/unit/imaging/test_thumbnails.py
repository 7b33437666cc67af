"""Thumbnail pixels: reduced-decode factor and aspect-preserving fit."""

from __future__ import annotations

import numpy as np
import pytest

from sall_desktop.imaging.thumbnails import fit_within, reduce_factor_for


@pytest.mark.parametrize(
    ("width", "height", "side", "factor"),
    [(3000, 2000, 192, 8), (1024, 1024, 192, 4), (896, 896, 192, 4), (300, 200, 192, 1),
     (0, 0, 192, 1), (1536, 1000, 192, 8), (1535, 1000, 192, 4)],
)  # fmt: skip
def test_reduce_factor_keeps_enough_pixels(width: int, height: int, side: int, factor: int) -> None:
    assert reduce_factor_for(width, height, side) == factor
    if width:
        assert max(width, height) // factor >= min(side, max(width, height))


def test_fit_within_keeps_aspect_and_never_upscales() -> None:
    wide = np.zeros((100, 400, 3), np.uint8)
    out = fit_within(wide, 200)
    assert out.shape == (50, 200, 3)
    small = np.ones((20, 30, 3), np.uint8)
    same = fit_within(small, 200)
    assert same.shape == small.shape and same is not small


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        fit_within(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(ValueError):
        reduce_factor_for(10, 10, -1)
