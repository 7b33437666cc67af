"""Fixtures of the training unit tests: a few tiny images with a manifest, and a tiny model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.protocol.config import load_config
from training.protocol.manifest import ManifestRow

HANG_GUARD_S = 60.0
"""The longest a wait on a thread or signal may take before the test fails as hung; never a
measure of speed (docs/testing.md)."""


@dataclass(frozen=True)
class Images:
    folder: Path
    rows: list[ManifestRow]


@pytest.fixture
def images(tmp_path: Path) -> Images:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        path = tmp_path / f"eye{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(ManifestRow(image_path=path.name, sha256=digest, dr_grade=i % 5, split="train"))
    return Images(tmp_path, rows)


@pytest.fixture
def tiny_cfg():
    return load_config(
        None, ["model.backbone=resnet18", "model.input_size=32", "runtime.device=cpu"]
    )
