"""``[finetune]``: the one-click fine-tune's recipe and its promotion gate.

The defaults are what the loop benchmark (``benchmarks/loop_curve.py``, ``docs/loop-benchmark.md``)
showed to learn from a few hundred corrections of a new clinic without forgetting the parent's
own camera, which is where the evidence is. ``sall-train finetune`` with no config and no
``--set`` is exactly what the GUI's button runs. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

FinetuneAugment: TypeAlias = Literal["none", "basic", "camera"]
FinetuneFeatureTerm: TypeAlias = Literal["hint", "none"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        from training.protocol.config import ConfigError

        raise ConfigError(message)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning from grader corrections and its promotion gate.

    The optimiser of a fine-tune is Adam with these values, not ``[optim]``'s, which describe
    training from scratch (the paper's lr 1e-5 for 32 epochs barely moves a model in the tens
    of steps a few hundred corrections give).

    Attributes:
        max_epochs: epoch limit; an epoch is one pass over the corrections and their replay.
        lr: peak learning rate (cosine decay to ``lr * min_lr_ratio`` after a linear warm-up).
        warmup_epochs: warm-up length in epochs.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        patience: early stop after this many epochs without a better validation loss (the best
            epoch is kept).
        augment: ``camera`` adds another camera's rendition (defocus, flash, vignetting,
            colour cast, tone curve) to ``basic`` flips, rotation and jitter; ``none`` is off.
        replay_ratio: images of the parent's replay set per corrected image.
        replay_share: fraction of each epoch's draws taken from the replay images (the rest
            from the corrections), whatever the two sets' sizes.
        replay_distil: replay images also learn the parent's own soft labels beside their
            grades (learning without forgetting), which keeps the parent's domain.
        feature_term: ``none`` or the SALL ``hint`` term through new adapters.
        adapt_teacher: where the parent plays the teacher (no teacher of the lineage), its soft
            labels for the grader's images come from a copy with BatchNorm statistics
            re-estimated on those images (``training/engine/adapted_teacher.py``).
        max_qwk_drop: gate margin: a head's QWK passes when the lower end of the confidence
            interval of candidate minus parent is above ``-max_qwk_drop``.
        sensitivity_margin: the same margin for referable-DR sensitivity.
        min_images: fewest graded images per head and set the gate decides on.
        min_referable: fewest referable-DR images per set the sensitivity check decides on.
        bootstrap: paired bootstrap resamples behind each confidence interval.
        confidence: two-sided level of the intervals.
    """

    max_epochs: int = 15
    lr: float = 1e-3
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.05
    patience: int = 6
    augment: FinetuneAugment = "camera"
    replay_ratio: float = 1.0
    replay_share: float = 0.5
    replay_distil: bool = True
    feature_term: FinetuneFeatureTerm = "none"
    adapt_teacher: bool = True
    max_qwk_drop: float = 0.10
    sensitivity_margin: float = 0.10
    min_images: int = 60
    min_referable: int = 15
    bootstrap: int = 1000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        _check(self.max_epochs >= 1, "finetune.max_epochs must be >= 1")
        _check(math.isfinite(self.lr) and self.lr > 0, "finetune.lr must be > 0")
        _check(self.warmup_epochs >= 0, "finetune.warmup_epochs must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "finetune.min_lr_ratio must be in [0, 1]")
        _check(self.patience >= 1, "finetune.patience must be >= 1")
        _check(self.replay_ratio >= 0, "finetune.replay_ratio must be >= 0")
        _check(0 <= self.replay_share < 1, "finetune.replay_share must be in [0, 1)")
        _check(self.max_qwk_drop >= 0, "finetune.max_qwk_drop must be >= 0")
        _check(self.sensitivity_margin >= 0, "finetune.sensitivity_margin must be >= 0")
        _check(self.min_images >= 1, "finetune.min_images must be >= 1")
        _check(self.min_referable >= 1, "finetune.min_referable must be >= 1")
        _check(self.bootstrap >= 100, "finetune.bootstrap must be >= 100")
        _check(0.5 < self.confidence < 1, "finetune.confidence must be in (0.5, 1)")


__all__ = ["FinetuneAugment", "FinetuneConfig", "FinetuneFeatureTerm"]
