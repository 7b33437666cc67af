"""``sall-train synth --masks``: lesion and field masks aligned with the written images."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_zoo.datasets.benchmark import dr_lesion_mask, field_mask
from model_zoo.datasets.camera import camera_profile, through_camera
from model_zoo.datasets.canvas import LESION_TYPES
from model_zoo.datasets.synthetic import FundusSpec, render_fundus
from training.synth import add_parser, run


def _args(out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    argv = ["synth", "--out", str(out), "--n", "8", "--seed", "3", "--size", "96x80"]
    return parser.parse_args([*argv, "--dicom-fraction", "0.25", *extra])


def _png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return np.asarray(image)


def _specs(out: Path) -> list[tuple[str, FundusSpec]]:
    with (out / "ground_truth.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        (
            r["file_name"],
            FundusSpec(
                seed=int(r["seed"]),
                size=(int(r["width"]), int(r["height"])),
                dr_grade=int(r["true_dr_grade"]) if r["true_dr_grade"] else None,
                amd_grade=int(r["true_amd_grade"]) if r["true_amd_grade"] else None,
                laterality=r["file_name"].split("_")[1][0].upper(),
                gradable=r["gradable"] == "1",
                defect=r["defect"] or None,
            ),
        )
        for r in rows
    ]


def test_default_writes_no_masks(tmp_path: Path) -> None:
    assert run(_args(tmp_path)) == 0
    assert not (tmp_path / "masks").exists()


@pytest.mark.parametrize("camera", ["reference", "handheld"])
def test_masks_match_the_rendered_lesions_and_field(tmp_path: Path, camera: str) -> None:
    assert run(_args(tmp_path, "--masks", "--camera", camera)) == 0
    seen_lesion = False
    for name, spec in _specs(tmp_path):
        fundus = render_fundus(spec)
        if camera != "reference":
            fundus = through_camera(fundus, camera_profile(camera))
        stem = Path(name).stem + ".png"
        lesions, field = _png(tmp_path / "masks" / stem), _png(tmp_path / "masks/field" / stem)
        assert lesions.shape == field.shape == (80, 96) and lesions.dtype == np.uint8
        assert set(np.unique(lesions)) <= {0, 255} and set(np.unique(field)) <= {0, 255}
        np.testing.assert_array_equal(lesions == 255, dr_lesion_mask(fundus))
        np.testing.assert_array_equal(field == 255, field_mask(fundus))
        seen_lesion |= bool(lesions.any())
        # Aligned with the pixels: the field mask is bright, its outside black.
        rgb = fundus.rgb.max(axis=2)
        assert np.median(rgb[field == 255]) > 40 and np.median(rgb[field == 0]) < 10
    assert seen_lesion
    assert not (tmp_path / "masks" / "microaneurysm").exists()


def test_per_lesion_masks(tmp_path: Path) -> None:
    assert run(_args(tmp_path, "--per-lesion-masks")) == 0
    name, spec = _specs(tmp_path)[0]
    fundus = render_fundus(spec)
    stem = Path(name).stem + ".png"
    assert (tmp_path / "masks" / stem).is_file()
    for lesion in LESION_TYPES:
        np.testing.assert_array_equal(
            _png(tmp_path / "masks" / lesion / stem) == 255, fundus.lesion_masks[lesion]
        )
