"""The three SALL stages as functions (docs/sall-method.md), shared by the CLI sub-commands.

1. :func:`train_teacher`: a single-task model per disease on that disease's labelled images
   (also the single-task baseline).
2. :func:`soft_labels`: each teacher over every training and validation image; logits and
   pooled features cached by (image SHA-256, teacher id, preprocessing digest).
3. :func:`train_student`: the multi-task student on the union: hard CE on each image's own
   tasks, temperature distillation on the other task's teacher soft labels, and the feature term.

:func:`calibrated_card` fits T_cal on the validation split and :func:`save_model` saves the
run's result; :func:`run_sall` chains everything and writes the evaluation report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_zoo.architectures.student import SallStudent
from model_zoo.cards import ModelCard
from model_zoo.checkpoints import load_checkpoint, save_checkpoint
from training.engine.data import (
    ImageDataset,
    preload_fits,
    resolve_labels,
    sampling_weights,
    select_rows,
)
from training.engine.evaluate import (
    calibrate,
    card_metrics,
    config_tasks,
    evaluation,
    predict,
    write_report,
)
from training.engine.loop import Cancelled, FitResult, RunContext, fit
from training.engine.loop_setup import seed_everything
from training.engine.model_sets import REFERENCE, REPLAY, record_sets
from training.engine.models import DEFAULT_INTENDED_USE, build_card, build_model
from training.engine.sall.objective import SallObjective, Targets, build_targets, semantic_config
from training.engine.sall.soft_labels import StopRequested, TeacherOutputs, ensure_outputs
from training.engine.state import read_state
from training.protocol.config import TaskConfig, TrainConfig
from training.protocol.events import utc_timestamp
from training.protocol.manifest import ManifestRow
from training.protocol.report import EpochRecord, Report

log = logging.getLogger("training")

MODEL_DIRNAME = "model"
SOFT_LABEL_DIRNAME = "soft-labels"


@dataclass(frozen=True)
class RunInputs:
    """What every stage reads.

    Attributes:
        cfg: run configuration.
        rows: every row of the frozen manifest.
        base_dir: folder relative image paths are resolved against (the manifest's).
        manifest_digest: SHA-256 of the manifest text.
        ctx: run context (folder, events, stop flag, device, DDP rank).
        resume: continue stages from their saved state.
        intended_use: text for the cards.
    """

    cfg: TrainConfig
    rows: Sequence[ManifestRow]
    base_dir: Path
    manifest_digest: str
    ctx: RunContext
    resume: bool = False
    intended_use: str = ""


@dataclass(frozen=True)
class Trained:
    """A network and its card (from a finished stage or a checkpoint on disk)."""

    model: SallStudent
    card: ModelCard
    history: tuple[EpochRecord, ...] = ()


@dataclass(frozen=True)
class SallResult:
    """What :func:`run_sall` produced.

    Attributes:
        card: the exported student's card.
        report_path: ``report.json``, None when there is no test split.
        teachers: task -> the teacher's best checkpoint folder relative to the run folder.
        teacher_ids: task -> that teacher's weights SHA-256 (its card id).
    """

    card: ModelCard
    report_path: Path | None
    teachers: dict[str, str]
    teacher_ids: dict[str, str]


def best_checkpoint_path(inp: RunInputs, stage: str) -> str:
    """The best checkpoint of ``stage`` relative to the run folder (``/``-separated), or ""."""
    state = read_state(inp.ctx.run_dir / stage)
    return f"{stage}/{state.best}" if state is not None and state.best else ""


def _datasets(
    inp: RunInputs,
    train_rows: Sequence[ManifestRow],
    val_rows: Sequence[ManifestRow],
    card: ModelCard,
    *,
    camera: bool = False,
) -> tuple[ImageDataset, ImageDataset | None]:
    cfg = inp.cfg
    preload = preload_fits(
        len(train_rows) + len(val_rows), card.input_size, cfg.runtime.preload_max_mb
    )
    train = ImageDataset(
        train_rows, inp.base_dir, card, augment=cfg.sall.augment, camera=camera, preload=preload
    )
    val = ImageDataset(val_rows, inp.base_dir, card, preload=preload) if val_rows else None
    return train, val


def _finished(inp: RunInputs, stage: str) -> Trained | None:
    """The result of a stage that already completed (``--resume`` skips it)."""
    if not inp.resume:
        return None
    state = read_state(inp.ctx.run_dir / stage)
    if state is None or not state.finished or not state.best:
        return None
    model, card = load_checkpoint(inp.ctx.run_dir / stage / state.best, device="cpu")
    if not isinstance(model, SallStudent):
        raise TypeError(f"stage {stage} saved a {type(model).__name__}")
    log.info("stage %s already finished; using its best checkpoint", stage)
    return Trained(model, card, tuple(EpochRecord(**h) for h in state.history))


def train_teacher(
    inp: RunInputs, task: TaskConfig, *, stage_index: int = 0, stage_total: int = 1
) -> Trained:
    """Stage 1: train the single-task teacher of ``task`` on the images labelled for it.

    Labels are the images' own grades (:func:`resolve_labels`: a blank grade is no label, so a
    normal eye trains this teacher only where it is graded for ``task``). The loss is the
    hard-label CE at ``sall.hard_temperature`` with the student's optimiser recipe.
    """
    stage = f"teacher-{task.name}"
    done = _finished(inp, stage)
    if done is not None:
        return done
    cfg = inp.cfg
    tasks = list(cfg.sall.tasks)
    k = [t.name for t in tasks].index(task.name)
    splits: dict[str, list[ManifestRow]] = {}
    labels = {}
    for split in ("train", "val"):
        rows = select_rows(inp.rows, [split])
        hard = resolve_labels(rows, tasks, cfg.sall.normal_policy)
        keep = hard[:, k] >= 0
        splits[split] = [r for r, kept in zip(rows, keep, strict=True) if kept]
        labels[split] = hard[keep][:, [k]]
    if not splits["train"]:
        raise ValueError(f"the manifest has no training image labelled for {task.name}")
    seed_everything(cfg.runtime.seed, deterministic=cfg.runtime.deterministic)
    model = build_model(cfg, [task])
    card = build_card(
        cfg,
        [task],
        name=f"{task.name.upper()} teacher ({cfg.model.backbone})",
        run_id=inp.ctx.run_id,
        manifest_digest=inp.manifest_digest,
        intended_use=inp.intended_use or DEFAULT_INTENDED_USE,
    )
    train, val = _datasets(inp, splits["train"], splits["val"], card)
    targets = {s: Targets(torch.as_tensor(labels[s])) for s in ("train", "val")}
    objective = SallObjective(model, targets, semantic_config(cfg), feature_term="none")
    result = fit(
        stage=stage,
        objective=objective,
        train=train,
        val=val,
        sampling_weights=sampling_weights(labels["train"], cfg.sall.sampler, [task]),
        card=card,
        cfg=cfg,
        ctx=inp.ctx,
        max_epochs=cfg.optim.max_epochs,
        resume=inp.resume,
        stage_index=stage_index,
        stage_total=stage_total,
    )
    return Trained(model, result.card, result.history)


def soft_labels(
    inp: RunInputs, teachers: Mapping[str, Trained], *, cache_dir: Path | None = None
) -> dict[str, TeacherOutputs]:
    """Stage 2: every teacher's logits and features on every training and validation image.

    Returns:
        Task name -> that task's teacher outputs, rows in manifest order of the gradable
        ``train`` + ``val`` rows.
    """
    cache = cache_dir or inp.ctx.run_dir / SOFT_LABEL_DIRNAME
    rows = select_rows(inp.rows, ["train", "val"])
    out: dict[str, TeacherOutputs] = {}
    for task, teacher in teachers.items():
        dataset = ImageDataset(rows, inp.base_dir, teacher.card, augment=False, preload=False)
        try:
            outputs, computed = ensure_outputs(
                cache,
                teacher.model,
                teacher.card,
                dataset,
                device=inp.ctx.device,
                batch_size=max(1, inp.cfg.optim.batch_size),
                should_stop=lambda: inp.ctx.stop.requested,
            )
        except StopRequested:
            raise Cancelled(SOFT_LABEL_DIRNAME, "") from None
        log.info("soft labels of %s: %d images (%d computed now)", task, len(rows), computed)
        out[task] = outputs
    return out


def train_student(
    inp: RunInputs,
    outputs: Mapping[str, TeacherOutputs],
    *,
    teacher_ids: Sequence[str],
    init: SallStudent | None = None,
    parent_id: str | None = None,
    stage: str = "student",
    max_epochs: int | None = None,
    train_rows: Sequence[ManifestRow] | None = None,
    val_rows: Sequence[ManifestRow] | None = None,
    live_teachers: Mapping[str, SallStudent] | None = None,
    stage_index: int = 0,
    stage_total: int = 1,
    camera_augment: bool = False,
    sample_weights: Sequence[float] | None = None,
    distil_train: Sequence[bool] | None = None,
) -> Trained:
    """Stage 3: the multi-task student (or a fine-tune of it when ``init`` is given).

    Args:
        inp: run inputs.
        outputs: task -> teacher outputs covering every training and validation image.
        teacher_ids: ids recorded in the card's provenance.
        init: start from this network instead of a fresh one (fine-tuning).
        parent_id: id of ``init``'s model.
        stage: stage name.
        max_epochs: epoch limit (default ``optim.max_epochs``).
        train_rows: training rows (default: the manifest's gradable ``train`` rows).
        val_rows: validation rows (default: the manifest's gradable ``val`` rows).
        live_teachers: frozen teachers for on-the-fly hints (augmentation on).
        stage_index: position of the stage in the command.
        stage_total: stages in the command.
        camera_augment: with ``sall.augment``, also vary the camera's rendition.
        sample_weights: per training row sampling weights, instead of ``sall.sampler``'s
            (a fine-tune balances corrections against replay with them).
        distil_train: per training row, also learn the teacher's soft label beside a grade
            (a fine-tune's replay rows).
    """
    done = _finished(inp, stage)
    if done is not None:
        return done
    cfg = inp.cfg
    tasks = list(cfg.sall.tasks)
    train_rows = list(train_rows if train_rows is not None else select_rows(inp.rows, ["train"]))
    val_rows = list(val_rows if val_rows is not None else select_rows(inp.rows, ["val"]))
    if not train_rows:
        raise ValueError("the manifest has no gradable training image")
    targets: dict[str, Targets] = {}
    hard_train = resolve_labels(train_rows, tasks, cfg.sall.normal_policy)
    feature_term = cfg.sall.feature_term
    for split, rows in (("train", train_rows), ("val", val_rows)):
        hard = resolve_labels(rows, tasks, cfg.sall.normal_policy)
        shas = [r.sha256 for r in rows]
        selected = {k: v.select(shas) for k, v in outputs.items()}
        use_cache = feature_term if not live_teachers else "none"
        distil = (
            np.asarray(distil_train, dtype=bool)
            if split == "train" and distil_train is not None
            else None
        )
        targets[split] = build_targets(hard, tasks, selected, feature_term=use_cache, distil=distil)
    seed_everything(cfg.runtime.seed, deterministic=cfg.runtime.deterministic)
    model = init if init is not None else build_model(cfg, tasks)
    card = build_card(
        cfg,
        tasks,
        name=f"SALL student ({cfg.model.backbone})",
        run_id=inp.ctx.run_id,
        manifest_digest=inp.manifest_digest,
        parent_id=parent_id,
        teacher_ids=[t for t in teacher_ids if t != parent_id],
        intended_use=inp.intended_use or DEFAULT_INTENDED_USE,
    )
    train, val = _datasets(inp, train_rows, val_rows, card, camera=camera_augment)
    dims = {k: int(v.features.shape[1]) for k, v in outputs.items()}
    objective = SallObjective(
        model,
        targets,
        semantic_config(cfg),
        feature_term=feature_term,
        feature_weight=cfg.sall.feature_weight,
        teacher_dims=dims if not live_teachers else None,
        live_teachers=live_teachers,
    )
    log.info(
        "%s: %d training images, %d validation images, soft labels per head %s",
        stage,
        len(train_rows),
        len(val_rows),
        targets["train"].soft_counts,
    )
    result: FitResult = fit(
        stage=stage,
        objective=objective,
        train=train,
        val=val,
        sampling_weights=(
            np.asarray(sample_weights, dtype=np.float64)
            if sample_weights is not None
            else sampling_weights(hard_train, cfg.sall.sampler, tasks)
        ),
        card=card,
        cfg=cfg,
        ctx=inp.ctx,
        max_epochs=max_epochs or cfg.optim.max_epochs,
        resume=inp.resume,
        stage_index=stage_index,
        stage_total=stage_total,
    )
    return Trained(model, result.card, result.history)


def calibrated_card(
    inp: RunInputs, trained: Trained, *, fallback: Mapping[str, float] | None = None
) -> ModelCard:
    """``trained.card`` with T_cal per head fitted by NLL on the validation split.

    Without validation images the ``fallback`` temperatures are kept (a fine-tune inherits its
    parent's), else 1.0.
    """
    tasks = config_tasks(trained.card)
    val_rows = select_rows(inp.rows, ["val"])
    temps = {t.name: float((fallback or {}).get(t.name, 1.0)) for t in tasks}
    if val_rows:
        preds = predict(
            trained.model, trained.card, val_rows, inp.base_dir, cfg=inp.cfg, device=inp.ctx.device
        )
        temps = calibrate(preds, tasks)
    return trained.card.replace(temperatures=temps)


def save_model(
    inp: RunInputs,
    model: SallStudent,
    card: ModelCard,
    *,
    out_dir: Path,
    metrics: Mapping[str, object] | None = None,
) -> ModelCard:
    """Save ``model`` with ``card`` (plus ``metrics`` in its provenance) as the run's result."""
    provenance = card.provenance
    merged = {**provenance.metrics, **(metrics or {})}
    final = card.replace(id="", provenance=dataclasses.replace(provenance, metrics=merged))
    if inp.ctx.rank != 0:
        return final
    return save_checkpoint(model, final, out_dir)


def evaluate_and_report(
    inp: RunInputs,
    model: SallStudent,
    card: ModelCard,
    *,
    split: str,
    out_dir: Path,
    kind: str,
    history: Sequence[EpochRecord] = (),
    notes: Sequence[str] = (),
    teachers: Mapping[str, str] | None = None,
    teacher_ids: Mapping[str, str] | None = None,
) -> tuple[Path, Report]:
    """Evaluate ``model`` on ``split`` (temperatures from its card) and write the report.

    ``teachers`` / ``teacher_ids`` (task -> checkpoint folder / card id) name the teachers the
    run trained, for the report.
    """
    rows = select_rows(inp.rows, [split])
    preds = predict(model, card, rows, inp.base_dir, cfg=inp.cfg, device=inp.ctx.device)
    result = evaluation(card, preds, card.temperatures, split=split, cfg=inp.cfg)
    report = Report(
        kind=kind,  # type: ignore[arg-type]
        run_id=inp.ctx.run_id,
        created_at=utc_timestamp(),
        manifest_digest=inp.manifest_digest,
        model=result,
        notes=tuple(notes),
        teachers=dict(teachers or {}),
        teacher_ids=dict(teacher_ids or {}),
    )
    path = write_report(
        out_dir,
        report,
        predictions=preds,
        card=card,
        history=history,
        plots_enabled=inp.cfg.eval.plots,
    )
    return path, report


def run_sall(inp: RunInputs) -> SallResult:
    """``sall``: teachers, soft labels, student, calibration, export and test report.

    Returns:
        The exported student's card, the report path (None when there is no test split) and the
        teachers' best checkpoints, which the report and ``run_finished`` name.
    """
    cfg = inp.cfg
    tasks = list(cfg.sall.tasks)
    total = len(tasks) + 1
    teachers = {
        t.name: train_teacher(inp, t, stage_index=i, stage_total=total) for i, t in enumerate(tasks)
    }
    teacher_paths = {k: best_checkpoint_path(inp, f"teacher-{k}") for k in teachers}
    teacher_ids = {k: t.card.id for k, t in teachers.items()}
    outputs = soft_labels(inp, teachers)
    live = None
    if cfg.sall.augment and cfg.sall.feature_term == "hint":
        live = {k: t.model for k, t in teachers.items()}
    student = train_student(
        inp,
        outputs,
        teacher_ids=[t.card.id for t in teachers.values()],
        live_teachers=live,
        stage_index=len(tasks),
        stage_total=total,
    )
    history = tuple(h for t in teachers.values() for h in t.history) + student.history
    card = calibrated_card(inp, student)
    report_path = None
    metrics: dict[str, object] = {"calibration_split": "val"}
    if inp.ctx.rank == 0 and select_rows(inp.rows, ["test"]):
        report_path, report = evaluate_and_report(
            inp,
            student.model,
            card,
            split="test",
            out_dir=inp.ctx.run_dir,
            kind="sall",
            history=history,
            teachers=teacher_paths,
            teacher_ids=teacher_ids,
        )
        metrics["test"] = card_metrics(report.model)
    model_dir = inp.ctx.run_dir / MODEL_DIRNAME
    card = save_model(inp, student.model, card, out_dir=model_dir, metrics=metrics)
    if inp.ctx.rank == 0:  # what a later fine-tune replays and is gated on (model_sets)
        splits = {REPLAY: ["train"], REFERENCE: ["test"]}
        chosen = {k: (select_rows(inp.rows, v), inp.base_dir) for k, v in splits.items()}
        record_sets(model_dir, card, chosen, seed=inp.cfg.runtime.seed)
    return SallResult(card, report_path, teacher_paths, teacher_ids)


__all__ = [
    "MODEL_DIRNAME",
    "RunInputs",
    "SallResult",
    "Trained",
    "best_checkpoint_path",
    "evaluate_and_report",
    "calibrated_card",
    "save_model",
    "run_sall",
    "soft_labels",
    "train_student",
    "train_teacher",
]
