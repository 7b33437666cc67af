"""From a frozen manifest to batches: labels, integrity checks, the dataset and the samplers.

* Labels: :func:`resolve_labels` turns manifest rows into an ``[N, K]`` int64 matrix (one column
  per task, -1 = no ground truth). A blank grade is never a hard label: it stays -1 and the
  student gets the teacher's (or the parent's) soft label for it (``sall.normal_policy``).
* Integrity: the training process never trusts the manifest's hashes blindly. Every image is
  re-hashed (or hashed while it is decoded) at start and a mismatch aborts the run with
  :class:`DataIntegrityError` (docs/architecture.md, Training runs). Messages name images by
  hash prefix, never by path (R20).
* Leakage: :func:`check_no_leakage` refuses any training image that is, or shares a patient
  with, an image of the locked hold-out (R12).
* :class:`ImageDataset` decodes through ``model_zoo`` exactly as inference does
  (``transforms.load_for_model`` + the card's transform). With ``preload`` the resized uint8
  pixels are decoded once and kept in memory; only normalisation (and augmentation) run per step.
* :class:`EpochSampler`: the epoch's index sequence is a pure function of (seed, epoch), drawn
  uniformly with replacement (the authors' code) or with per-image weights, and sharded across
  DDP ranks like ``DistributedSampler``; that makes ``--resume`` mid-epoch exact.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from model_zoo.cards import ModelCard
from model_zoo.io import LoadError, hash_file
from model_zoo.transforms import Preprocess, load_for_model, train_transform
from training.protocol.config import ConfigError, NormalPolicy, SamplerName, TaskConfig
from training.protocol.manifest import ManifestRow

log = logging.getLogger("training")

UNKNOWN = -1


class DataIntegrityError(RuntimeError):
    """An image is missing, unreadable or differs from the hash the manifest froze."""


class LeakageError(RuntimeError):
    """A training image belongs to the locked hold-out (same file or same patient, R12)."""


# ----------------------------------------------------------------------------- labels


def task_column(row: ManifestRow, task: TaskConfig) -> int | None:
    """The grade of ``task`` in ``row`` (manifest column ``<task>_grade``), ``None`` if blank.

    Raises:
        ConfigError: the manifest has no column for this task.
    """
    attr = f"{task.name}_grade"
    if not hasattr(row, attr):
        raise ConfigError(f"the manifest has no column {attr!r} for task {task.name!r}")
    value: int | None = getattr(row, attr)
    if value is not None and not 0 <= value < task.num_classes:
        raise ConfigError(
            f"{attr} {value} is outside task {task.name!r}'s {task.num_classes} classes"
        )
    return value


def resolve_labels(
    rows: Sequence[ManifestRow], tasks: Sequence[TaskConfig], normal_policy: NormalPolicy
) -> NDArray[np.int64]:
    """Hard labels ``[N, K]``: each row's own grades, -1 where a grade is blank.

    A blank grade is unknown, never a hard 0, even on an image graded 0 for every other task: it
    receives the teacher's (or, fine-tuning, the parent's) soft label. A normal eye is ground
    truth for a task only where it is graded for it (the authors, and the synthetic benchmark,
    publish shared normal images with both grades). Ungradable rows get no label at all.

    ``normal_policy = "soft_other"`` is that rule. ``"hard_both"`` (docs/sall-method.md,
    choices; ambiguity 7; stored in older model cards' configs) used to turn the blank grades of
    such an image into hard 0s, which overrode the soft label on task-disjoint data and partial
    corrections (many such eyes are not normal for the blank task). It is still accepted and gives
    the same labels, but refuses the rows where it would have overridden a blank grade.

    Raises:
        ConfigError: ``hard_both`` and a gradable row graded 0 on every task it has a grade for
            but blank on another; or a grade outside its task's classes, or a missing column.
    """
    labels = np.full((len(rows), len(tasks)), UNKNOWN, dtype=np.int64)
    overridden: list[ManifestRow] = []
    for i, row in enumerate(rows):
        if row.gradable is False:
            continue
        grades = [task_column(row, t) for t in tasks]
        known = [g for g in grades if g is not None]
        if known and len(known) < len(grades) and all(g == 0 for g in known):
            overridden.append(row)
        for k, g in enumerate(grades):
            labels[i, k] = UNKNOWN if g is None else g
    if normal_policy == "hard_both" and overridden:
        raise ConfigError(
            f"sall.normal_policy = 'hard_both' would turn a blank grade into a hard 0 on "
            f"{len(overridden)} image(s) graded 0 for their other task(s) (first: "
            f"{_short(overridden[0].sha256)}); a blank grade is unknown and gets a soft label: "
            "use sall.normal_policy = 'soft_other' (the default) or grade those images for "
            "every task"
        )
    return labels


def select_rows(rows: Sequence[ManifestRow], splits: Sequence[str]) -> list[ManifestRow]:
    """Gradable rows (``gradable`` not False) of the given splits, in manifest order."""
    return [r for r in rows if r.split in splits and r.gradable is not False]


def resolve_path(row: ManifestRow, base_dir: Path) -> Path:
    """The image file of ``row``; a relative ``image_path`` is relative to the manifest folder."""
    path = Path(row.image_path)
    return path if path.is_absolute() else base_dir / path


def _short(sha: str) -> str:
    return sha[:12]


def verify_hashes(rows: Sequence[ManifestRow], base_dir: Path, *, workers: int = 4) -> None:
    """Re-hash every image and compare with the manifest (hashlib releases the GIL).

    Raises:
        DataIntegrityError: files missing or changed; the message lists hash prefixes only.
    """

    def check(row: ManifestRow) -> str | None:
        try:
            actual = hash_file(resolve_path(row, base_dir))
        except OSError:
            return f"{_short(row.sha256)} (missing or unreadable)"
        return None if actual == row.sha256 else f"{_short(row.sha256)} (content changed)"

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        problems = [p for p in pool.map(check, rows) if p is not None]
    if problems:
        shown = ", ".join(problems[:5]) + (
            f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise DataIntegrityError(
            f"{len(problems)} of {len(rows)} images differ from the frozen manifest: {shown}. "
            "Re-create the training run from the current labels."
        )


def check_no_leakage(train: Sequence[ManifestRow], holdout: Sequence[ManifestRow]) -> None:
    """Refuse training rows that are hold-out images or share a patient with one (R12).

    Raises:
        LeakageError: with the number of offending images and their hash prefixes.
    """
    held_sha = {r.sha256 for r in holdout}
    held_patients = {r.patient_id.strip() for r in holdout if r.patient_id.strip()}
    same_image = [r for r in train if r.sha256 in held_sha]
    same_patient = [
        r for r in train if r.sha256 not in held_sha and r.patient_id.strip() in held_patients
    ]
    if same_image or same_patient:
        shown = ", ".join(_short(r.sha256) for r in (same_image + same_patient)[:5])
        raise LeakageError(
            f"the training data contains {len(same_image)} hold-out image(s) and "
            f"{len(same_patient)} image(s) of hold-out patients ({shown}); the locked evaluation "
            "set is never eligible for training"
        )


# ----------------------------------------------------------------------------- dataset


def _decode(path: Path, card: ModelCard, expected_sha: str) -> NDArray[np.uint8]:
    try:
        loaded = load_for_model(path, card)
    except LoadError as exc:
        # The loader's sentence starts with the file name, which may hold a patient's name (R20).
        detail = exc.message.replace(Path(exc.path).name, "").strip() or exc.reason
        raise DataIntegrityError(
            f"image {_short(expected_sha)} cannot be decoded: {detail}"
        ) from None
    except OSError:
        raise DataIntegrityError(f"image {_short(expected_sha)} is missing or unreadable") from None
    if loaded.meta.sha256 != expected_sha:
        raise DataIntegrityError(
            f"image {_short(expected_sha)} differs from the frozen manifest (content changed)"
        )
    return loaded.rgb


class ImageDataset(Dataset[tuple[Tensor, int]]):
    """Images of manifest rows, preprocessed by the model card; items are ``(x, index)``.

    The index lets the loop gather labels and cached teacher outputs from tensors held on the
    device instead of collating them per item.

    Args:
        rows: manifest rows (their order defines the indices).
        base_dir: folder relative image paths are resolved against.
        card: model card whose preprocessing is applied.
        augment: random flips, rotation and colour jitter (training only).
        camera: with ``augment``, also another camera's rendition (defocus, flash, colour).
        preload: decode every image once now (checking its hash) and keep the resized uint8
            pixels in memory; otherwise decode per item after :func:`verify_hashes`.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        base_dir: Path,
        card: ModelCard,
        *,
        augment: bool = False,
        camera: bool = False,
        preload: bool = False,
    ) -> None:
        self.rows = list(rows)
        self.paths = [resolve_path(r, base_dir) for r in self.rows]
        self.card = card
        self.transform: Preprocess = train_transform(card, augment=augment, camera=camera)
        # Pixels in memory are already cropped and resized; only the tail of the pipeline runs.
        self._tail = dataclasses.replace(self.transform, fundus_crop=False)
        self._pixels: NDArray[np.uint8] | None = None
        if preload and self.rows:
            size = card.input_size
            pixels = np.empty((len(self.rows), size, size, 3), dtype=np.uint8)

            def load(i: int) -> None:
                pixels[i] = self.transform.prepare(
                    _decode(self.paths[i], card, self.rows[i].sha256)
                )

            # OpenCV decoding and resizing release the GIL, so threads scale with cores.
            with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
                list(pool.map(load, range(len(self.rows))))
            self._pixels = pixels
        elif self.rows:
            verify_hashes(self.rows, base_dir)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if self._pixels is not None:
            return self._tail(self._pixels[index]), index
        rgb = _decode(self.paths[index], self.card, self.rows[index].sha256)
        return self.transform(rgb), index


def preload_fits(n_images: int, input_size: int, max_mb: int) -> bool:
    """Whether ``n_images`` resized uint8 images fit in ``max_mb`` MiB."""
    return n_images * input_size * input_size * 3 <= max_mb * 2**20


# ----------------------------------------------------------------------------- sampling


def sampling_weights(
    labels: NDArray[np.int64], sampler: SamplerName, tasks: Sequence[TaskConfig]
) -> NDArray[np.float64] | None:
    """Per-image sampling weights for ``sall.sampler`` (``None`` = uniform).

    * ``balanced_tasks``: images are grouped by the set of tasks they have a ground truth for
      (DR-labelled, AMD-labelled, both); every group gets the same total mass.
    * ``class_balanced``: each image is weighted by 1 / frequency of its class on its first
      labelled task, so every (task, class) pair gets the same mass.
    """
    if sampler == "uniform" or len(labels) == 0:
        return None
    known = labels >= 0
    if sampler == "balanced_tasks":
        keys = [tuple(bool(v) for v in row) for row in known]
        counts: dict[tuple[bool, ...], int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        return np.array([1.0 / counts[k] for k in keys], dtype=np.float64)
    first = np.where(known.any(axis=1), known.argmax(axis=1), -1)
    pairs = [(int(t), int(labels[i, t])) if t >= 0 else (-1, -1) for i, t in enumerate(first)]
    pair_counts: dict[tuple[int, int], int] = {}
    for pair in pairs:
        pair_counts[pair] = pair_counts.get(pair, 0) + 1
    return np.array([1.0 / pair_counts[p] for p in pairs], dtype=np.float64)


class EpochSampler(Sampler[list[int]]):
    """Batches of indices; the sequence depends only on (seed, epoch), not on past draws.

    Each epoch draws ``steps * batch_size * world_size`` indices with replacement (uniform or
    weighted), deals them to ranks round-robin and cuts them into batches. With
    ``replacement=False`` it is a seeded permutation (validation-free fine-tuning, tests).

    Args:
        n: dataset size.
        batch_size: per-rank batch size.
        steps: batches per epoch per rank.
        seed: run seed.
        weights: optional ``[n]`` non-negative sampling weights.
        replacement: draw with replacement (the authors' code) or permute.
        rank: this process's DDP rank.
        world_size: number of DDP processes.
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        steps: int,
        seed: int,
        weights: NDArray[np.float64] | None = None,
        replacement: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if n <= 0:
            raise ValueError("cannot sample from an empty training set")
        self.n, self.batch_size, self.steps = n, batch_size, steps
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.replacement = replacement
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch and skip its first ``start_step`` batches (resume mid-epoch)."""
        self.epoch, self.start_step = epoch, start_step

    def epoch_indices(self) -> Tensor:
        """This rank's ``[steps * batch_size]`` indices for the current epoch."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        total = self.steps * self.batch_size * self.world_size
        if self.weights is not None:
            drawn = torch.multinomial(self.weights, total, replacement=True, generator=g)
        elif self.replacement:
            drawn = torch.randint(self.n, (total,), generator=g)
        else:
            reps = math.ceil(total / self.n)
            drawn = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])[:total]
        return drawn[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        indices = self.epoch_indices().tolist()
        for step in range(self.start_step, self.steps):
            yield indices[step * self.batch_size : (step + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.steps - self.start_step


def steps_per_epoch(n_train: int, batch_size: int, configured: int, world_size: int = 1) -> int:
    """``configured`` if > 0, else ceil(N / (batch * world)) (docs/sall-method.md)."""
    if configured > 0:
        return configured
    return max(1, math.ceil(n_train / (batch_size * world_size)))


def default_workers(configured: int) -> int:
    """DataLoader workers: the configured number, capped by the CPUs available."""
    return min(configured, os.cpu_count() or 1)


__all__ = [
    "UNKNOWN",
    "DataIntegrityError",
    "EpochSampler",
    "ImageDataset",
    "LeakageError",
    "check_no_leakage",
    "preload_fits",
    "resolve_labels",
    "resolve_path",
    "sampling_weights",
    "select_rows",
    "steps_per_epoch",
    "task_column",
    "verify_hashes",
]
