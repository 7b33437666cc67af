"""Camera profiles: a new clinic drawn from the generator, deterministic, masks following."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from model_zoo.datasets.benchmark import write_synthetic_dataset
from model_zoo.datasets.camera import (
    CAMERA_PROFILES,
    CameraProfile,
    camera_profile,
    through_camera,
)
from model_zoo.datasets.synthetic import FundusSpec, render_fundus


@pytest.fixture(scope="module")
def fundus():  # type: ignore[no-untyped-def]
    return render_fundus(FundusSpec(seed=5, size=128, dr_grade=3, amd_grade=0))


def test_reference_leaves_the_image_as_drawn(fundus) -> None:  # type: ignore[no-untyped-def]
    assert through_camera(fundus, CAMERA_PROFILES["reference"]) is fundus


def test_a_profile_is_deterministic_and_changes_the_rendition(fundus) -> None:  # type: ignore[no-untyped-def]
    profile = camera_profile("clinic-b")
    first, second = through_camera(fundus, profile), through_camera(fundus, profile)
    assert np.array_equal(first.rgb, second.rgb)
    assert first.rgb.shape == fundus.rgb.shape and first.rgb.dtype == np.uint8
    # Warm cast: red gains on blue relative to the generator's rendition.
    inside = fundus.rgb.sum(axis=2) > 30
    ratio_before = fundus.rgb[inside, 0].mean() / max(1.0, fundus.rgb[inside, 2].mean())
    ratio_after = first.rgb[inside, 0].mean() / max(1.0, first.rgb[inside, 2].mean())
    assert ratio_after > ratio_before * 1.2
    # Flash from the upper left: that quarter of the field is brighter than the lower right.
    h, w = first.rgb.shape[:2]
    upper_left = first.rgb[: h // 2, : w // 2].astype(float).mean()
    lower_right = first.rgb[h // 2 :, w // 2 :].astype(float).mean()
    assert upper_left > lower_right


def test_a_narrower_field_moves_masks_and_landmarks_with_the_pixels(fundus) -> None:  # type: ignore[no-untyped-def]
    zoom = CameraProfile("zoom", "test", field_scale=1.5)
    seen = through_camera(fundus, zoom)
    assert seen.field_radius == pytest.approx(fundus.field_radius * 1.5)
    lesions = seen.lesion_masks["haemorrhage"]
    assert lesions.shape == fundus.lesion_masks["haemorrhage"].shape

    # Lesions spread away from the centre as the image is magnified about it.
    def spread(mask: np.ndarray) -> float:
        ys, xs = np.nonzero(mask)
        centre = (np.asarray(mask.shape) - 1) / 2
        return float(np.hypot(ys - centre[0], xs - centre[1]).mean()) if len(xs) else 0.0

    before = fundus.lesion_masks["haemorrhage"]
    assert before.any() and lesions.any()
    assert spread(lesions) > spread(before)


def test_unknown_profiles_and_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="clinic-b"):
        camera_profile("nikon")
    with pytest.raises(ValueError, match="gamma"):
        CameraProfile("bad", "test", gamma=0.0)
    assert dataclasses.replace(CAMERA_PROFILES["clinic-b"], jitter=0.0).jitter == 0.0


def test_the_dataset_writer_photographs_through_the_profile(tmp_path: Path) -> None:
    plain = write_synthetic_dataset(tmp_path / "a", 4, seed=3, size=96, dicom_fraction=0.0)
    clinic = write_synthetic_dataset(
        tmp_path / "b", 4, seed=3, size=96, dicom_fraction=0.0, camera=CAMERA_PROFILES["clinic-b"]
    )
    again = write_synthetic_dataset(
        tmp_path / "c", 4, seed=3, size=96, dicom_fraction=0.0, camera=CAMERA_PROFILES["clinic-b"]
    )
    assert [s.spec for s in plain] == [s.spec for s in clinic]  # the same eyes and grades
    assert all(a.sha256 != b.sha256 for a, b in zip(plain, clinic, strict=True))
    assert [s.sha256 for s in clinic] == [s.sha256 for s in again]
