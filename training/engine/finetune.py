"""Fine-tuning from grader corrections behind a promotion gate (ADR 0008).

The one-click path the GUI calls, and nothing more::

    sall-train finetune --init ACTIVE_MODEL --manifest corrections.csv --holdout holdout.csv \\
        --out RUN_DIR [--replay original_manifest.csv] [--teacher TEACHER_CARD ...]

1. Stage 3 only, starting from the active student (its architecture, input size and heads come
   from its card); the optimiser, schedule and augmentation come from ``[finetune]``.
2. Cross-task soft labels for blank grades come from the teachers when they are in the
   student's lineage (``--teacher`` cards whose ids the student's card lists), otherwise from the
   parent's own head, taken from a copy whose BatchNorm statistics are adapted to the grader's
   images. A human grade for a task always replaces the soft label on that head.
3. The parent's replay set (``MODEL/sets/replay.csv``, or ``--replay``) is mixed in at a fixed
   share of every epoch's draws; its images also learn the parent's soft labels.
4. Any training or validation image that is a hold-out image, or belongs to a hold-out patient,
   raises :class:`~training.engine.data.LeakageError` before anything is trained; replay and
   reference images that overlap the grader's images give way instead.
5. Parent and candidate are scored on the same images of the locked hold-out and of the parent's
   reference set; the gate (:mod:`training.engine.gate`) passes only if every paired interval
   of candidate − parent stays above its margin, and says "insufficient" when a set is too small.
6. The candidate is written to ``RUN_DIR/model`` with its lineage, the verdict and the parent's
   sets. Nothing outside ``RUN_DIR`` is written, so a failed or cancelled run never touches the
   active model.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from model_zoo.architectures.student import SallStudent
from model_zoo.cards import ModelCard
from model_zoo.checkpoints import load_checkpoint
from training.engine.adapted_teacher import with_adapted_parent
from training.engine.data import check_no_leakage, select_rows, task_column
from training.engine.evaluate import (
    Predictions,
    card_metrics,
    config_tasks,
    evaluation,
    predict,
    write_report,
)
from training.engine.gate import GateRule, PairedSet, judge
from training.engine.model_sets import REFERENCE, REPLAY, copy_sets, recorded_set
from training.engine.sall.fusion import ARCHITECTURE as FUSION_ARCHITECTURE
from training.engine.sall.pipeline import (
    MODEL_DIRNAME,
    RunInputs,
    Trained,
    calibrated_card,
    save_model,
    soft_labels,
    train_student,
)
from training.protocol.config import ConfigError, FeatureTerm, ModelConfig, TrainConfig
from training.protocol.events import utc_timestamp
from training.protocol.manifest import ManifestRow
from training.protocol.report import GateVerdict, ModelEvaluation, Report

log = logging.getLogger("training")

STAGE = "finetune"


def config_for_parent(cfg: TrainConfig, parent: ModelCard) -> TrainConfig:
    """``cfg`` with the network shape of ``parent`` and ``[finetune]``'s recipe.

    The backbone, input size, dropout and heads come from the parent's card; the optimiser,
    schedule, augmentation and feature term from ``cfg.finetune`` (``[optim]`` describes
    training from scratch).
    """
    ft = cfg.finetune
    kwargs = parent.architecture_kwargs
    model = ModelConfig(
        backbone=str(kwargs.get("backbone", cfg.model.backbone)),
        input_size=parent.input_size,
        pretrained=False,
        dropout=float(kwargs.get("dropout", cfg.model.dropout)),
    )
    # The feature term follows the parent's architecture: a fusion model stays one.
    if parent.architecture == FUSION_ARCHITECTURE:
        term: FeatureTerm = "fusion"
    elif cfg.sall.feature_term == "fusion":
        raise ConfigError("sall.feature_term = 'fusion' needs a fusion model to fine-tune")
    else:
        term = ft.feature_term
    sall = dataclasses.replace(
        cfg.sall,
        tasks=tuple(config_tasks(parent)),
        fundus_crop=bool(parent.preprocessing.get("fundus_crop", False)),
        feature_term=term,
        augment=ft.augment != "none",
    )
    optim = dataclasses.replace(
        cfg.optim,
        lr=ft.lr,
        schedule="cosine",
        warmup_epochs=ft.warmup_epochs,
        min_lr_ratio=ft.min_lr_ratio,
        max_epochs=ft.max_epochs,
        patience=ft.patience,
    )
    return cfg.replace(model=model, sall=sall, optim=optim)


def domain_weights(n_corrected: int, n_replay: int, replay_share: float = 0.5) -> list[float]:
    """Sampling weights (the corrections first, then the replay rows) giving the replay rows
    ``replay_share`` of the draws, so batches mix the clinic and the parent's domain in a fixed
    proportion whatever the two sets' sizes."""
    if not n_replay or not n_corrected:
        return [1.0] * (n_corrected + n_replay)
    share = (1.0 - replay_share) / n_corrected
    return [share] * n_corrected + [replay_share / n_replay] * n_replay


def replay_sample(
    original: Sequence[ManifestRow], exclude: set[str], n: int, seed: int
) -> list[ManifestRow]:
    """``n`` gradable training rows of the original manifest (seeded), skipping ``exclude``."""
    pool = [r for r in select_rows(original, ["train"]) if r.sha256 not in exclude]
    if n >= len(pool):
        return pool
    chosen = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in chosen]


def lineage_teachers(parent: ModelCard, teacher_dirs: Sequence[Path]) -> dict[str, Trained]:
    """Teachers given on the command line that belong to the parent's lineage, by task."""
    found: dict[str, Trained] = {}
    for folder in teacher_dirs:
        model, card = load_checkpoint(folder, device="cpu")
        if card.id not in parent.provenance.teacher_ids:
            log.warning("teacher %s is not in the model's lineage; ignored", card.id[:12])
            continue
        if not isinstance(model, SallStudent):
            raise TypeError(f"teacher {card.id[:12]} is a {type(model).__name__}")
        for task in card.tasks:
            found[task.name] = Trained(model, card)
    return found


def run_finetune(
    inp: RunInputs,
    *,
    parent_dir: Path,
    holdout: Sequence[ManifestRow],
    holdout_base: Path,
    original: Sequence[ManifestRow] = (),
    original_base: Path | None = None,
    teacher_dirs: Sequence[Path] = (),
) -> tuple[ModelCard, GateVerdict, Path]:
    """Fine-tune the parent on ``inp.rows`` (the corrections) and gate the result.

    Args:
        inp: run inputs; ``inp.rows`` is the corrections manifest (``train``/``val`` rows).
        parent_dir: checkpoint folder of the active student.
        holdout: the locked hold-out rows (every row is used, whatever its split).
        holdout_base: folder the hold-out's relative paths are resolved against.
        original: the original training manifest for replay (may be empty).
        original_base: its folder.
        teacher_dirs: teacher checkpoints that may be in the parent's lineage.

    Returns:
        ``(candidate card, gate verdict, report path)``.

    Raises:
        LeakageError: a training or validation image is, or shares a patient with, a hold-out
            image.
    """
    parent_model, parent_card = load_checkpoint(parent_dir, device="cpu")
    if not isinstance(parent_model, SallStudent):
        raise TypeError(f"the model to fine-tune is a {type(parent_model).__name__}")
    cfg = config_for_parent(inp.cfg, parent_card)
    corrections = [r for r in inp.rows if r.gradable is not False]
    corrected = {r.sha256 for r in corrections}
    n_replay = round(cfg.finetune.replay_ratio * len(select_rows(corrections, ["train"])))
    if not original:
        # The one click passes no --replay: the parent's own replay set is the default.
        original, original_base = recorded_set(parent_dir, REPLAY), None
    # The replay set is the parent's, not the grader's: its images that are hold-out images or
    # share a hold-out patient leave the replay rather than fail the run.
    original = _unseen(original, holdout)
    replay = replay_sample(original, corrected, n_replay, cfg.runtime.seed)
    # Replay rows are resolved against their own manifest's folder.
    base = inp.base_dir
    if replay and original_base is not None and original_base != base:
        replay = [_absolute(r, original_base) for r in replay]
    corrected_train = select_rows(corrections, ["train"])
    train_rows = corrected_train + replay
    val_rows = select_rows(corrections, ["val"])
    check_no_leakage(train_rows + val_rows, holdout)
    reference = _unseen(recorded_set(parent_dir, REFERENCE), train_rows + val_rows)
    log.info(
        "fine-tune: %d corrected + %d replayed training images, %d validation, %d hold-out, "
        "%d reference",
        len(corrected_train),
        len(replay),
        len(val_rows),
        len(holdout),
        len(reference),
    )
    tasks = config_tasks(parent_card)
    teachers = lineage_teachers(parent_card, teacher_dirs)
    for task in tasks:
        if task.name not in teachers:
            log.info(
                "no teacher for %s in the lineage: the parent's own head supplies it", task.name
            )
            teachers[task.name] = Trained(parent_model, parent_card)
    run_inp = dataclasses.replace(inp, cfg=cfg, rows=train_rows + val_rows)
    outputs = soft_labels(run_inp, teachers)
    # Only heads some grader image left blank are taught; the others need no adapted parent.
    grader = corrected_train + val_rows
    blank = {t.name for r in grader for t in tasks if task_column(r, t) is None}
    if cfg.finetune.adapt_teacher and blank:
        taught = [k for k, t in teachers.items() if t.card.id == parent_card.id and k in blank]
        outputs = with_adapted_parent(
            run_inp, outputs, Trained(parent_model, parent_card), grader_rows=grader, tasks=taught
        )
    init = load_checkpoint(parent_dir, device="cpu")[0]
    assert isinstance(init, SallStudent)
    trained = train_student(
        run_inp,
        outputs,
        teacher_ids=[t.card.id for t in teachers.values()],
        init=init,
        parent_id=parent_card.id,
        stage=STAGE,
        max_epochs=cfg.finetune.max_epochs,
        train_rows=train_rows,
        val_rows=val_rows,
        live_teachers=(
            {k: t.model for k, t in teachers.items()}
            if cfg.sall.augment and cfg.sall.feature_term == "hint"
            else None
        ),
        camera_augment=cfg.finetune.augment == "camera",
        sample_weights=domain_weights(len(corrected_train), len(replay), cfg.finetune.replay_share),
        distil_train=(
            [False] * len(corrected_train) + [True] * len(replay)
            if cfg.finetune.replay_distil
            else None
        ),
    )
    candidate_card = calibrated_card(run_inp, trained, fallback=parent_card.temperatures)
    judged = _judge(
        parent_model,
        parent_card,
        trained.model,
        candidate_card,
        holdout=([r for r in holdout if r.gradable is not False], holdout_base),
        reference=reference,
        cfg=cfg,
        device=inp.ctx.device,
    )
    verdict = judged.verdict
    log.info("promotion gate: %s", verdict.status.upper())
    for check in verdict.checks:
        log.info("  %s %s", "ok  " if check.passed else "FAIL", check.message)
    used = sorted(k for k, t in teachers.items() if t.card.id != parent_card.id)
    report = Report(
        kind="finetune",
        run_id=inp.ctx.run_id,
        created_at=utc_timestamp(),
        manifest_digest=inp.manifest_digest,
        model=judged.candidate,
        parent=judged.parent,
        gate=verdict,
        reference=judged.candidate_reference,
        reference_parent=judged.parent_reference,
        notes=(
            f"{len(corrected_train)} corrected and {len(replay)} replayed images",
            f"soft labels from the lineage's teachers for: {', '.join(used) or 'none'}; "
            "the parent student's own heads supplied the others",
        ),
    )
    metrics = {
        "holdout": card_metrics(judged.candidate),
        "gate": {
            "passed": verdict.passed,
            "status": verdict.status,
            "checks": [c.message for c in verdict.checks],
        },
        "calibration_split": "val" if val_rows else "inherited from the parent",
    }
    model_dir = inp.ctx.run_dir / MODEL_DIRNAME
    card = save_model(run_inp, trained.model, candidate_card, out_dir=model_dir, metrics=metrics)
    copy_sets(parent_dir, model_dir)
    report = dataclasses.replace(
        report, model=dataclasses.replace(judged.candidate, model_id=card.id)
    )
    path = write_report(
        inp.ctx.run_dir,
        report,
        predictions=judged.predictions,
        card=card,
        history=trained.history,
        plots_enabled=cfg.eval.plots,
    )
    return card, verdict, path


@dataclass(frozen=True)
class Judged:
    """The gate's verdict with the evaluations behind it.

    Attributes:
        verdict: the promotion gate's verdict.
        parent: the parent on the hold-out; candidate: the candidate on the same images.
        parent_reference: the parent on the reference set (None without one).
        candidate_reference: the candidate on the same reference images.
        predictions: the candidate's hold-out predictions (for the report's plots).
    """

    verdict: GateVerdict
    parent: ModelEvaluation
    candidate: ModelEvaluation
    parent_reference: ModelEvaluation | None
    candidate_reference: ModelEvaluation | None
    predictions: Predictions


def _judge(
    parent_model: SallStudent,
    parent_card: ModelCard,
    model: SallStudent,
    card: ModelCard,
    *,
    holdout: tuple[Sequence[ManifestRow], Path],
    reference: Sequence[ManifestRow],
    cfg: TrainConfig,
    device: torch.device,
) -> Judged:
    """Score parent and candidate on the same hold-out and reference images, then gate."""
    ft = cfg.finetune
    tasks = config_tasks(parent_card)
    sets: list[PairedSet] = []
    found: dict[str, tuple[ModelEvaluation, ModelEvaluation, Predictions]] = {}
    for domain, rows, base in (
        ("holdout", holdout[0], holdout[1]),
        ("reference", reference, Path("/")),
    ):
        if domain == "reference" and not rows:
            continue  # the gate itself says that no reference set was recorded
        before = predict(parent_model, parent_card, rows, base, cfg=cfg, device=device)
        after = predict(model, card, rows, base, cfg=cfg, device=device)
        found[domain] = (
            evaluation(parent_card, before, parent_card.temperatures, split=domain, cfg=cfg),
            evaluation(card, after, card.temperatures, split=domain, cfg=cfg),
            after,
        )
        sets.append(
            PairedSet(
                domain=domain,  # type: ignore[arg-type]
                tasks=tasks,
                labels=before.labels,
                parent_logits=before.logits,
                candidate_logits=after.logits,
                parent_temperatures=dict(parent_card.temperatures),
                candidate_temperatures=dict(card.temperatures),
            )
        )
    rule = GateRule(
        qwk_margin=ft.max_qwk_drop,
        sensitivity_margin=ft.sensitivity_margin,
        min_images=ft.min_images,
        min_referable=ft.min_referable,
        resamples=ft.bootstrap,
        confidence=ft.confidence,
        seed=cfg.runtime.seed,
    )
    parent_eval, candidate_eval, predictions = found["holdout"]
    ref = found.get("reference")
    return Judged(
        verdict=judge(sets, rule),
        parent=parent_eval,
        candidate=candidate_eval,
        parent_reference=ref[0] if ref else None,
        candidate_reference=ref[1] if ref else None,
        predictions=predictions,
    )


def _unseen(rows: Sequence[ManifestRow], seen: Sequence[ManifestRow]) -> list[ManifestRow]:
    """The ``rows`` that are not, and share no patient with, a row of ``seen``: the parent's
    sets are fixed, so where a grader's images overlap them the set gives way, not the run."""
    shas = {r.sha256 for r in seen}
    patients = {r.patient_id.strip() for r in seen if r.patient_id.strip()}
    kept = [r for r in rows if r.sha256 not in shas and r.patient_id.strip() not in patients]
    if len(kept) < len(rows):
        log.info(
            "%d images of the model's sets overlap the grader's: left out", len(rows) - len(kept)
        )
    return kept


def _absolute(row: ManifestRow, base: Path) -> ManifestRow:
    path = Path(row.image_path)
    if path.is_absolute():
        return row
    return dataclasses.replace(row, image_path=str((base / path).resolve()))


__all__ = [
    "Judged",
    "config_for_parent",
    "domain_weights",
    "lineage_teachers",
    "replay_sample",
    "run_finetune",
]
