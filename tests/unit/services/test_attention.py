"""The app's attention map on the demo model: zero outside the fundus, and on the lesions.

The behavioural check is a small version of ``benchmarks/bench_cam_lesions.py``: on a handful
of fresh synthetic DR >= 2 eyes the map's mass inside the (dilated) true lesions must beat what a
uniform map over the field would give.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch

from model_zoo.datasets.benchmark import dr_lesion_mask, field_mask
from model_zoo.datasets.synthetic import FundusSpec, render_fundus
from model_zoo.explain import field_of_view
from model_zoo.predictor import Predictor
from model_zoo.weights import demo_model_dir
from sall_desktop.services.attention import attention_map

SEEDS = (91_001, 91_002, 91_003, 91_004, 91_005, 91_006)


@pytest.fixture(scope="module")
def predictor() -> Iterator[Predictor]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Predictor.from_checkpoint(demo_model_dir(), device="cpu", fast=False)
    torch.set_num_threads(before)


def test_the_map_is_zero_outside_the_field(predictor: Predictor) -> None:
    rgb = render_fundus(FundusSpec(seed=SEEDS[0], size=(300, 240), dr_grade=3)).rgb
    cam, _ = attention_map(predictor, rgb, "dr", None)
    assert cam.shape == (240, 300) and cam.dtype == np.float32
    assert float(cam.max()) == pytest.approx(1.0)
    assert not cam[~field_of_view(rgb)].any()
    unmasked, _ = attention_map(predictor, rgb, "dr", None, mask_field=False)
    assert unmasked[~field_of_view(rgb)].any()  # what the mask removes: heat on the border


def test_the_map_beats_chance_on_dr_lesions(predictor: Predictor) -> None:
    ratios = []
    for i, seed in enumerate(SEEDS):
        spec = FundusSpec(seed=seed, size=256, dr_grade=2 + i % 3, laterality="RL"[i % 2])
        fundus = render_fundus(spec)
        cam, _ = attention_map(predictor, fundus.rgb, "dr", None)
        field = field_mask(fundus)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))  # 5 px: 2 % of 240
        lesions = cv2.dilate(dr_lesion_mask(fundus).astype(np.uint8), kernel) > 0
        lesions &= field
        inside = float(cam[lesions].sum()) / float(cam.sum())
        ratios.append(inside / (lesions.sum() / field.sum()))
    assert float(np.mean(ratios)) > 1.5, ratios
    assert sum(r > 1.0 for r in ratios) >= len(ratios) - 1, ratios


def test_the_overlay_is_transparent_where_the_map_is_zero() -> None:
    from sall_desktop.services.attention import ALPHA_RAMP, heat_rgba

    cam = np.zeros((8, 8), np.float32)
    cam[2, 2], cam[4, 4], cam[6, 6] = 1.0, ALPHA_RAMP, ALPHA_RAMP / 2
    rgba = heat_rgba(cam)
    assert rgba.shape == (8, 8, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0  # no evidence (and the border outside the fundus): untouched
    assert rgba[2, 2, 3] == rgba[4, 4, 3] == 255
    assert 120 <= rgba[6, 6, 3] <= 135  # fades in below the ramp
