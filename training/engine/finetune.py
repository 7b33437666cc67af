"""Fine-tuning from grader corrections behind a promotion gate (sall-method.md §7, R12).

The one-click path the GUI calls::

    sall-train finetune --init ACTIVE_MODEL --manifest corrections.csv --holdout holdout.csv \\
        --out RUN_DIR [--replay original_manifest.csv] [--teacher TEACHER_CARD ...]

1. Stage 3 only, starting from the active student (its architecture, input size and heads come
   from its card, not from the config).
2. Cross-task soft labels for the corrected images come from the teachers when they are in the
   student's lineage (``--teacher`` cards whose ids the student's card lists in
   ``provenance.teacher_ids``); otherwise from the current (parent) student's own head for that
   task, computed once before training and frozen: the parent plays the teacher. A human grade
   for a task always replaces the soft label on that head.
3. A replay sample of the original training manifest (``finetune.replay_ratio`` images per
   corrected image, seeded) is mixed in against forgetting.
4. Any training or validation image that is a hold-out image, or belongs to a hold-out patient,
   raises :class:`~training.engine.data.LeakageError` before anything is trained.
5. Parent and candidate are evaluated on the locked hold-out; the gate passes only if no head's
   QWK drops by more than delta (``finetune.max_qwk_drop``) and referable-DR sensitivity does
   not drop.
6. The candidate is written to ``RUN_DIR/model`` with its lineage and the verdict. Nothing
   outside ``RUN_DIR`` is written, so a failed or cancelled run never touches the active model.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from model_zoo.architectures.student import SallStudent
from model_zoo.cards import ModelCard
from model_zoo.checkpoints import load_checkpoint
from training.engine.data import check_no_leakage, select_rows
from training.engine.evaluate import card_metrics, config_tasks, evaluation, predict, write_report
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
from training.protocol.report import GateVerdict, Report, decide_gate

log = logging.getLogger("training")

STAGE = "finetune"


def config_for_parent(cfg: TrainConfig, parent: ModelCard) -> TrainConfig:
    """``cfg`` with the network shape of ``parent`` (backbone, size, dropout, heads)."""
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
        term = cfg.sall.feature_term
    sall = dataclasses.replace(
        cfg.sall,
        tasks=tuple(config_tasks(parent)),
        fundus_crop=bool(parent.preprocessing.get("fundus_crop", False)),
        feature_term=term,
    )
    optim = dataclasses.replace(cfg.optim, max_epochs=cfg.finetune.max_epochs)
    return cfg.replace(model=model, sall=sall, optim=optim)


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
    replay = replay_sample(original, corrected, n_replay, cfg.runtime.seed)
    # Replay rows are resolved against their own manifest's folder.
    base = inp.base_dir
    if replay and original_base is not None and original_base != base:
        replay = [_absolute(r, original_base) for r in replay]
    train_rows = select_rows(corrections, ["train"]) + replay
    val_rows = select_rows(corrections, ["val"])
    check_no_leakage(train_rows + val_rows, holdout)
    log.info(
        "fine-tune: %d corrected + %d replayed training images, %d validation, %d hold-out",
        len(train_rows) - len(replay),
        len(replay),
        len(val_rows),
        len(holdout),
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
    )
    candidate_card = calibrated_card(run_inp, trained, fallback=parent_card.temperatures)
    hold_rows = [r for r in holdout if r.gradable is not False]
    parent_eval = evaluation(
        parent_card,
        predict(parent_model, parent_card, hold_rows, holdout_base, cfg=cfg, device=inp.ctx.device),
        parent_card.temperatures,
        split="holdout",
        cfg=cfg,
    )
    preds = predict(
        trained.model, candidate_card, hold_rows, holdout_base, cfg=cfg, device=inp.ctx.device
    )
    candidate_eval = evaluation(
        candidate_card, preds, candidate_card.temperatures, split="holdout", cfg=cfg
    )
    verdict = decide_gate(parent_eval, candidate_eval, max_qwk_drop=cfg.finetune.max_qwk_drop)
    log.info("promotion gate: %s", "PASSED" if verdict.passed else "FAILED")
    for check in verdict.checks:
        log.info("  %s %s", "ok  " if check.passed else "FAIL", check.message)
    used = sorted(k for k, t in teachers.items() if t.card.id != parent_card.id)
    report = Report(
        kind="finetune",
        run_id=inp.ctx.run_id,
        created_at=utc_timestamp(),
        manifest_digest=inp.manifest_digest,
        model=candidate_eval,
        parent=parent_eval,
        gate=verdict,
        notes=(
            f"{len(train_rows) - len(replay)} corrected and {len(replay)} replayed images",
            f"soft labels from the lineage's teachers for: {', '.join(used) or 'none'}; "
            "the parent student's own heads supplied the others",
        ),
    )
    metrics = {
        "holdout": card_metrics(candidate_eval),
        "gate": {"passed": verdict.passed, "checks": [c.message for c in verdict.checks]},
        "calibration_split": "val" if val_rows else "inherited from the parent",
    }
    card = save_model(
        run_inp,
        trained.model,
        candidate_card,
        out_dir=inp.ctx.run_dir / MODEL_DIRNAME,
        metrics=metrics,
    )
    report = dataclasses.replace(
        report, model=dataclasses.replace(candidate_eval, model_id=card.id)
    )
    path = write_report(
        inp.ctx.run_dir,
        report,
        predictions=preds,
        card=card,
        history=trained.history,
        plots_enabled=cfg.eval.plots,
    )
    return card, verdict, path


def _absolute(row: ManifestRow, base: Path) -> ManifestRow:
    path = Path(row.image_path)
    if path.is_absolute():
        return row
    return dataclasses.replace(row, image_path=str((base / path).resolve()))


__all__ = ["config_for_parent", "lineage_teachers", "replay_sample", "run_finetune"]
