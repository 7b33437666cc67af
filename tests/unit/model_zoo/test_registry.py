"""Registry and architectures: every backbone builds, runs and exposes its Grad-CAM layer."""

from __future__ import annotations

import urllib.error
import uuid

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from model_zoo.architectures.backbones import WeightsUnavailableError, data_config
from model_zoo.architectures.student import (
    DEFAULT_TASKS,
    MultiTaskOutput,
    SallStudent,
    TaskSpec,
    sall_student,
)
from model_zoo.registry import (
    RegistryError,
    get_backbone_entry,
    get_model,
    list_backbones,
    list_models,
    register_backbone,
    register_model,
)
from model_zoo.transforms import eval_transform

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKBONES = [
    "densenet121",
    "efficientnet_b0",
    "inception_v3",
    "mobilenet_v3_large",
    "resnet18",
    "resnet34",
    "resnet50",
]
CAM_LAYER_TYPES = {
    "resnet18": "Sequential",
    "resnet34": "Sequential",
    "resnet50": "Sequential",
    "efficientnet_b0": "Conv2dNormActivation",
    "densenet121": "Sequential",
    "mobilenet_v3_large": "Conv2dNormActivation",
    "inception_v3": "InceptionE",
}


def test_every_required_backbone_is_registered() -> None:
    assert list_backbones() == BACKBONES
    assert "sall_student" in list_models()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_student_round_trip_per_backbone(backbone: str) -> None:
    model = get_model("sall_student", backbone=backbone)
    assert isinstance(model, SallStudent)
    model.eval()
    size = max(64, get_backbone_entry(backbone).min_input_size)
    activations: list[torch.Tensor] = []
    cam = model.cam_target_layer()
    handle = cam.register_forward_hook(lambda _m, _i, out: activations.append(out))
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    handle.remove()

    assert isinstance(out, MultiTaskOutput)
    assert {k: tuple(v.shape) for k, v in out.logits.items()} == {"dr": (2, 5), "amd": (2, 4)}
    assert out.features.shape == (2, model.feature_dim)
    assert model.feature_dim == get_backbone_entry(backbone).feature_dim
    assert model.backbone_name == backbone
    # The CAM layer is a real block inside this model and yields a spatial map.
    assert any(m is cam for m in model.modules()) and cam is not model
    assert type(cam).__name__ == CAM_LAYER_TYPES[backbone]
    assert len(activations) == 1 and activations[0].ndim == 4
    # Heads see exactly the pooled feature: the logits are the heads applied to it.
    with torch.no_grad():
        for task in DEFAULT_TASKS:
            expected = model.heads[task.name](out.features)
            torch.testing.assert_close(out.logits[task.name], expected)
    torch.testing.assert_close(
        model.forward_features(torch.zeros(1, 3, size, size)).shape[1:],
        torch.Size([model.feature_dim]),
    )


def test_heads_are_dropout_then_linear_per_task() -> None:
    tasks = (
        TaskSpec("dr", tuple("abcde")),
        TaskSpec("amd", tuple("abcd")),
        TaskSpec("x", ("n", "y")),
    )
    model = sall_student(backbone="resnet18", tasks=tasks, dropout=0.3)
    assert list(model.heads) == ["dr", "amd", "x"]
    for task in tasks:
        head = model.heads[task.name]
        assert isinstance(head[0], nn.Dropout) and head[0].p == 0.3
        assert isinstance(head[1], nn.Linear)
        assert (head[1].in_features, head[1].out_features) == (512, task.num_classes)


def test_single_task_teacher_is_the_same_class() -> None:
    teacher = get_model("sall_student", backbone="resnet18", tasks=(DEFAULT_TASKS[1],)).eval()
    with torch.inference_mode():
        out = teacher(torch.randn(1, 3, 64, 64))
    assert list(out.logits) == ["amd"] and out.logits["amd"].shape == (1, 4)


def test_duplicate_names_raise() -> None:
    with pytest.raises(RegistryError, match="already registered"):
        register_model("sall_student")(lambda: None)
    with pytest.raises(RegistryError, match="already registered"):
        register_backbone("resnet18", feature_dim=512, weights="x")(lambda: None)
    name = f"test_model_{uuid.uuid4().hex}"
    register_model(name)(lambda: nn.Identity())
    assert isinstance(get_model(name), nn.Identity)
    with pytest.raises(RegistryError, match=name):
        register_model(name)(lambda: nn.Identity())


def test_unknown_names_list_the_registered_ones() -> None:
    with pytest.raises(RegistryError, match="resnet18"):
        get_model("sall_student", backbone="vgg99")
    with pytest.raises(RegistryError, match="sall_student"):
        get_model("no_such_model")


def test_bad_task_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least two"):
        TaskSpec("dr", ("only",))
    with pytest.raises(ValueError, match="identifier"):
        TaskSpec("d.r", ("a", "b"))
    with pytest.raises(ValueError, match="unique"):
        sall_student(tasks=(DEFAULT_TASKS[0], DEFAULT_TASKS[0]))


def test_inception_input_is_normalised_exactly_once(card_factory) -> None:
    """Card mean/std are ImageNet's (from torchvision's weights); the network's own
    transform_input must turn that into Google's (x - 0.5) / 0.5 and nothing else."""
    card = card_factory(backbone="inception_v3", input_size=80)
    assert card.mean == data_config("inception_v3").mean
    model = get_model("sall_student", backbone="inception_v3").eval()
    seen: list[torch.Tensor] = []
    first_conv = model.backbone.net.Conv2d_1a_3x3
    handle = first_conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    rgb = np.random.default_rng(0).integers(0, 256, size=(80, 80, 3), dtype=np.uint8)
    with torch.inference_mode():
        model(eval_transform(card)(rgb)[None])
    handle.remove()
    expected = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    torch.testing.assert_close(seen[0], (expected - 0.5) / 0.5, atol=1e-5, rtol=1e-5)


def test_pretrained_offline_gives_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls: list[str] = []

    def no_network(url: str, *_args: object, **_kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError, match="needs a network connection") as info:
        sall_student(backbone="resnet18", pretrained=True)
    assert len(calls) == 1 and calls[0].endswith(".pth")
    assert str(tmp_path) in str(info.value)  # says where to put the file


def test_pretrained_uses_the_hub_cache_without_downloading(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download"))
    torch.manual_seed(7)
    reference = torchvision.models.resnet18(weights=None)
    url = torchvision.models.get_weight(get_backbone_entry("resnet18").weights).url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[-1])
    model = sall_student(backbone="resnet18", pretrained=True)
    torch.testing.assert_close(model.backbone.net.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(
        model.backbone.net.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var
    )
