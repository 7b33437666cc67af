"""What one training step optimises: the network plus its loss, as one module.

:class:`SallObjective` wraps the student (or a single-task teacher), the ``hint`` adapters and
the per-split supervision tensors, so the loop (and DDP) see one module whose ``forward`` returns
the loss. Supervision lives on the device as ``[N, ...]`` tensors indexed by dataset position,
so a batch only carries images and their indices. It is the loop's
:class:`~training.engine.loop.Objective`: besides the loss it names the loss components and
scores the validation split per head (accuracy and QWK).

* Teacher stage: one head, hard labels only, no feature term.
* Student stage: every head; hard label where the image has a grade for that head, else the
  teacher's soft label; plus the feature term.
* Fine-tuning: the student stage starting from the active student.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from model_zoo.architectures.student import SallStudent
from model_zoo.metrics import accuracy, quadratic_weighted_kappa
from training.engine.sall.fusion import FusionStudent
from training.engine.sall.losses import (
    HeadTargets,
    LossParts,
    SemanticLossConfig,
    hint_loss,
    make_adapters,
    sall_loss,
)
from training.engine.sall.soft_labels import TeacherOutputs
from training.protocol.config import FeatureTerm, TaskConfig, TrainConfig

PART_NAMES = ("loss", "hard", "soft", "kl", "feature")
"""Order of the components in the ``parts`` vector :meth:`SallObjective.forward` returns."""


@dataclass(frozen=True)
class Targets:
    """Supervision of one split, indexed by dataset position.

    Attributes:
        hard: ``[N, K]`` int64, one column per task in model order, -1 = no ground truth.
        teacher_logits: task -> ``[N, C_k]`` float32 raw teacher logits (zeros where absent).
        soft_mask: task -> ``[N]`` bool, rows supervised by the soft label on that head.
        teacher_features: teacher key -> ``[N, G]`` pooled teacher feature (``hint``).
    """

    hard: Tensor
    teacher_logits: dict[str, Tensor] = field(default_factory=dict)
    soft_mask: dict[str, Tensor] = field(default_factory=dict)
    teacher_features: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> Targets:
        """A copy on ``device`` (features in float32)."""
        return Targets(
            self.hard.to(device),
            {k: v.to(device) for k, v in self.teacher_logits.items()},
            {k: v.to(device) for k, v in self.soft_mask.items()},
            {k: v.to(device, torch.float32) for k, v in self.teacher_features.items()},
        )

    def heads(self, idx: Tensor, names: Sequence[str]) -> dict[str, HeadTargets]:
        """The batch's targets per head."""
        out = {}
        for k, name in enumerate(names):
            logits = self.teacher_logits.get(name)
            mask = self.soft_mask.get(name)
            out[name] = HeadTargets(
                hard=self.hard[idx, k],
                teacher_logits=None if logits is None else logits[idx],
                soft_mask=(torch.zeros_like(idx, dtype=torch.bool) if mask is None else mask[idx]),
            )
        return out

    @property
    def soft_counts(self) -> dict[str, int]:
        """Soft-labelled rows per head (for the log)."""
        return {k: int(v.sum()) for k, v in self.soft_mask.items()}


def build_targets(
    hard: NDArray[np.int64],
    tasks: Sequence[TaskConfig],
    teachers: Mapping[str, TeacherOutputs],
    *,
    feature_term: FeatureTerm,
    distil: NDArray[np.bool_] | None = None,
) -> Targets:
    """Supervision for the student stage.

    Args:
        hard: ``[N, K]`` labels from :func:`training.engine.data.resolve_labels`.
        tasks: the student's heads (column order of ``hard``).
        teachers: task -> outputs of that task's teacher on the same N images (row order equal);
            a teacher may be the parent student (fine-tuning without teachers), whose head of
            the same name is used.
        feature_term: ``hint`` keeps every teacher's features; other terms keep none.
        distil: ``[N]`` rows that also learn the teacher's soft label where they have a grade
            (a fine-tune's replay rows: the parent's view of its own domain is what forgetting
            loses, so it is kept as a target beside the grade).

    A human grade wins over the teacher: the soft label is used only where ``hard`` is -1
    (and on ``distil`` rows).
    """
    hard_t = torch.as_tensor(hard, dtype=torch.long)
    logits: dict[str, Tensor] = {}
    masks: dict[str, Tensor] = {}
    features: dict[str, Tensor] = {}
    for k, task in enumerate(tasks):
        outputs = teachers.get(task.name)
        if outputs is None:
            continue
        z = outputs.logits[task.name].float()
        if z.shape != (hard_t.shape[0], task.num_classes):
            raise ValueError(f"teacher logits for {task.name} have shape {tuple(z.shape)}")
        logits[task.name] = z
        masks[task.name] = hard_t[:, k] < 0
        if distil is not None:
            masks[task.name] |= torch.as_tensor(distil, dtype=torch.bool)
        if feature_term == "hint":
            features[task.name] = outputs.features
    return Targets(hard_t, logits, masks, features)


def semantic_config(cfg: TrainConfig) -> SemanticLossConfig:
    """The loss settings of ``cfg.sall``."""
    s = cfg.sall
    return SemanticLossConfig(
        temperature=s.temperature,
        teacher_temperature=s.teacher_temperature,
        hard_temperature=s.hard_temperature,
        kd_weight=s.kd_weight,
        kd_t2_scaling=s.kd_t2_scaling,
    )


class SallObjective(nn.Module):
    """Student (or teacher) + adapters + per-split targets; ``forward`` returns the loss.

    Args:
        model: the network being trained (saved in checkpoints).
        targets: split name (``train``, ``val``) -> supervision tensors.
        loss_cfg: semantic-term settings.
        feature_term: ``hint`` adds adapters and the hint term; ``none`` adds nothing.
        feature_weight: beta.
        teacher_dims: teacher key -> pooled feature width G_k (``hint`` only).
        live_teachers: frozen teachers whose features are computed per batch (``hint`` with
            augmentation, where cached features would not match the augmented image).
    """

    def __init__(
        self,
        model: SallStudent,
        targets: Mapping[str, Targets],
        loss_cfg: SemanticLossConfig,
        *,
        feature_term: FeatureTerm = "none",
        feature_weight: float = 0.0,
        teacher_dims: Mapping[str, int] | None = None,
        live_teachers: Mapping[str, SallStudent] | None = None,
    ) -> None:
        super().__init__()
        if feature_term == "fusion" and not isinstance(model, FusionStudent):
            raise ValueError("feature_term 'fusion' needs a fusion student")
        self.model = model
        self.targets = dict(targets)
        self.loss_cfg = loss_cfg
        self.feature_term = feature_term
        self.feature_weight = feature_weight
        self.task_names = [t.name for t in model.tasks]
        self.live_teachers = nn.ModuleDict(dict(live_teachers or {}))
        for teacher in self.live_teachers.values():
            teacher.eval().requires_grad_(False)
        dims = dict(teacher_dims or {}) if feature_term == "hint" else {}
        if feature_term == "hint":
            dims.update({k: t.feature_dim for k, t in (live_teachers or {}).items()})
        self.adapters = make_adapters(model.feature_dim, dims)

    def train(self, mode: bool = True) -> SallObjective:
        """Set training mode; frozen teachers always stay in eval mode (dropout off)."""
        super().train(mode)
        for teacher in self.live_teachers.values():
            teacher.eval()
        return self

    part_names = PART_NAMES
    """Names of the loss components in the ``parts`` vector :meth:`forward` returns."""

    @property
    def extra(self) -> nn.Module:
        """The ``hint`` adapters: trained with the network, saved with the optimiser state."""
        return self.adapters

    def move_targets(self, device: torch.device) -> None:
        """Put the supervision tensors on ``device`` (they are not parameters or buffers)."""
        self.targets = {k: v.to(device) for k, v in self.targets.items()}

    def place(self, device: torch.device, *, channels_last: bool) -> None:
        """Move the modules and the supervision to ``device`` (modules channels_last too)."""
        self.to(device)
        self.move_targets(device)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def metrics(
        self, split: str, predicted: Mapping[str, NDArray[np.int64]]
    ) -> dict[str, dict[str, float]]:
        """Per head: graded images ``n``, ``accuracy`` and ``qwk`` of the predicted grades.

        Args:
            split: whose hard labels to compare with.
            predicted: head -> predicted class of every image of ``split``, dataset order.
        """
        hard = self.targets[split].hard.cpu().numpy()
        out: dict[str, dict[str, float]] = {}
        for k, task in enumerate(self.model.tasks):
            y = hard[:, k]
            p = predicted.get(task.name, np.zeros(0, np.int64))
            out[task.name] = {
                "n": float((y >= 0).sum()),
                "accuracy": accuracy(y, p),
                "qwk": quadratic_weighted_kappa(y, p, task.num_classes),
            }
        return out

    def forward(
        self, x: Tensor, idx: Tensor, split: str
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Loss of a batch.

        Args:
            x: ``[B, 3, S, S]`` normalised images.
            idx: ``[B]`` int64 dataset positions of the images in ``split``.
            split: which targets to use.

        Returns:
            ``(total loss, detached [5] vector in PART_NAMES order, logits per head)``.
        """
        targets = self.targets[split]
        if isinstance(self.model, FusionStudent):
            # Training feeds each head the teacher's soft prediction of the other task.
            tau = self.loss_cfg.teacher_temperature
            probs = {
                k: torch.softmax(v[idx].float() / tau, 1) for k, v in targets.teacher_logits.items()
            }
            out = self.model(x, probs)
        else:
            out = self.model(x)
        heads = targets.heads(idx, self.task_names)
        feature: Tensor | None = None
        if self.feature_term == "hint" and len(self.adapters):
            if len(self.live_teachers):
                with torch.no_grad():
                    hints = {k: _features(t, x) for k, t in self.live_teachers.items()}
            else:
                hints = {k: v[idx] for k, v in targets.teacher_features.items()}
            if hints:
                feature = hint_loss(out.features, self.adapters, hints)
        parts: LossParts = sall_loss(
            out.logits, heads, self.loss_cfg, feature=feature, feature_weight=self.feature_weight
        )
        vector = torch.stack(
            [parts.total.detach(), parts.hard, parts.soft, parts.kl, parts.feature]
        )
        return parts.total, vector, out.logits


def _features(teacher: nn.Module, x: Tensor) -> Tensor:
    if not isinstance(teacher, SallStudent):
        raise TypeError(f"a teacher must be a SallStudent, got {type(teacher).__name__}")
    return teacher.forward_features(x)


__all__ = ["PART_NAMES", "SallObjective", "Targets", "build_targets", "semantic_config"]
