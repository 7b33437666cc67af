"""The replay and reference sets a model carries in its folder (``MODEL/sets/``).

A fine-tune needs two things from the parent's own domain that a grader's workstation does not
have: images to replay against forgetting, and a labelled reference set on which the gate can
see forgetting at all. So a model folder may carry them::

    MODEL/card.json
    MODEL/weights.safetensors
    MODEL/sets/replay.csv        # training images of the parent's domain (manifest)
    MODEL/sets/reference.csv     # labelled test images of the parent's domain (manifest)
    MODEL/sets/images/<sha256>.jpg|.png

The images are stored at no more than twice the model's input size, so a few hundred cost a few
megabytes whatever the original photographs weighed. ``sall-train sall`` records them from its
own manifest; a fine-tune copies the parent's into the candidate, so the reference domain stays
fixed along a lineage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2

from model_zoo.cards import ModelCard
from model_zoo.fileio import atomic_write_bytes, atomic_write_text
from model_zoo.prepare import read_for_model
from training.engine.data import resolve_path
from training.protocol.manifest import ManifestRow, format_manifest, read_manifest

SETS_DIRNAME = "sets"
REPLAY = "replay"
REFERENCE = "reference"
JPEG_QUALITY = 95


def recorded_set(model_dir: Path, name: str) -> list[ManifestRow]:
    """The rows of set ``name`` (``replay`` or ``reference``) with absolute image paths;
    empty when the model carries none."""
    path = Path(model_dir) / SETS_DIRNAME / f"{name}.csv"
    if not path.is_file():
        return []
    rows = read_manifest(path)
    return [
        dataclasses.replace(r, image_path=str(resolve_path(r, path.parent).resolve())) for r in rows
    ]


def _sample(rows: Sequence[ManifestRow], n: int, seed: int) -> list[ManifestRow]:
    usable = [r for r in rows if r.gradable is not False]
    if n >= len(usable):
        return usable
    return [usable[i] for i in sorted(random.Random(seed).sample(range(len(usable)), n))]


def _stored_bytes(path: Path, input_size: int) -> tuple[bytes, str]:
    """The bytes a set keeps of one image: the file itself when it is no larger than twice the
    model's input (the demo's 256-px JPEGs), else a JPEG at that size.

    Re-encoding at the input size itself is not enough: at 128 px a microaneurysm is a pixel or
    two, and a fine-tuned candidate scored 0.62 DR QWK on such copies of a reference set against
    0.74 on the original files (the parent: 0.73 and 0.76).
    """
    loaded = read_for_model(path, 2 * input_size)
    meta = loaded.meta
    if max(meta.width, meta.height) <= 2 * input_size and meta.file_format in ("jpeg", "png"):
        return path.read_bytes(), ".jpg" if meta.file_format == "jpeg" else ".png"
    bgr = cv2.cvtColor(loaded.rgb, cv2.COLOR_RGB2BGR)
    scale = 2 * input_size / max(bgr.shape[:2])
    if scale < 1:
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"cannot encode {path.name} as JPEG")
    return data.tobytes(), ".jpg"


def record_sets(
    model_dir: Path,
    card: ModelCard,
    sets: Mapping[str, tuple[Sequence[ManifestRow], Path]],
    *,
    limit: int = 300,
    seed: int = 0,
) -> dict[str, int]:
    """Store a seeded sample of at most ``limit`` gradable rows per set in ``model_dir/sets``
    (each image at most twice the model's input size).

    Args:
        model_dir: the model's folder.
        card: its card (images larger than twice its input size are stored reduced to that).
        sets: ``replay`` and/or ``reference`` -> (rows, folder their relative paths start from);
            a set not named keeps what the folder already has.
        limit: most images per set.
        seed: sample seed.

    Returns:
        Images written per set.
    """
    folder = Path(model_dir) / SETS_DIRNAME
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for name, (rows, base_dir) in sets.items():
        if name not in (REPLAY, REFERENCE):
            raise ValueError(f"unknown set {name!r}; sets are {REPLAY!r} and {REFERENCE!r}")
        out: list[ManifestRow] = []
        for row in _sample(rows, limit, seed):
            path = resolve_path(row, base_dir)
            blob, suffix = _stored_bytes(path, card.input_size)
            sha = hashlib.sha256(blob).hexdigest()
            atomic_write_bytes(images / f"{sha}{suffix}", blob)
            split = "train" if name == REPLAY else "test"
            out.append(
                dataclasses.replace(
                    row, image_path=f"images/{sha}{suffix}", sha256=sha, split=split
                )
            )
        atomic_write_text(folder / f"{name}.csv", format_manifest(out))
        written[name] = len(out)
    return written


def copy_sets(parent_dir: Path, model_dir: Path) -> bool:
    """Copy the parent's sets into a candidate's folder; False when the parent has none."""
    source = Path(parent_dir) / SETS_DIRNAME
    if not source.is_dir():
        return False
    shutil.copytree(source, Path(model_dir) / SETS_DIRNAME, dirs_exist_ok=True)
    return True


__all__ = ["REFERENCE", "REPLAY", "SETS_DIRNAME", "copy_sets", "record_sets", "recorded_set"]
