"""torchvision backbones that end in a globally pooled feature.

Each builder is registered with :func:`model_zoo.registry.register_backbone`. The network is
built identically with and without ImageNet weights (a checkpoint trained from ImageNet weights
must load into a model built with ``pretrained=False``), so ``pretrained`` only decides where the
initial parameters come from.

ImageNet weights are read from the torch hub cache, downloaded only when missing, and always
loaded with ``torch.load(weights_only=True)``; torch.hub's own loader defaults to
``weights_only=False``, which R13 forbids.
"""

from __future__ import annotations

import re
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from model_zoo.registry import get_backbone_entry, register_backbone

_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were requested but are neither cached nor downloadable."""


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Input preprocessing that the pretrained weights of a backbone expect.

    Args:
        input_size: square side in pixels (torchvision's ``crop_size``).
        mean: per-channel RGB mean on the [0, 1] scale.
        std: per-channel RGB standard deviation on the [0, 1] scale.
        interpolation: resize filter name (``"bilinear"`` or ``"bicubic"``).
    """

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


class Backbone(nn.Module):
    """A torchvision trunk whose classifier is removed: ``[B, 3, H, W] -> [B, F]``.

    Args:
        net: the torchvision model with its classifier replaced by ``nn.Identity``.
        name: registry name of the backbone.
        feature_dim: ``F``.
        cam_layer: dotted name inside ``net`` of the last convolutional block (Grad-CAM target).
    """

    def __init__(self, net: nn.Module, *, name: str, feature_dim: int, cam_layer: str) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.feature_dim = feature_dim
        # A name, not a module attribute: storing the module would register it twice and
        # duplicate its parameters in the state dict.
        self._cam_layer = cam_layer
        net.get_submodule(cam_layer)  # fail at build time, not at the first Grad-CAM

    def forward(self, x: Tensor) -> Tensor:
        """Pooled feature ``[B, F]`` of a normalised ``[B, 3, H, W]`` float batch."""
        out: Tensor = self.net(x)
        return out

    def cam_target_layer(self) -> nn.Module:
        """The last convolutional block, whose activations Grad-CAM weights."""
        return self.net.get_submodule(self._cam_layer)


def data_config(backbone: str) -> DataConfig:
    """Preprocessing that backbone ``backbone``'s ImageNet weights were trained with.

    Read from torchvision's weights metadata, never typed in (docs/sall-method.md, Model).
    """
    weights = torchvision.models.get_weight(get_backbone_entry(backbone).weights)
    preset = weights.transforms()
    mean = tuple(float(v) for v in preset.mean)
    std = tuple(float(v) for v in preset.std)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{backbone}: expected RGB mean/std, got {mean}, {std}")
    return DataConfig(
        input_size=int(preset.crop_size[0]),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        interpolation=str(preset.interpolation.value),
    )


def _fetch_imagenet_state_dict(backbone: str) -> dict[str, Tensor]:
    weights = torchvision.models.get_weight(get_backbone_entry(backbone).weights)
    url: str = weights.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file():
        match = _HASH_PREFIX.search(cached.name)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                url, str(cached), hash_prefix=match.group(1) if match else None, progress=False
            )
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise WeightsUnavailableError(
                f"Backbone {backbone!r} with pretrained=True needs a network connection to "
                f"download ImageNet weights; none is available ({exc}). Copy {cached.name} into "
                f"{cached.parent} (the torch hub cache) or build with pretrained=False."
            ) from exc
    state: dict[str, Tensor] = torch.load(cached, map_location="cpu", weights_only=True)
    return state


# DenseNet checkpoints predate the ban on dots in module names ('norm.1' -> 'norm1').
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _fix_densenet_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    fixed = {}
    for key, value in state.items():
        match = _DENSENET_OLD_KEY.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def _load_imagenet(
    net: nn.Module,
    backbone: str,
    fix: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> None:
    state = _fetch_imagenet_state_dict(backbone)
    net.load_state_dict(fix(state) if fix else state, strict=True)


def _make(name: str, net: nn.Module, cam_layer: str) -> Backbone:
    return Backbone(
        net, name=name, feature_dim=get_backbone_entry(name).feature_dim, cam_layer=cam_layer
    )


def _resnet(name: str, ctor: Callable[..., nn.Module], pretrained: bool) -> Backbone:
    net = ctor(weights=None)
    if pretrained:
        _load_imagenet(net, name)
    net.fc = nn.Identity()
    return _make(name, net, "layer4")


@register_backbone("resnet18", feature_dim=512, weights="ResNet18_Weights.IMAGENET1K_V1")
def resnet18(*, pretrained: bool = False) -> Backbone:
    """ResNet-18 trunk, 512-d feature, Grad-CAM on ``layer4``."""
    return _resnet("resnet18", torchvision.models.resnet18, pretrained)


@register_backbone("resnet34", feature_dim=512, weights="ResNet34_Weights.IMAGENET1K_V1")
def resnet34(*, pretrained: bool = False) -> Backbone:
    """ResNet-34 trunk, 512-d feature, Grad-CAM on ``layer4``."""
    return _resnet("resnet34", torchvision.models.resnet34, pretrained)


@register_backbone("resnet50", feature_dim=2048, weights="ResNet50_Weights.IMAGENET1K_V2")
def resnet50(*, pretrained: bool = False) -> Backbone:
    """ResNet-50 trunk, 2048-d feature, Grad-CAM on ``layer4``."""
    return _resnet("resnet50", torchvision.models.resnet50, pretrained)


def _last_index(seq: nn.Module) -> str:
    return str(len(list(seq.children())) - 1)


@register_backbone(
    "efficientnet_b0", feature_dim=1280, weights="EfficientNet_B0_Weights.IMAGENET1K_V1"
)
def efficientnet_b0(*, pretrained: bool = False) -> Backbone:
    """EfficientNet-B0 trunk, 1280-d feature, Grad-CAM on ``features[-1]``."""
    net = torchvision.models.efficientnet_b0(weights=None)
    if pretrained:
        _load_imagenet(net, "efficientnet_b0")
    # Sequential(Dropout, Linear): our heads bring their own dropout.
    net.classifier = nn.Identity()
    return _make("efficientnet_b0", net, "features." + _last_index(net.features))


@register_backbone("densenet121", feature_dim=1024, weights="DenseNet121_Weights.IMAGENET1K_V1")
def densenet121(*, pretrained: bool = False) -> Backbone:
    """DenseNet-121 trunk, 1024-d feature, Grad-CAM on ``features`` (ends with ``norm5``)."""
    net = torchvision.models.densenet121(weights=None)
    if pretrained:
        _load_imagenet(net, "densenet121", _fix_densenet_keys)
    net.classifier = nn.Identity()
    return _make("densenet121", net, "features")


@register_backbone(
    "mobilenet_v3_large", feature_dim=960, weights="MobileNet_V3_Large_Weights.IMAGENET1K_V2"
)
def mobilenet_v3_large(*, pretrained: bool = False) -> Backbone:
    """MobileNet-V3-Large trunk, 960-d pooled feature, Grad-CAM on ``features[-1]``.

    The whole torchvision classifier (Linear 960->1280, Hardswish, Dropout, Linear) is dropped so
    that the heads sit on the globally pooled feature, as for every other backbone.
    """
    net = torchvision.models.mobilenet_v3_large(weights=None)
    if pretrained:
        _load_imagenet(net, "mobilenet_v3_large")
    net.classifier = nn.Identity()
    return _make("mobilenet_v3_large", net, "features." + _last_index(net.features))


@register_backbone(
    "inception_v3",
    feature_dim=2048,
    weights="Inception_V3_Weights.IMAGENET1K_V1",
    min_input_size=75,
)
def inception_v3(*, pretrained: bool = False) -> Backbone:
    """Inception-v3 trunk (299 px in the paper), 2048-d feature, Grad-CAM on ``Mixed_7c``.

    ``transform_input`` is always on: the network receives ImageNet-normalised input (the mean/std
    of torchvision's weights card, which the model card copies) and converts it internally to the
    ``(x - 0.5) / 0.5`` scaling Google's weights were trained with. Inputs are therefore normalised
    exactly once, and identically with or without ImageNet weights. The auxiliary classifier is
    off and the built-in dropout before ``fc`` is removed (the heads have their own).
    """
    # The ImageNet checkpoint carries AuxLogits; load it with aux on, then drop it.
    net = torchvision.models.inception_v3(
        weights=None, aux_logits=pretrained, transform_input=True, init_weights=not pretrained
    )
    if pretrained:
        _load_imagenet(net, "inception_v3")
        net.aux_logits = False
        net.AuxLogits = None
    net.dropout = nn.Identity()
    net.fc = nn.Identity()
    return _make("inception_v3", net, "Mixed_7c")
