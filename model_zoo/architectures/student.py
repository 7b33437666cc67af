"""The SALL multi-task student (docs/sall-method.md, Model): shared backbone, one head per task.

A single-task teacher is the same class with one :class:`TaskSpec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

from torch import Tensor, nn

from model_zoo.architectures.backbones import Backbone, WeightsUnavailableError, data_config
from model_zoo.architectures.tasks import (
    DEFAULT_GRADING_SCALES,
    DEFAULT_TASKS,
    TaskSpec,
    validate_tasks,
)
from model_zoo.cards import ModelCard, Provenance
from model_zoo.registry import get_backbone, register_model

__all__ = [
    "DEFAULT_TASKS",
    "FINE_CAM",
    "CamDefault",
    "MultiTaskOutput",
    "SallStudent",
    "TaskSpec",
    "WeightsUnavailableError",
    "card_template",
    "sall_student",
]


class MultiTaskOutput(NamedTuple):
    """What :meth:`SallStudent.forward` returns.

    Attributes:
        logits: task name -> raw logits ``[B, C_k]``. No temperature is applied in the graph;
            training and calibration apply their own (docs/sall-method.md, Model and Calibration).
        features: the shared globally pooled feature ``[B, F]``.
    """

    logits: dict[str, Tensor]
    features: Tensor


class CamDefault(NamedTuple):
    """The layer and method a model's attention maps are computed with by default."""

    layer: nn.Module
    method: Literal["gradcam", "gradcam++", "layercam"]


FINE_CAM: dict[str, tuple[str, Literal["gradcam", "gradcam++", "layercam"]]] = {
    "efficientnet_b0": ("features.2", "layercam"),
}
"""Backbone -> (module inside its torchvision net, method) for the default attention map.

Chosen by ``benchmarks/bench_cam_lesions.py`` on the demo model (EfficientNet-B0 at 128 px):
Grad-CAM on the last block is a 4x4 grid and put no more of its mass on DR lesions than
chance; LayerCAM on the stride-4 stage (32x32) is the best-ranked single layer (figures in
docs/benchmarks.md).
Backbones not listed keep Grad-CAM on :meth:`SallStudent.cam_target_layer`: nobody has measured
a finer layer on a trained model of theirs.
"""


class SallStudent(nn.Module):
    """Shared backbone, global pooling, and one ``Dropout(p) -> Linear(F, C_k)`` head per task.

    Args:
        backbone: a :class:`~model_zoo.architectures.backbones.Backbone` (pooled ``[B, F]``).
        tasks: the heads, in order; names unique.
        dropout: dropout probability of every head, in [0, 1).
    """

    def __init__(self, backbone: Backbone, tasks: Sequence[TaskSpec], *, dropout: float) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.tasks: tuple[TaskSpec, ...] = validate_tasks(tuple(tasks))
        self.backbone = backbone
        self.feature_dim: int = backbone.feature_dim
        self.backbone_name: str = backbone.name
        self.heads = nn.ModuleDict(
            {
                task.name: nn.Sequential(
                    nn.Dropout(dropout), nn.Linear(self.feature_dim, task.num_classes)
                )
                for task in self.tasks
            }
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled feature ``[B, F]`` of a normalised float batch ``[B, 3, H, W]``."""
        return self.backbone(x)  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> MultiTaskOutput:
        """Raw logits per task and the pooled feature of a normalised ``[B, 3, H, W]`` batch."""
        features = self.forward_features(x)
        logits = {name: head(features) for name, head in self.heads.items()}
        return MultiTaskOutput(logits=logits, features=features)

    def cam_target_layer(self) -> nn.Module:
        """The backbone's last convolutional block (Grad-CAM target layer)."""
        return self.backbone.cam_target_layer()

    def cam_default(self) -> CamDefault:
        """Layer and method of the attention map the app shows (:data:`FINE_CAM`)."""
        fine = FINE_CAM.get(self.backbone_name)
        if fine is None:
            return CamDefault(self.cam_target_layer(), "gradcam")
        name, method = fine
        return CamDefault(self.backbone.net.get_submodule(name), method)


@register_model("sall_student")
def sall_student(
    *,
    backbone: str = "resnet18",
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    pretrained: bool = False,
    dropout: float = 0.5,
) -> SallStudent:
    """Build a SALL student (or, with one task, a single-task teacher).

    Args:
        backbone: registered backbone name (see :func:`model_zoo.registry.list_backbones`).
        tasks: one :class:`TaskSpec` per head; DR (5) + AMD (4) by default.
        pretrained: start the backbone from ImageNet weights (torch hub cache, else download;
            :class:`~model_zoo.architectures.backbones.WeightsUnavailableError` when offline).
        dropout: dropout before each head's linear layer.

    Returns:
        The model in training mode.

    Example:
        >>> from model_zoo.registry import get_model
        >>> model = get_model("sall_student", backbone="resnet18").eval()
        >>> out = model(torch.zeros(1, 3, 224, 224))
        >>> out.logits["dr"].shape, out.features.shape
        (torch.Size([1, 5]), torch.Size([1, 512]))
    """
    trunk = get_backbone(backbone, pretrained=pretrained)
    if not isinstance(trunk, Backbone):
        raise TypeError(f"backbone {backbone!r} builder returned {type(trunk).__name__}")
    return SallStudent(trunk, tasks, dropout=dropout)


def card_template(
    *,
    name: str,
    version: str,
    licence: str,
    intended_use: str,
    backbone: str = "resnet18",
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    dropout: float = 0.5,
    input_size: int | None = None,
    fundus_crop: bool = False,
    grading_scales: dict[str, str] | None = None,
    provenance: Provenance | None = None,
) -> ModelCard:
    """A card (``id=""``) for a ``sall_student``, with the backbone weights' mean/std.

    Mean, std and the default input size come from torchvision's weights metadata for
    ``backbone`` (docs/sall-method.md, Model: never typed in); temperatures start at 1.0
    (uncalibrated).

    Args:
        name: human model name.
        version: human version label.
        licence: licence of the weights.
        intended_use: e.g. :data:`model_zoo.cards.SYNTHETIC_INTENDED_USE`.
        backbone: registered backbone name.
        tasks: the heads.
        dropout: head dropout recorded for rebuilding.
        input_size: square input side in pixels; default the weights' crop size (224, 299...).
        fundus_crop: crop to the fundus circle before resizing.
        grading_scales: head -> scale label; default the known DR/AMD scales.
        provenance: default: empty provenance with the current library versions.

    Example:
        >>> card = card_template(name="demo", version="1", licence="Apache-2.0",
        ...                      intended_use=SYNTHETIC_INTENDED_USE, input_size=256)
    """
    config = data_config(backbone)
    task_tuple = validate_tasks(tuple(tasks))
    names = [t.name for t in task_tuple]
    if grading_scales is None:
        grading_scales = {k: v for k, v in DEFAULT_GRADING_SCALES.items() if k in names}
    return ModelCard(
        id="",
        name=name,
        version=version,
        architecture="sall_student",
        architecture_kwargs={"backbone": backbone, "dropout": dropout},
        tasks=task_tuple,
        grading_scales=grading_scales,
        input_size=config.input_size if input_size is None else input_size,
        mean=config.mean,
        std=config.std,
        interpolation=config.interpolation,
        preprocessing={"fundus_crop": fundus_crop},
        temperatures=dict.fromkeys(names, 1.0),
        provenance=Provenance() if provenance is None else provenance,
        licence=licence,
        intended_use=intended_use,
    )
