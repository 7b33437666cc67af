"""Evaluation: per-head metrics on a manifest split, temperature scaling, report and plots.

Every head is evaluated on the images that have a grade for it (docs/sall-method.md,
Evaluation); a blank grade is no ground truth, so a normal eye counts for a head only where it is
graded for it (the synthetic benchmark's normals carry both grades). Metrics come from
``model_zoo.metrics`` (numpy, shared with the app). ECE is reported at T = 1 and after
temperature scaling fitted on the validation split, with 10 equal-width bins (comparable with
the paper) and 15 equal-mass bins (the R23 gate's variant). Referable DR uses the calibrated
P(ICDR >= 2) at threshold 0.5, as the app displays it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader

from model_zoo.architectures.student import SallStudent
from model_zoo.cards import ModelCard
from model_zoo.fileio import atomic_write_text
from model_zoo.metrics import head_metrics, reliability_bins
from training.engine import plots
from training.engine.calibration import fit_temperature, nll, softmax
from training.engine.data import ImageDataset, resolve_labels
from training.protocol.config import TaskConfig, TrainConfig
from training.protocol.manifest import ManifestRow
from training.protocol.report import (
    REFERABLE_DR_MIN,
    EpochRecord,
    HeadReport,
    ModelEvaluation,
    ReferableReport,
    Report,
    report_to_json,
)

REPORT_FILENAME = "report.json"


@dataclass(frozen=True)
class Predictions:
    """Raw logits of a model on a set of rows and their labels.

    Attributes:
        logits: head -> ``[N, C]`` float64 raw logits.
        labels: ``[N, K]`` int64 ground truth in head order, -1 = none.
    """

    logits: dict[str, NDArray[np.float64]]
    labels: NDArray[np.int64]


def config_tasks(card: ModelCard) -> list[TaskConfig]:
    """The card's heads as config tasks."""
    return [TaskConfig(t.name, tuple(t.classes)) for t in card.tasks]


@torch.no_grad()
def predict(
    model: SallStudent,
    card: ModelCard,
    rows: Sequence[ManifestRow],
    base_dir: Path,
    *,
    cfg: TrainConfig,
    device: torch.device,
    batch_size: int = 64,
) -> Predictions:
    """Logits of ``model`` (eval mode, the card's eval preprocessing) on ``rows``."""
    model.eval().to(device)
    tasks = config_tasks(card)
    labels = resolve_labels(rows, tasks, cfg.sall.normal_policy)
    outputs: dict[str, list[NDArray[np.float64]]] = {t.name: [] for t in tasks}
    if rows:
        dataset = ImageDataset(rows, base_dir, card, augment=False, preload=False)
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator()
        )
        for x, _ in loader:
            out = model(x.to(device))
            for name, z in out.logits.items():
                outputs[name].append(z.double().cpu().numpy())
    logits = {
        t.name: np.concatenate(outputs[t.name]) if outputs[t.name] else np.zeros((0, t.num_classes))
        for t in tasks
    }
    return Predictions(logits, labels)


def calibrate(predictions: Predictions, tasks: Sequence[TaskConfig]) -> dict[str, float]:
    """T_cal per head fitted by NLL on the (validation) predictions; 1.0 without labels."""
    return {
        t.name: fit_temperature(predictions.logits[t.name], predictions.labels[:, k])
        for k, t in enumerate(tasks)
    }


def _num(x: object) -> float | None:
    if isinstance(x, int | float) and math.isfinite(float(x)):
        return float(x)
    return None


def head_report(
    task: TaskConfig,
    labels: NDArray[np.int64],
    logits: NDArray[np.float64],
    temperature: float,
    *,
    ece_bins: int,
    gate_ece_bins: int,
) -> HeadReport:
    """Every metric of one head (docs/sall-method.md, Evaluation) at T = 1, plus calibrated
    NLL/ECE and referable DR."""
    c = task.num_classes
    known = labels >= 0
    y, z = labels[known], logits[known]
    p1 = softmax(z) if len(z) else np.zeros((0, c))
    pc = softmax(z, temperature) if len(z) else np.zeros((0, c))
    m = head_metrics(y, p1, c)
    bins = reliability_bins(y, p1, ece_bins, "uniform")
    referable = None
    if task.name == "dr" and c > REFERABLE_DR_MIN:
        ref = head_metrics(y, pc, c, referable_from=REFERABLE_DR_MIN)
        referable = ReferableReport(
            n=int(len(y)),
            positives=int((y >= REFERABLE_DR_MIN).sum()),
            sensitivity=_num(ref["referable_sensitivity"]),
            specificity=_num(ref["referable_specificity"]),
            auc=_num(ref["referable_auc"]),
        )
    ece_width = reliability_bins(y, p1, ece_bins, "uniform").ece
    ece_mass = reliability_bins(y, p1, gate_ece_bins, "quantile").ece
    recall = m["per_class_recall"]
    cm = m["confusion_matrix"]
    assert isinstance(recall, list) and isinstance(cm, list)
    return HeadReport(
        task=task.name,
        classes=task.classes,
        n=int(len(y)),
        accuracy=_num(m["accuracy"]),
        qwk=_num(m["qwk"]),
        macro_f1=_num(m["macro_f1"]),
        auc=_num(m["ovr_auc"]),
        nll=_num(m["nll"]),
        ece=_num(ece_width),
        ece_mass=_num(ece_mass),
        temperature=float(temperature),
        nll_calibrated=_num(nll(z, y, temperature)) if len(y) else None,
        ece_calibrated=_num(reliability_bins(y, pc, ece_bins, "uniform").ece),
        ece_mass_calibrated=_num(reliability_bins(y, pc, gate_ece_bins, "quantile").ece),
        per_class_recall=tuple(_num(v) for v in recall),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),  # type: ignore[union-attr]
        reliability=tuple(
            (_num(conf), _num(acc), int(n))
            for conf, acc, n in zip(bins.confidence, bins.accuracy, bins.count, strict=True)
        ),
        referable=referable,
    )


def evaluation(
    card: ModelCard,
    predictions: Predictions,
    temperatures: Mapping[str, float],
    *,
    split: str,
    cfg: TrainConfig,
) -> ModelEvaluation:
    """Assemble a :class:`ModelEvaluation` from predictions."""
    tasks = config_tasks(card)
    heads = tuple(
        head_report(
            t,
            predictions.labels[:, k],
            predictions.logits[t.name],
            temperatures.get(t.name, 1.0),
            ece_bins=cfg.eval.ece_bins,
            gate_ece_bins=cfg.eval.gate_ece_bins,
        )
        for k, t in enumerate(tasks)
    )
    return ModelEvaluation(
        model_id=card.id,
        model_name=card.name,
        split=split,
        n_images=int(predictions.labels.shape[0]),
        heads=heads,
        ece_bins=cfg.eval.ece_bins,
        gate_ece_bins=cfg.eval.gate_ece_bins,
    )


def write_report(
    out_dir: Path,
    report: Report,
    *,
    predictions: Predictions | None,
    card: ModelCard,
    history: Sequence[EpochRecord] = (),
    plots_enabled: bool = True,
) -> Path:
    """Write the PNG plots (if enabled) and then ``report.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    if plots_enabled:
        plot_dir = out_dir / "plots"
        plot_dir.mkdir(exist_ok=True)
        if history:
            plots.learning_curves(history, plot_dir / "learning_curves.png")
            made["learning_curves"] = "plots/learning_curves.png"
        for k, head in enumerate(report.model.heads):
            plots.confusion_matrix_plot(head, plot_dir / f"confusion_{head.task}.png")
            made[f"confusion_{head.task}"] = f"plots/confusion_{head.task}.png"
            if predictions is not None and head.n:
                plots.reliability_diagram(
                    head.task,
                    predictions.labels[:, k],
                    predictions.logits[head.task],
                    head.temperature,
                    plot_dir / f"reliability_{head.task}.png",
                    n_bins=report.model.ece_bins,
                )
                made[f"reliability_{head.task}"] = f"plots/reliability_{head.task}.png"
    # replace(), not a field-by-field copy: every other field of the report is kept as given.
    final = dataclasses.replace(
        report, plots={**report.plots, **made}, history=tuple(history) or report.history
    )
    path = out_dir / REPORT_FILENAME
    atomic_write_text(path, report_to_json(final))
    return path


def card_metrics(evaluation_: ModelEvaluation) -> dict[str, object]:
    """Compact per-head figures for a card's provenance (finite numbers or None)."""
    return {
        "split": evaluation_.split,
        "heads": {
            h.task: {
                "n": h.n,
                "accuracy": h.accuracy,
                "qwk": h.qwk,
                "ece": h.ece,
                "ece_mass": h.ece_mass,
                "referable_sensitivity": h.referable.sensitivity if h.referable else None,
            }
            for h in evaluation_.heads
        },
    }


__all__ = [
    "REPORT_FILENAME",
    "Predictions",
    "calibrate",
    "card_metrics",
    "config_tasks",
    "evaluation",
    "head_report",
    "predict",
    "write_report",
]
