"""The parent as teacher on a grader's images: BatchNorm adapted to them, nothing else changed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.engine.adapted_teacher import _overlay, adapt_batchnorm
from training.engine.sall.soft_labels import TeacherOutputs


def test_adapted_statistics_are_those_of_the_new_images_and_the_parent_is_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout(0.5))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shifted = [(torch.randn(3, 8, 8) * 3 + 5, i) for i in range(10)]  # another "camera"
    adapted: Any = adapt_batchnorm(
        model,  # type: ignore[arg-type]
        shifted,  # type: ignore[arg-type]
        batch_size=5,  # equal batches: the cumulative average is then the images' mean
        device=torch.device("cpu"),
    )
    with torch.no_grad():
        activations = model[0](torch.stack([x for x, _ in shifted]))
    expected_mean = activations.mean(dim=(0, 2, 3))
    assert torch.allclose(adapted[1].running_mean, expected_mean, atol=1e-4)
    assert not adapted.training and not adapted[1].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_grader_images_rows_are_replaced_and_the_rest_kept() -> None:
    base = TeacherOutputs(
        "t",
        "d",
        ("a", "b", "c"),
        {"amd": torch.zeros(3, 4)},
        torch.zeros(3, 2, dtype=torch.float16),
    )
    top = TeacherOutputs("t", "d", ("c", "a"), {"amd": torch.ones(2, 4)}, torch.ones(2, 2))
    merged = _overlay(base, top)
    assert merged.sha256 == ("a", "b", "c")
    assert merged.logits["amd"][:, 0].tolist() == [1.0, 0.0, 1.0]
    assert merged.features.dtype == torch.float16 and merged.features[1].sum() == 0
    assert base.logits["amd"].sum() == 0  # the parent's own outputs are not changed in place
