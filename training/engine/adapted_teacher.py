"""Soft labels for a grader's images when the parent plays the teacher.

A fine-tune's blank grades (a grader who graded DR only) are filled with the teacher's soft
label for that head. Without a teacher of the lineage, the teacher is the parent itself — and on
a new clinic's camera the parent is exactly what is wrong: its grades there are little better
than chance, mostly because its BatchNorm statistics belong to the other camera. Re-estimated
on the grader's own images (no labels needed), the same weights grade that camera far better
(the loop benchmark's figures: docs/benchmarks.md). So the parent's soft labels for the
grader's images come from a copy of it with its BatchNorm statistics adapted to those images;
the replayed images of its own domain keep the parent as it is.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from model_zoo.architectures.student import SallStudent
from training.engine.data import ImageDataset
from training.engine.sall.pipeline import RunInputs, Trained, soft_labels
from training.engine.sall.soft_labels import TeacherOutputs
from training.protocol.manifest import ManifestRow

log = logging.getLogger("training")

ADAPTED_CACHE_DIRNAME = "soft-labels-adapted"


@torch.no_grad()
def adapt_batchnorm(
    model: SallStudent, dataset: ImageDataset, *, batch_size: int, device: torch.device
) -> SallStudent:
    """A copy of ``model`` whose BatchNorm running statistics are the plain average over
    ``dataset`` (AdaBN); everything else, dropout and stochastic depth included, in eval mode."""
    adapted = copy.deepcopy(model).to(device).eval()
    norms = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch
        norm.train()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for x, _ in loader:
        adapted(x.to(device))
    for norm in norms:
        norm.eval()
    return adapted


def _overlay(base: TeacherOutputs, top: TeacherOutputs) -> TeacherOutputs:
    """``base`` with the rows of the images ``top`` has replaced by ``top``'s."""
    where = {s: i for i, s in enumerate(base.sha256)}
    rows = torch.tensor([where[s] for s in top.sha256], dtype=torch.long)
    logits = {k: v.clone() for k, v in base.logits.items()}
    for k, v in top.logits.items():
        logits[k][rows] = v.to(logits[k].dtype)
    features = base.features.clone()
    features[rows] = top.features.to(features.dtype)
    return dataclasses.replace(base, logits=logits, features=features)


def with_adapted_parent(
    inp: RunInputs,
    outputs: dict[str, TeacherOutputs],
    parent: Trained,
    *,
    grader_rows: Sequence[ManifestRow],
    tasks: Sequence[str],
) -> dict[str, TeacherOutputs]:
    """``outputs`` with the parent-taught ``tasks`` relabelled on ``grader_rows`` by the parent
    adapted to them (:func:`adapt_batchnorm`)."""
    if not tasks or not grader_rows:
        return outputs
    assert isinstance(parent.model, SallStudent)
    card = parent.card
    data = ImageDataset(grader_rows, inp.base_dir, card, augment=False, preload=False)
    model = adapt_batchnorm(
        parent.model, data, batch_size=max(1, inp.cfg.optim.batch_size), device=inp.ctx.device
    )
    log.info("soft labels of the grader's %d images: the parent adapted to them", len(data))
    adapted = soft_labels(
        dataclasses.replace(inp, rows=list(grader_rows)),
        {task: Trained(model, card) for task in tasks},
        cache_dir=Path(inp.ctx.run_dir) / ADAPTED_CACHE_DIRNAME,
    )
    return {k: _overlay(v, adapted[k]) if k in adapted else v for k, v in outputs.items()}


__all__ = ["adapt_batchnorm", "with_adapted_parent"]
