"""Content identity: the sha256 of a file's bytes (labels follow content, R6)."""

from __future__ import annotations

import hashlib
import os

_CHUNK = 1 << 20


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """Return the lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """Return the lowercase hex sha256 of the file's bytes, read in 1 MiB chunks.

    Raises:
        OSError: The file cannot be opened or read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
