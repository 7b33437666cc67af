"""Display enhancements: red-free, CLAHE, tone curve; inputs never modified; bad input refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sall_desktop.imaging.enhance import (
    Enhancement,
    EnhancePreset,
    apply_enhancement,
    clahe,
    next_preset,
    red_free,
    tone_lut,
)


@pytest.fixture
def fundus() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(image, (80, 60), 55, (190, 90, 40), -1)  # RGB orange-red disc
    return cv2.add(image, rng.integers(0, 20, image.shape, dtype=np.uint8))


def test_identity_returns_an_equal_copy(fundus: np.ndarray) -> None:
    out = apply_enhancement(fundus, Enhancement())
    assert Enhancement().is_identity and Enhancement().describe() == ""
    assert np.array_equal(out, fundus) and out is not fundus


def test_red_free_is_the_green_channel_as_grey(fundus: np.ndarray) -> None:
    out = red_free(fundus)
    assert np.array_equal(out[:, :, 0], fundus[:, :, 1])
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_clahe_raises_local_contrast_and_keeps_the_input(fundus: np.ndarray) -> None:
    flat = (fundus // 4 + 60).astype(np.uint8)  # a dull, low-contrast photograph
    copy = flat.copy()
    out = clahe(flat)
    assert np.array_equal(flat, copy)

    def texture(im: np.ndarray) -> float:  # lightness spread inside the disc
        return float(cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[40:80, 60:100, 0].std())

    assert texture(out) > 1.5 * texture(flat)
    centre_in, centre_out = flat[60, 80].astype(int), out[60, 80].astype(int)
    assert centre_out[0] > centre_out[2] and centre_in[0] > centre_in[2]  # still reddish


def test_red_free_clahe_is_grey_and_stronger(fundus: np.ndarray) -> None:
    out = apply_enhancement(fundus, Enhancement(EnhancePreset.RED_FREE_CLAHE))
    assert np.array_equal(out[:, :, 0], out[:, :, 1])
    assert out[:, :, 0].std() > red_free(fundus)[:, :, 0].std()


def test_tone_curve_gamma_contrast_brightness() -> None:
    lut = tone_lut(gamma=2.0)
    assert lut[0] == 0 and lut[255] == 255 and lut[64] > 64  # gamma > 1 brightens mid-tones
    assert np.all(np.diff(lut.astype(int)) >= 0)
    assert tone_lut(brightness=20)[100] == 120
    assert tone_lut(contrast=2.0)[128] == 128 and tone_lut(contrast=2.0)[150] == 172
    image = np.full((4, 4, 3), 100, np.uint8)
    out = apply_enhancement(image, Enhancement(brightness=-30))
    assert np.all(out == 70)


def test_describe_and_cycle() -> None:
    look = Enhancement(EnhancePreset.RED_FREE, gamma=1.4, brightness=5)
    assert look.describe() == "Red-free · γ 1.40 · brightness +5"
    assert next_preset(EnhancePreset.NONE) is EnhancePreset.RED_FREE
    assert next_preset(EnhancePreset.RED_FREE_CLAHE) is EnhancePreset.NONE


@pytest.mark.parametrize(
    "kwargs",
    [{"gamma": 0.1}, {"gamma": 5.0}, {"brightness": 300}, {"contrast": 0.0}, {"clahe_clip": 0}],
)
def test_out_of_range_values_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Enhancement(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.uint16), np.zeros((4, 4, 4), np.uint8)],
)
def test_non_rgb_input_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        apply_enhancement(bad, Enhancement(EnhancePreset.CLAHE))
