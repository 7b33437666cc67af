"""render_fundus: determinism, anatomy, lesions drawn by the grading rules, quality defects."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from model_zoo.datasets.canvas import AMD_LESIONS, DR_LESIONS
from model_zoo.datasets.synthetic import (
    LESION_TYPES,
    FundusSpec,
    SyntheticFundus,
    render_fundus,
)
from tests.unit.model_zoo.datasets.conftest import SEEDS, SIZE, quadrant_hits

Make = Callable[..., SyntheticFundus]
AMD_ONLY = ("small_drusen", "large_drusen", "cnv")


def _present(f: SyntheticFundus) -> set[str]:
    return {name for name, mask in f.lesion_masks.items() if mask.any()}


def test_same_spec_gives_identical_bytes_and_masks() -> None:
    spec = FundusSpec(seed=5, size=160, dr_grade=3, amd_grade=2, laterality="L")
    a, b = render_fundus(spec), render_fundus(spec)
    assert a.rgb.tobytes() == b.rgb.tobytes()
    for name in LESION_TYPES:
        assert np.array_equal(a.lesion_masks[name], b.lesion_masks[name])


def test_different_seed_gives_a_different_image() -> None:
    a = render_fundus(FundusSpec(seed=5, size=160))
    b = render_fundus(FundusSpec(seed=6, size=160))
    assert np.mean(np.abs(a.rgb.astype(int) - b.rgb.astype(int))) > 2.0


def test_output_shape_dtype_and_mask_keys(fundus: Make) -> None:
    f = fundus(11, 2, 1)
    assert f.rgb.shape == (SIZE, SIZE, 3) and f.rgb.dtype == np.uint8
    assert set(f.lesion_masks) == set(LESION_TYPES)
    for mask in f.lesion_masks.values():
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.bool_
    wide = render_fundus(FundusSpec(seed=1, size=(300, 200)))
    assert wide.rgb.shape == (200, 300, 3)


@pytest.mark.parametrize("laterality", ["R", "L"])
def test_disc_lies_on_the_nasal_side_and_is_brighter_than_the_fovea(
    fundus: Make, laterality: str
) -> None:
    for seed in SEEDS[:3]:
        f = fundus(seed, 0, 0, laterality)
        (dx, dy), (fx, fy) = f.disc_centre, f.fovea_centre
        assert (dx > fx) if laterality == "R" else (dx < fx)
        luminance = f.rgb.astype(float).mean(axis=2)
        k = int(0.08 * f.field_radius)  # inside the disc; vessels cross it, so a high percentile
        disc = np.percentile(luminance[int(dy) - k : int(dy) + k, int(dx) - k : int(dx) + k], 90)
        fovea = luminance[int(fy) - k : int(fy) + k, int(fx) - k : int(fx) + k].mean()
        assert disc > fovea + 40


def test_black_surround_and_lit_field(fundus: Make) -> None:
    for f in (fundus(11, 0, 0), render_fundus(FundusSpec(seed=3, size=(300, 200)))):
        h, w = f.rgb.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        cx, cy = f.field_centre
        r = np.hypot(xx - cx, yy - cy)
        assert f.rgb[r > f.field_radius + 1.5].max() <= 3
        inside = f.rgb[r < 0.8 * f.field_radius].astype(float)
        assert inside.mean() > 40
        # Orange-red: red dominates green, green dominates blue.
        means = inside.reshape(-1, 3).mean(axis=0)
        assert means[0] > 1.4 * means[1] > 1.4 * means[2]


def test_vessels_leave_the_disc(fundus: Make) -> None:
    f = fundus(12, 0, 0)
    green = f.rgb[..., 1].astype(float)
    dx, dy = f.disc_centre
    ring_r = 0.25 * f.field_radius  # a circle around the disc, outside it
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    xs = np.clip((dx + ring_r * np.cos(angles)).astype(int), 0, SIZE - 1)
    ys = np.clip((dy + ring_r * np.sin(angles)).astype(int), 0, SIZE - 1)
    profile = green[ys, xs]
    # Vessels crossing the ring are dark dips well below the ring's median.
    dips = np.count_nonzero(profile < 0.75 * np.median(profile))
    assert dips >= 20


def test_normal_eye_has_no_lesions(fundus: Make) -> None:
    for seed in SEEDS:
        assert _present(fundus(seed, 0, 0)) == set()


def test_dr1_has_microaneurysms_only_even_at_128_px(fundus: Make) -> None:
    for seed in SEEDS:
        for size in (SIZE, 128):
            assert _present(fundus(seed, 1, 0, size=size)) == {"microaneurysm"}


def test_dr2_has_more_than_microaneurysms_but_no_severe_signs(fundus: Make) -> None:
    for seed in SEEDS:
        present = _present(fundus(seed, 2, 0))
        assert "microaneurysm" in present
        assert present & {"haemorrhage", "hard_exudate"}
        assert not present & {"venous_beading", "neovascularisation", "preretinal_haemorrhage"}
        assert not present & set(AMD_ONLY)


def test_dr3_has_haemorrhages_in_all_four_quadrants_and_venous_beading(fundus: Make) -> None:
    for seed in SEEDS:
        f = fundus(seed, 3, 0)
        assert quadrant_hits(f.lesion_masks["haemorrhage"], f.fovea_centre) == {0, 1, 2, 3}
        present = _present(f)
        assert "venous_beading" in present
        assert not present & {"neovascularisation", "preretinal_haemorrhage"}


def test_dr4_has_new_vessels_or_preretinal_haemorrhage(fundus: Make) -> None:
    for seed in SEEDS:
        present = _present(fundus(seed, 4, 0))
        assert present & {"neovascularisation", "preretinal_haemorrhage"}
        assert "microaneurysm" in present


def _near_fovea(f: SyntheticFundus, name: str, radius: float) -> bool:
    ys, xs = np.nonzero(f.lesion_masks[name])
    d = np.hypot(xs - f.fovea_centre[0], ys - f.fovea_centre[1])
    return bool(len(d)) and float(np.max(d)) < radius * f.field_radius


@pytest.mark.parametrize(
    ("amd", "required", "forbidden"),
    [
        (1, {"small_drusen"}, {"large_drusen", "cnv", "haemorrhage", "hard_exudate"}),
        (2, {"large_drusen"}, {"cnv", "haemorrhage", "hard_exudate"}),
        (3, {"cnv", "haemorrhage", "hard_exudate"}, set()),
    ],
)
def test_amd_grades_draw_their_lesions_near_the_macula(
    fundus: Make, amd: int, required: set[str], forbidden: set[str]
) -> None:
    for seed in SEEDS:
        f = fundus(seed, 0, amd)
        present = _present(f)
        assert required <= present
        assert not present & forbidden
        assert not present & {"microaneurysm", "venous_beading", "neovascularisation"}
        for name in required:
            assert _near_fovea(f, name, 0.5), name


def test_dr_and_amd_share_haemorrhage_and_exudate_masks(fundus: Make) -> None:
    assert set(DR_LESIONS) & set(AMD_LESIONS) == {"haemorrhage", "hard_exudate"}
    f = fundus(13, 0, 3)
    assert f.lesion_masks["haemorrhage"].any() and f.lesion_masks["hard_exudate"].any()


def test_masks_mark_pixels_that_the_lesions_changed(fundus: Make) -> None:
    # Same seed -> same eye and camera; only the lesions differ.
    for seed in SEEDS[:3]:
        normal, sick = fundus(seed, 0, 0), fundus(seed, 3, 0)
        mask = sick.lesion_masks["haemorrhage"]
        green_n = normal.rgb[..., 1][mask].astype(float).mean()
        green_s = sick.rgb[..., 1][mask].astype(float).mean()
        assert green_s < 0.8 * green_n
        untouched = ~np.any(np.stack(list(sick.lesion_masks.values())), axis=0)
        # Away from lesions (and their soft edges) the two images agree closely.
        assert np.median(np.abs(normal.rgb[untouched].astype(int) - sick.rgb[untouched])) <= 1


def test_same_seed_gives_the_same_anatomy_at_any_size(fundus: Make) -> None:
    small, large = fundus(14, 0, 0, size=128), fundus(14, 0, 0, size=256)
    for a, b in ((small.disc_centre, large.disc_centre), (small.fovea_centre, large.fovea_centre)):
        # Same place in field units (up to the half-pixel of the pixel-centre convention).
        assert a[0] / 128 == pytest.approx(b[0] / 256, abs=0.005)
        assert a[1] / 128 == pytest.approx(b[1] / 256, abs=0.005)


@pytest.mark.parametrize("defect", ["blur", "underexposed", "artefact"])
def test_defects_degrade_the_image_and_draw_no_lesions(defect: str) -> None:
    clean = render_fundus(FundusSpec(seed=21, size=SIZE, dr_grade=0, amd_grade=0))
    bad_spec = FundusSpec(
        seed=21, size=SIZE, dr_grade=None, amd_grade=None, gradable=False, defect=defect
    )
    bad = render_fundus(bad_spec)
    assert not any(m.any() for m in bad.lesion_masks.values())
    c, b = clean.rgb.astype(float), bad.rgb.astype(float)
    if defect == "underexposed":
        assert b.mean() < 0.4 * c.mean()
    elif defect == "blur":
        # Fine detail (vessel edges) is gone: the Laplacian energy collapses.
        def detail(img: np.ndarray) -> float:
            g = img[..., 1]
            return float(
                np.abs(
                    4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
                ).mean()
            )

        assert detail(b) < 0.5 * detail(c)
    else:
        assert np.mean(np.abs(b - c)) > 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 1, "size": 32},
        {"seed": 1, "size": (512, 10_000)},
        {"seed": 1, "dr_grade": 5},
        {"seed": 1, "amd_grade": 4},
        {"seed": 1, "dr_grade": True},
        {"seed": 1, "laterality": "B"},
        {"seed": 1, "gradable": False, "dr_grade": None, "amd_grade": None},
        {"seed": 1, "gradable": False, "defect": "blur"},
        {"seed": 1, "defect": "blur"},
        {"seed": 1, "dr_grade": None},
    ],
)
def test_invalid_specs_are_refused_with_a_message(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        FundusSpec(**kwargs)  # type: ignore[arg-type]
