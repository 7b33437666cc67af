"""The SALL loss (docs/sall-method.md): hard CE, temperature distillation, the feature term.

For a batch of size ``B`` and every head ``k``::

    L_sem  = sum_k (1/B) [ sum_{x in H_k} CE(e_y, softmax(s_k / T_h))
                           + lambda * w * sum_{x in S_k} CE(q_k, softmax(s_k / T)) ]
    q_k    = softmax(z_k^teacher / tau),  w = T^2 if kd_t2_scaling else 1
    L_feat = sum_k (1/B) sum_x || n(A_k f(x)) - n(g_k(x)) ||^2,   n(v) = v / ||v||
    L      = L_sem + beta * L_feat

``H_k`` are the batch images with a ground truth for head ``k`` (label >= 0), ``S_k`` those that
carry a teacher soft label instead. Every sum is divided by the FULL batch size ``B``, never by
``|H_k|`` or ``|S_k|`` (the authors' code averages each output's cross-entropy over the whole
batch and sums outputs with unit weights). An image with neither target on a head (e.g.
ungradable) contributes nothing there but still counts in ``B``.

The soft CE equals KL(q || p) + H(q); with frozen teachers H(q) is a constant, so the gradients
are those of KL distillation. The KL value is returned next to the loss because it reaches 0 at a
perfect match and so is the number worth plotting.

Losses are computed in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

UNKNOWN = -1
"""Hard-label value meaning "no ground truth for this head"."""


@dataclass(frozen=True)
class SemanticLossConfig:
    """Temperatures and weights of :func:`semantic_loss` (keys ``sall.*`` of ``TrainConfig``).

    Attributes:
        temperature: T, student softening in the soft term (> 0).
        teacher_temperature: tau, softening of teacher logits into q (> 0).
        hard_temperature: T_h, softening in the hard term (> 0).
        kd_weight: lambda, weight of the soft term.
        kd_t2_scaling: multiply the soft term by T^2.
    """

    temperature: float = 3.0
    teacher_temperature: float = 3.0
    hard_temperature: float = 3.0
    kd_weight: float = 1.0
    kd_t2_scaling: bool = False

    @property
    def soft_scale(self) -> float:
        """lambda * w, the factor in front of the soft term."""
        w = self.temperature**2 if self.kd_t2_scaling else 1.0
        return self.kd_weight * w


@dataclass(frozen=True)
class HeadTargets:
    """Supervision of one head for a batch.

    Attributes:
        hard: ``[B]`` int64 class index, :data:`UNKNOWN` (-1) where the image has no grade.
        teacher_logits: ``[B, C]`` raw teacher logits, or ``None`` when no image has one.
        soft_mask: ``[B]`` bool, True where the soft label supervises the head. Must be False
            wherever ``hard`` is known (a human grade wins over the teacher).
    """

    hard: Tensor
    teacher_logits: Tensor | None
    soft_mask: Tensor


@dataclass(frozen=True)
class LossParts:
    """The loss and its components, each already divided by ``B`` and summed over heads.

    Attributes:
        total: scalar to back-propagate (``sem + beta * feature``).
        hard: detached hard-CE term.
        soft: detached, weighted soft-CE term (lambda * w included).
        kl: detached, unweighted KL(q || p) summed over soft-labelled images / B.
        feature: detached, unweighted feature term (0 when unused).
    """

    total: Tensor
    hard: Tensor
    soft: Tensor
    kl: Tensor
    feature: Tensor

    def as_floats(self) -> dict[str, float]:
        """Python floats for logging (synchronises with the device)."""
        return {
            "loss": float(self.total.detach()),
            "hard": float(self.hard),
            "soft": float(self.soft),
            "kl": float(self.kl),
            "feature": float(self.feature),
        }


def hard_ce_sum(logits: Tensor, labels: Tensor, hard_temperature: float) -> Tensor:
    """Sum over known labels of ``-log softmax(logits / T_h)[y]``.

    Args:
        logits: ``[B, C]`` student logits.
        labels: ``[B]`` int64 classes, -1 = unknown (skipped).
        hard_temperature: T_h > 0.

    Returns:
        Scalar float32 sum (0 when no label is known).
    """
    scaled = logits.float() / hard_temperature
    return F.cross_entropy(scaled, labels, ignore_index=UNKNOWN, reduction="sum")


def soft_ce_kl_sum(
    logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    *,
    temperature: float,
    teacher_temperature: float,
) -> tuple[Tensor, Tensor]:
    """Soft-target cross-entropy and KL, summed over the images selected by ``mask``.

    Args:
        logits: ``[B, C]`` student logits s.
        teacher_logits: ``[B, C]`` teacher logits z (rows outside ``mask`` may hold anything
            finite).
        mask: ``[B]`` bool.
        temperature: T for the student.
        teacher_temperature: tau for the teacher.

    Returns:
        ``(sum CE(q, p), sum KL(q || p))`` with ``q = softmax(z / tau)``, ``p = softmax(s / T)``.
    """
    log_p = F.log_softmax(logits.float() / temperature, dim=1)
    log_q = F.log_softmax(teacher_logits.float() / teacher_temperature, dim=1)
    q = log_q.exp()
    weight = mask.to(log_p.dtype).unsqueeze(1)
    ce = -(weight * q * log_p).sum()
    kl = (weight * q * (log_q - log_p)).sum()
    return ce, kl


def semantic_loss(
    logits: Mapping[str, Tensor], targets: Mapping[str, HeadTargets], cfg: SemanticLossConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """The semantic-space term ``L_sem`` summed over heads.

    Args:
        logits: head name -> ``[B, C_k]`` student logits.
        targets: head name -> its :class:`HeadTargets` (heads without targets are skipped).
        cfg: temperatures and weights.

    Returns:
        ``(hard, weighted_soft, kl)``, each a scalar already divided by the full batch ``B``.
        ``hard + weighted_soft`` is ``L_sem``; ``kl`` is for logging.
    """
    first = next(iter(logits.values()))
    batch = first.shape[0]
    zero = first.new_zeros((), dtype=torch.float32)
    hard, soft, kl = zero, zero, zero
    for name, target in targets.items():
        s = logits[name]
        if s.shape[0] != batch or target.hard.shape != (batch,):
            raise ValueError(f"head {name}: logits {tuple(s.shape)} vs labels {target.hard.shape}")
        hard = hard + hard_ce_sum(s, target.hard, cfg.hard_temperature)
        if target.teacher_logits is not None:
            ce, kl_k = soft_ce_kl_sum(
                s,
                target.teacher_logits,
                target.soft_mask,
                temperature=cfg.temperature,
                teacher_temperature=cfg.teacher_temperature,
            )
            soft = soft + ce
            kl = kl + kl_k
    return hard / batch, cfg.soft_scale * soft / batch, kl / batch


def normalise(v: Tensor, eps: float = 1e-12) -> Tensor:
    """``v / ||v||_2`` along the last dimension (a zero vector stays zero)."""
    norm: Tensor = v.norm(dim=-1, keepdim=True).clamp_min(eps)
    return v / norm


def hint_loss(
    student_features: Tensor, adapters: nn.ModuleDict, teacher_features: Mapping[str, Tensor]
) -> Tensor:
    """Feature hints to frozen teachers: ``sum_k mean_x ||n(A_k f(x)) - n(g_k(x))||^2``.

    Args:
        student_features: ``[B, F]`` pooled student feature f(x).
        adapters: teacher name -> trainable ``nn.Linear(F, G_k)`` adapter A_k.
        teacher_features: teacher name -> ``[B, G_k]`` pooled teacher feature g_k(x); detached
            here whatever the caller passes.

    Returns:
        Scalar float32 term (each squared distance lies in [0, 4]).
    """
    f = student_features.float()
    batch = f.shape[0]
    total = f.new_zeros(())
    for name, g in teacher_features.items():
        adapter = adapters[name]
        projected = normalise(adapter(f).float())
        target = normalise(g.detach().float())
        total = total + ((projected - target) ** 2).sum() / batch
    return total


def make_adapters(student_dim: int, teacher_dims: Mapping[str, int]) -> nn.ModuleDict:
    """One trainable linear adapter ``F -> G_k`` per teacher (discarded after training)."""
    return nn.ModuleDict({k: nn.Linear(student_dim, g) for k, g in teacher_dims.items()})


def sall_loss(
    logits: Mapping[str, Tensor],
    targets: Mapping[str, HeadTargets],
    cfg: SemanticLossConfig,
    *,
    feature: Tensor | None = None,
    feature_weight: float = 0.0,
) -> LossParts:
    """``L = L_sem + beta * L_feat``, with every component for logging.

    Args:
        logits: head name -> ``[B, C_k]`` student logits.
        targets: head name -> supervision.
        cfg: semantic-term settings.
        feature: the feature term (e.g. from :func:`hint_loss`), or ``None`` for ``none``.
        feature_weight: beta.

    Returns:
        The total and its detached components.
    """
    hard, soft, kl = semantic_loss(logits, targets, cfg)
    total = hard + soft
    feat = hard.new_zeros(())
    if feature is not None:
        feat = feature.float()
        total = total + feature_weight * feat
    return LossParts(total, hard.detach(), soft.detach(), kl.detach(), feat.detach())


__all__ = [
    "UNKNOWN",
    "HeadTargets",
    "LossParts",
    "SemanticLossConfig",
    "hard_ce_sum",
    "hint_loss",
    "make_adapters",
    "normalise",
    "sall_loss",
    "semantic_loss",
    "soft_ce_kl_sum",
]
