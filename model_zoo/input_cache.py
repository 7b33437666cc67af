"""Prepared model inputs on disk, so a photograph is decoded once for the catalogue and the model.

Reading a fundus photograph costs more than a light model's forward pass on a CPU (a 2000×1500
JPEG: ~3.6 ms to decode at 1/4, ~1 ms to crop and resize; resnet18@224: ~10 ms of forward on two
cores, efficientnet_b0@128: ~3 ms). The app reads every file anyway when it opens a folder (for its
SHA-256 and metadata), so that read also leaves the model's input here, and batch grading, and
every re-grading after a promote, only normalises it.

An entry is the ``uint8 S×S×3`` image of :meth:`model_zoo.prepare.InputSpec.prepare`, under
``<root>/<spec key>/<sha256[:2]>/<sha256>.input``: keyed by content and by everything that decides
the pixels, so it can never be used for another file or another preprocessing. A damaged entry
(torn write, bit flip: a CRC-32 guards the pixels) is a miss and is removed; writing is
best-effort (a full disk costs speed, not a result). :func:`prune_inputs` keeps the folder under a
size cap, least recently used first.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model_zoo.fileio import TEMP_PREFIX
from model_zoo.prepare import InputSpec

MAGIC = b"SALLIN1\n"
_HEADER = struct.Struct("<8sII")  # magic, side, CRC-32 of the pixels
SUFFIX = ".input"


@dataclass(frozen=True, slots=True)
class InputCache:
    """Prepared inputs of one :class:`InputSpec` under ``root`` (frozen: crosses processes).

    Example:
        >>> cache = InputCache(home / "model-inputs", eval_transform(card).input_spec)
        >>> cache.put(sha, cache.spec.prepare(rgb))
        >>> prepared = cache.get(sha)      # None on a miss
    """

    root: Path
    spec: InputSpec

    @property
    def folder(self) -> Path:
        return self.root / self.spec.key

    def path(self, sha256: str) -> Path:
        return Path(self._name(sha256))

    def _name(self, sha256: str) -> str:
        # Plain strings: pathlib's parsing cost more than the read itself on a light model.
        return os.path.join(self.root, self.spec.key, sha256[:2], sha256 + SUFFIX)

    def __contains__(self, sha256: object) -> bool:
        return isinstance(sha256, str) and os.path.isfile(self._name(sha256))

    def get(self, sha256: str) -> NDArray[np.uint8] | None:
        """The prepared ``S×S×3`` image of the file with this SHA-256, or None."""
        path = self._name(sha256)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        side = self.spec.input_size
        expected = _HEADER.size + side * side * 3
        if len(data) == expected:
            magic, stored_side, crc = _HEADER.unpack_from(data)
            pixels = memoryview(data)[_HEADER.size :]
            if magic == MAGIC and stored_side == side and zlib.crc32(pixels) == crc:
                _touch(path)
                return np.frombuffer(pixels, np.uint8).reshape(side, side, 3)
        _remove(path)  # damaged: drop it, the caller decodes the file instead
        return None

    def put(self, sha256: str, prepared: NDArray[np.uint8]) -> bool:
        """Store ``prepared`` for ``sha256``; False when it could not be written (never raises
        for a disk problem: the cache only saves time)."""
        side = self.spec.input_size
        if prepared.shape != (side, side, 3) or prepared.dtype != np.uint8:
            raise ValueError(f"expected a {side}×{side}×3 uint8 image, got {prepared.shape}")
        pixels = np.ascontiguousarray(prepared).tobytes()
        header = _HEADER.pack(MAGIC, side, zlib.crc32(pixels))
        try:
            _replace(Path(self._name(sha256)), header + pixels)
        except OSError:
            return False
        return True


def _replace(path: Path, data: bytes) -> None:
    # Atomic but not fsynced: a write torn by a power cut fails the CRC and is a miss, and an
    # fsync per entry would cost more than the decode it saves.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _touch(path: str | Path) -> None:
    """Mark ``path`` as just used (pruning removes the least recently used first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _remove(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def prune_inputs(root: Path, max_bytes: int) -> int:
    """Delete the least recently used entries until everything under ``root`` fits
    ``max_bytes``; returns the bytes freed. Entries of every spec share the budget."""
    entries: list[tuple[float, int, Path]] = []
    total = 0
    for stale in root.glob(f"*/*/{TEMP_PREFIX}*"):  # left by a process killed mid-write
        _remove(stale)
    for path in root.glob(f"*/*/*{SUFFIX}"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
        total += stat.st_size
    freed = 0
    for _mtime, size, path in sorted(entries):
        if total - freed <= max_bytes:
            break
        _remove(path)
        freed += size
    return freed
