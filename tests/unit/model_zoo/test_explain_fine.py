"""Issue 18 item 6: LayerCAM, the model's default map (``cam_default``) and the field of view."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model_zoo.architectures.student import FINE_CAM, SallStudent
from model_zoo.checkpoints import load_checkpoint
from model_zoo.datasets.benchmark import field_mask
from model_zoo.datasets.synthetic import FundusSpec, render_fundus
from model_zoo.explain import GradCAM, field_of_view
from model_zoo.registry import get_model
from model_zoo.weights import demo_model_dir


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Tiny(nn.Module):
    """Two conv blocks and one head; ``cam_default`` names the first block and LayerCAM."""

    def __init__(self) -> None:
        super().__init__()
        self.early = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.late = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"dr": self.head(self.late(self.early(x)).mean(dim=(2, 3)))}

    def cam_target_layer(self) -> nn.Module:
        return self.late

    def cam_default(self) -> tuple[nn.Module, str]:
        return self.early, "layercam"


def test_layercam_matches_the_formula() -> None:
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with GradCAM(model, target_layer=model.early, method="layercam") as cam:
        maps = cam(x, head="dr", target_class=1)
    activation = model.early(x).detach().requires_grad_(True)
    score = model.head(model.late(activation).mean(dim=(2, 3)))[:, 1].sum()
    (grad,) = torch.autograd.grad(score, activation)
    expected = F.relu((F.relu(grad) * activation.detach()).sum(dim=1))
    expected = F.interpolate(expected[:, None], size=(32, 32), mode="bilinear")[:, 0]
    for amap, ref in zip(maps, expected, strict=True):
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        assert amap.method == "layercam"
        np.testing.assert_allclose(amap.cam, ref.numpy(), atol=1e-5)


def test_the_model_default_is_used_only_when_nothing_is_asked() -> None:
    model = Tiny().eval()
    with GradCAM(model) as cam:
        assert (cam.target_layer, cam.method) == (model.early, "layercam")
    with GradCAM(model, method="gradcam++") as cam:
        assert (cam.target_layer, cam.method) == (model.late, "gradcam++")
    with GradCAM(model, target_layer=model.early) as cam:
        assert (cam.target_layer, cam.method) == (model.early, "gradcam")


def test_cam_default_per_backbone() -> None:
    fine = get_model("sall_student", backbone="efficientnet_b0")
    assert isinstance(fine, SallStudent)
    layer, method = fine.cam_default()
    assert layer is fine.backbone.net.get_submodule(FINE_CAM["efficientnet_b0"][0])
    assert method == "layercam"
    plain = get_model("sall_student", backbone="resnet18")
    assert isinstance(plain, SallStudent)
    assert plain.cam_default() == (plain.cam_target_layer(), "gradcam")


def test_the_demo_model_map_is_finer_than_4x4() -> None:
    model, card = load_checkpoint(demo_model_dir(), device="cpu")
    assert isinstance(model, SallStudent)
    shapes: list[tuple[int, ...]] = []
    layer, _ = model.cam_default()
    handle = layer.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, card.input_size, card.input_size))
    handle.remove()
    assert shapes[0][-2] >= 16 and shapes[0][-1] >= 16  # the last block gives 4x4


@pytest.mark.parametrize("seed", [3, 4])
def test_field_of_view_follows_the_rendered_field(seed: int) -> None:
    fundus = render_fundus(FundusSpec(seed=seed, size=(200, 160), dr_grade=4))
    found, truth = field_of_view(fundus.rgb), field_mask(fundus)
    assert (found & truth).sum() / (found | truth).sum() > 0.95
    assert not found[0, 0] and not found[-1, -1]  # the black corners


def test_field_of_view_keeps_dark_lesions_inside_and_ignores_specks() -> None:
    rgb = np.zeros((100, 120, 3), np.uint8)
    yy, xx = np.mgrid[:100, :120]
    rgb[(xx - 60) ** 2 + (yy - 50) ** 2 <= 40**2] = (180, 90, 40)
    rgb[45:55, 70:80] = 0  # a dark haemorrhage inside the field
    rgb[2, 2] = 255  # a hot pixel on the border
    mask = field_of_view(rgb)
    assert mask[50, 75] and not mask[2, 2] and not mask[50, 5]


def test_field_of_view_of_a_black_image_is_everything() -> None:
    assert field_of_view(np.zeros((40, 50, 3), np.uint8)).all()
    with pytest.raises(ValueError, match="uint8"):
        field_of_view(np.zeros((40, 50), np.uint8))
