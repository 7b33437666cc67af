"""Stage 2: teacher outputs on images, cached by (image SHA-256, teacher id, preprocessing digest).

The cache stores raw teacher LOGITS (never probabilities, so the teacher temperature tau can
change later) for every head of the teacher, plus the teacher's pooled feature in float16 for the
``hint`` feature term (about 1 KB per image for resnet18, 4 KB for inception_v3). Teachers run in
eval mode (dropout off) on the un-augmented, resized image (docs/sall-method.md).

One safetensors file per (teacher id, preprocessing digest) under the cache folder::

    <cache>/<teacher id>-<digest[:16]>.safetensors
        sha256          uint8 [N, 32]   image identities, row order
        logits.<head>   float32 [N, C]
        features        float16 [N, G]
        __metadata__    schema, teacher_id, preprocessing_digest, heads

A change of teacher weights (id) or preprocessing (digest) selects another file, so a stale entry
is never used. Files are written atomically; a damaged file is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from model_zoo.architectures.student import SallStudent
from model_zoo.cards import ModelCard
from model_zoo.fileio import atomic_write_bytes
from training.engine.data import ImageDataset

log = logging.getLogger("training")

SCHEMA = "sall-teacher-outputs/1"


class StopRequested(Exception):  # noqa: N818 - control flow, like loop.Cancelled
    """The computation was interrupted by a stop request."""


def preprocessing_digest(card: ModelCard) -> str:
    """SHA-256 of everything that decides the pixels a model sees (size, filter, mean/std, crop).

    ``load_for_model`` picks the decoder reduction from the image and the input size alone, so
    the input size covers it.
    """
    spec = {
        "pipeline": "model_zoo.transforms.load_for_model+eval_transform/1",
        "input_size": card.input_size,
        "mean": list(card.mean),
        "std": list(card.std),
        "interpolation": card.interpolation,
        "preprocessing": card.preprocessing,
    }
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TeacherOutputs:
    """Cached outputs of one teacher on a set of images.

    Attributes:
        teacher_id: the teacher's model id (weights SHA-256).
        preprocessing_digest: :func:`preprocessing_digest` of the teacher's card.
        sha256: image identities, in row order.
        logits: head name -> ``[N, C]`` float32 raw logits.
        features: ``[N, G]`` float16 pooled features.
    """

    teacher_id: str
    preprocessing_digest: str
    sha256: tuple[str, ...]
    logits: dict[str, Tensor]
    features: Tensor

    def select(self, shas: Sequence[str]) -> TeacherOutputs:
        """The rows of ``shas`` in that order (KeyError if one is missing)."""
        where = {s: i for i, s in enumerate(self.sha256)}
        idx = torch.tensor([where[s] for s in shas], dtype=torch.long)
        return TeacherOutputs(
            self.teacher_id,
            self.preprocessing_digest,
            tuple(shas),
            {k: v[idx] for k, v in self.logits.items()},
            self.features[idx],
        )

    def merge(self, other: TeacherOutputs) -> TeacherOutputs:
        """Union of two caches of the same teacher (rows of ``other`` win on overlap)."""
        keep = [i for i, s in enumerate(self.sha256) if s not in set(other.sha256)]
        idx = torch.tensor(keep, dtype=torch.long)
        return TeacherOutputs(
            self.teacher_id,
            self.preprocessing_digest,
            tuple(self.sha256[i] for i in keep) + other.sha256,
            {k: torch.cat([v[idx], other.logits[k]]) for k, v in self.logits.items()},
            torch.cat([self.features[idx], other.features]),
        )


def cache_path(cache_dir: Path, teacher_id: str, digest: str) -> Path:
    """File of the (teacher, preprocessing) pair."""
    return cache_dir / f"{teacher_id}-{digest[:16]}.safetensors"


def save_outputs(cache_dir: Path, outputs: TeacherOutputs) -> Path:
    """Write ``outputs`` atomically; return the file."""
    shas = torch.tensor([list(bytes.fromhex(s)) for s in outputs.sha256], dtype=torch.uint8)
    tensors = {"sha256": shas.reshape(-1, 32), "features": outputs.features.contiguous()}
    tensors.update({f"logits.{k}": v.contiguous() for k, v in outputs.logits.items()})
    meta = {
        "schema": SCHEMA,
        "teacher_id": outputs.teacher_id,
        "preprocessing_digest": outputs.preprocessing_digest,
        "heads": ",".join(outputs.logits),
    }
    path = cache_path(cache_dir, outputs.teacher_id, outputs.preprocessing_digest)
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=meta))
    return path


def load_outputs(cache_dir: Path, teacher_id: str, digest: str) -> TeacherOutputs | None:
    """The cached outputs of this (teacher, preprocessing), or None (absent or unusable)."""
    path = cache_path(cache_dir, teacher_id, digest)
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        tensors = load_safetensors(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    except Exception as exc:  # a damaged cache is recomputed, never trusted
        log.warning("ignoring unreadable soft-label cache %s: %s", path.name, exc)
        return None
    if (
        meta.get("schema") != SCHEMA
        or meta.get("teacher_id") != teacher_id
        or meta.get("preprocessing_digest") != digest
    ):
        log.warning("ignoring soft-label cache %s: written for another teacher", path.name)
        return None
    heads = [h for h in str(meta.get("heads", "")).split(",") if h]
    shas = tuple(bytes(row).hex() for row in tensors["sha256"].tolist())
    return TeacherOutputs(
        teacher_id, digest, shas, {h: tensors[f"logits.{h}"] for h in heads}, tensors["features"]
    )


@torch.no_grad()
def compute_outputs(
    model: SallStudent,
    dataset: Dataset[tuple[Tensor, int]],
    shas: Sequence[str],
    *,
    teacher_id: str,
    digest: str,
    device: torch.device,
    batch_size: int,
    should_stop: Callable[[], bool] | None = None,
) -> TeacherOutputs:
    """Run ``model`` in eval mode over ``dataset`` (un-augmented; ``shas`` in the same order).

    Raises:
        StopRequested: ``should_stop()`` became true between two batches.
    """
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    logits: dict[str, list[Tensor]] = {t.name: [] for t in model.tasks}
    feats: list[Tensor] = []
    for x, _ in loader:
        if should_stop is not None and should_stop():
            raise StopRequested("soft-label computation stopped on request")
        out = model(x.to(device))
        for name, z in out.logits.items():
            logits[name].append(z.float().cpu())
        feats.append(out.features.to(torch.float16).cpu())
    return TeacherOutputs(
        teacher_id,
        digest,
        tuple(shas),
        {t.name: torch.cat(logits[t.name]) for t in model.tasks},
        torch.cat(feats),
    )


def ensure_outputs(
    cache_dir: Path,
    model: SallStudent,
    card: ModelCard,
    dataset: ImageDataset,
    *,
    device: torch.device,
    batch_size: int,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[TeacherOutputs, int]:
    """Teacher outputs for every image of ``dataset``, computing only the ones not cached.

    Args:
        cache_dir: cache folder.
        model: the teacher (any ``SallStudent``; all its heads are cached).
        card: its card (``id`` and preprocessing key the cache).
        dataset: un-augmented images; its ``rows`` give the sha256 order.
        device: where the teacher runs.
        batch_size: inference batch size.
        should_stop: polled between batches; nothing is cached when it stops the computation.

    Returns:
        ``(outputs in dataset row order, number of images computed now)``.
    """
    digest = preprocessing_digest(card)
    cached = load_outputs(cache_dir, card.id, digest)
    have = set(cached.sha256) if cached is not None else set()
    missing = [i for i, r in enumerate(dataset.rows) if r.sha256 not in have]
    if missing:
        fresh = compute_outputs(
            model,
            Subset(dataset, missing),
            [dataset.rows[i].sha256 for i in missing],
            teacher_id=card.id,
            digest=digest,
            device=device,
            batch_size=batch_size,
            should_stop=should_stop,
        )
        cached = fresh if cached is None else cached.merge(fresh)
        save_outputs(cache_dir, cached)
    if cached is None:  # an empty dataset: nothing to compute, nothing cached
        empty = {t.name: torch.zeros(0, t.num_classes) for t in model.tasks}
        cached = TeacherOutputs(card.id, digest, (), empty, torch.zeros(0, model.feature_dim))
    return cached.select([r.sha256 for r in dataset.rows]), len(missing)


__all__ = [
    "SCHEMA",
    "StopRequested",
    "TeacherOutputs",
    "cache_path",
    "compute_outputs",
    "ensure_outputs",
    "load_outputs",
    "preprocessing_digest",
    "save_outputs",
]
