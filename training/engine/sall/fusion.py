"""``sall.feature_term = "fusion"``: label as feature (docs/sall-method.md, our design).

Each head sees the pooled feature concatenated with the OTHER task's probability vector: the DR
head sees ``[f(x); q_AMD(x)]`` and the AMD head ``[f(x); q_DR(x)]``.

* Training: the vector is the frozen teacher's soft prediction ``softmax(z_other / tau)``, so
  stage 2 runs both teachers on every image.
* Inference: it is the student's own other-head prediction, detached. The heads depend on each
  other, so inference runs two passes: the first with a uniform vector, the second with the
  first pass's probabilities. This train/test mismatch is why ``hint`` is the default.

The network is registered as ``sall_fusion_student`` when this module is imported (the training
process imports it). The app's model zoo does not know that architecture: fusion models are a
research option and cannot be loaded by SALL Desktop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from model_zoo.architectures.backbones import Backbone
from model_zoo.architectures.student import MultiTaskOutput, SallStudent
from model_zoo.architectures.tasks import DEFAULT_TASKS, TaskSpec
from model_zoo.registry import get_backbone, register_model

ARCHITECTURE = "sall_fusion_student"


class FusionStudent(SallStudent):
    """A two-head student whose heads also read the other head's probabilities.

    Args:
        backbone: shared trunk (pooled ``[B, F]``).
        tasks: exactly two heads.
        dropout: dropout before each head.
    """

    def __init__(self, backbone: Backbone, tasks: Sequence[TaskSpec], *, dropout: float) -> None:
        super().__init__(backbone, tasks, dropout=dropout)
        if len(self.tasks) != 2:
            raise ValueError("the fusion student needs exactly two tasks")
        first, second = self.tasks
        self.partner = {first.name: second, second.name: first}
        self.heads = nn.ModuleDict(
            {
                task.name: nn.Sequential(
                    nn.Dropout(dropout),
                    nn.Linear(
                        self.feature_dim + self.partner[task.name].num_classes, task.num_classes
                    ),
                )
                for task in self.tasks
            }
        )

    def _heads(self, features: Tensor, other: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {
            name: head(torch.cat([features, other[self.partner[name].name].to(features.dtype)], 1))
            for name, head in self.heads.items()
        }

    def forward(
        self, x: Tensor, other_probs: Mapping[str, Tensor] | None = None
    ) -> MultiTaskOutput:
        """Logits per head.

        Args:
            x: ``[B, 3, S, S]`` normalised images.
            other_probs: task -> ``[B, C_task]`` probability vector fed to the OTHER head
                (training: the teacher's soft prediction). ``None`` runs the two-pass inference.
        """
        features = self.forward_features(x)
        if other_probs is None:
            uniform = {
                t.name: features.new_full((x.shape[0], t.num_classes), 1.0 / t.num_classes)
                for t in self.tasks
            }
            first = self._heads(features, uniform)
            other_probs = {k: torch.softmax(v.detach().float(), dim=1) for k, v in first.items()}
        return MultiTaskOutput(logits=self._heads(features, other_probs), features=features)


@register_model(ARCHITECTURE)
def sall_fusion_student(
    *,
    backbone: str = "resnet18",
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    pretrained: bool = False,
    dropout: float = 0.5,
) -> FusionStudent:
    """Build a fusion student (two tasks); see the module docstring."""
    trunk = get_backbone(backbone, pretrained=pretrained)
    if not isinstance(trunk, Backbone):
        raise TypeError(f"backbone {backbone!r} builder returned {type(trunk).__name__}")
    return FusionStudent(trunk, tasks, dropout=dropout)


__all__ = ["ARCHITECTURE", "FusionStudent", "sall_fusion_student"]
