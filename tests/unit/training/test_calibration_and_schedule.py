"""Temperature scaling and the learning-rate schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.engine.calibration import fit_temperature, nll, softmax
from training.engine.loop import lr_at
from training.protocol.config import OptimConfig


def test_fitted_temperature_minimises_nll_on_a_grid() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4))
    logits[np.arange(400), labels] += 1.5
    logits *= 4.0  # over-confident
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 4001))
    best = grid[np.argmin([nll(logits, labels, g) for g in grid])]
    assert t == pytest.approx(best, rel=2e-3)
    assert t > 1.0  # over-confident logits are softened
    assert nll(logits, labels, t) <= nll(logits, labels, 1.0)


def test_temperature_without_labels_is_one_and_unknown_labels_are_ignored() -> None:
    assert fit_temperature(np.zeros((3, 2)), np.array([-1, -1, -1])) == 1.0
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    assert nll(logits, np.array([0, 1, -1]), 1.0) == pytest.approx(-math.log(softmax(logits)[0, 0]))


def test_softmax_rows_sum_to_one() -> None:
    p = softmax(np.array([[1000.0, 0.0], [1.0, 2.0]]), 2.0)
    assert np.allclose(p.sum(axis=1), 1.0) and p[0, 0] == pytest.approx(1.0)


def test_constant_schedule_with_warmup() -> None:
    o = OptimConfig(lr=1.0)
    assert [lr_at(i, 10, 4, o) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_at(0, 10, 0, o) == 1.0


def test_cosine_schedule_decays_to_the_floor() -> None:
    o = OptimConfig(lr=1.0, schedule="cosine", min_lr_ratio=0.1)
    lrs = [lr_at(i, 11, 1, o) for i in range(11)]
    assert lrs[0] == 1.0 and lrs[1] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))
    assert lrs[6] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 5 / 9)) * 0.9)
