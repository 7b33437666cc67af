"""Building networks and model cards from a ``TrainConfig`` (one place, so every stage agrees).

Mean, std and interpolation come from the backbone's pretrained-weights metadata
(``model_zoo.architectures.backbones.data_config``), never typed in (docs/sall-method.md,
Model). The input size comes from the config. Every card carries the full config, the manifest
digest, the seed and library versions (R12).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from model_zoo.architectures.backbones import data_config
from model_zoo.architectures.student import SallStudent
from model_zoo.architectures.tasks import DEFAULT_GRADING_SCALES, TaskSpec
from model_zoo.cards import ModelCard, Provenance, current_versions
from model_zoo.registry import get_backbone_entry, get_model
from training.engine.sall.fusion import ARCHITECTURE as FUSION_ARCHITECTURE
from training.protocol.config import ConfigError, TaskConfig, TrainConfig

ARCHITECTURE = "sall_student"
DEFAULT_INTENDED_USE = (
    "Research use only: a locally trained model, not a medical device; a grader confirms "
    "every grade."
)
DEFAULT_LICENCE = "Trained locally; use under the terms of the training data."


def task_specs(tasks: Sequence[TaskConfig]) -> tuple[TaskSpec, ...]:
    """model_zoo ``TaskSpec`` values for config tasks."""
    return tuple(TaskSpec(t.name, tuple(t.classes)) for t in tasks)


def check_backbone(cfg: TrainConfig) -> None:
    """Raise ``ConfigError`` for an unknown backbone or an input smaller than it accepts."""
    try:
        entry = get_backbone_entry(cfg.model.backbone)
    except ValueError as exc:
        raise ConfigError(f"model.backbone: {exc}") from None
    if cfg.model.input_size < entry.min_input_size:
        raise ConfigError(
            f"model.input_size {cfg.model.input_size} is below {entry.min_input_size}, the "
            f"smallest input {cfg.model.backbone} accepts"
        )


def architecture_for(cfg: TrainConfig, tasks: Sequence[TaskConfig]) -> str:
    """``sall_fusion_student`` for a two-head student with ``feature_term = "fusion"``."""
    if cfg.sall.feature_term == "fusion" and len(tasks) == 2:
        return FUSION_ARCHITECTURE
    return ARCHITECTURE


def build_model(cfg: TrainConfig, tasks: Sequence[TaskConfig]) -> SallStudent:
    """A fresh student (or teacher) with the config's backbone and dropout and these heads."""
    check_backbone(cfg)
    model = get_model(
        architecture_for(cfg, tasks),
        backbone=cfg.model.backbone,
        tasks=task_specs(tasks),
        pretrained=cfg.model.pretrained,
        dropout=cfg.model.dropout,
    )
    if not isinstance(model, SallStudent):
        raise TypeError(f"{ARCHITECTURE} built a {type(model).__name__}")
    return model


def build_card(
    cfg: TrainConfig,
    tasks: Sequence[TaskConfig],
    *,
    name: str,
    run_id: str,
    manifest_digest: str,
    parent_id: str | None = None,
    teacher_ids: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    temperatures: Mapping[str, float] | None = None,
    intended_use: str = DEFAULT_INTENDED_USE,
    licence: str = DEFAULT_LICENCE,
) -> ModelCard:
    """The card of a model trained by this run (``id`` empty until saved).

    Args:
        cfg: the run configuration (saved whole in the provenance).
        tasks: the model's heads.
        name: human name, e.g. ``"SALL student (resnet18)"``.
        run_id: training run id.
        manifest_digest: SHA-256 of the training manifest text.
        parent_id: model id it was fine-tuned from.
        teacher_ids: ids of the teachers it was distilled from.
        metrics: JSON figures for the provenance (finite numbers or None).
        temperatures: head -> T_cal (1.0 when not calibrated).
        intended_use: text shown with the model.
        licence: licence of the weights.
    """
    dc = data_config(cfg.model.backbone)
    specs = task_specs(tasks)
    temps = {t.name: float((temperatures or {}).get(t.name, 1.0)) for t in specs}
    return ModelCard(
        id="",
        name=name,
        version=run_id[:12] or "1",
        architecture=architecture_for(cfg, tasks),
        architecture_kwargs={
            "backbone": cfg.model.backbone,
            "dropout": cfg.model.dropout,
            "pretrained": cfg.model.pretrained,
        },
        tasks=specs,
        grading_scales={t.name: DEFAULT_GRADING_SCALES.get(t.name, t.name) for t in specs},
        input_size=cfg.model.input_size,
        mean=dc.mean,
        std=dc.std,
        interpolation=dc.interpolation,
        preprocessing={"fundus_crop": cfg.sall.fundus_crop},
        temperatures=temps,
        provenance=Provenance(
            parent_id=parent_id,
            training_run_id=run_id,
            manifest_digest=manifest_digest,
            config=cfg.to_dict(),
            metrics=dict(metrics or {}),
            teacher_ids=tuple(teacher_ids),
            seed=cfg.runtime.seed,
            versions=current_versions(),
        ),
        licence=licence,
        intended_use=intended_use,
    )


__all__ = [
    "ARCHITECTURE",
    "DEFAULT_INTENDED_USE",
    "DEFAULT_LICENCE",
    "architecture_for",
    "build_card",
    "build_model",
    "check_backbone",
    "task_specs",
]
