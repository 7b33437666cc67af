"""Atomic file replacement (R3): readers see the old file or the complete new one, never a torn one.

Standard library only, so every layer (model_zoo, training, the app's services) can share it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_PREFIX = ".sall-tmp-"
NEW_FILE_MODE = 0o644


def _fsync_dir(directory: Path) -> None:
    # POSIX only: the rename is durable once the directory entry is on disk. Windows cannot
    # open a directory for fsync, and NTFS journals the rename itself.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str], mode: str = "w", **open_kwargs: object
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on clean exit flush, fsync and ``os.replace`` it.

    On any exception (including a failed replace, e.g. a Windows sharing violation while the
    target is open in Excel) the temporary file is removed and the target stays untouched.

    Example:
        >>> with atomic_writer("labels.csv", newline="") as f:
        ...     f.write("image,level\\n")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=target.suffix, dir=target.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp makes 0600 files; a replaced file keeps its mode, a new one gets the usual 0644.
        try:
            file_mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            file_mode = NEW_FILE_MODE
        if os.name == "posix":
            os.fchmod(fd, file_mode)
        with os.fdopen(fd, mode, **open_kwargs) as handle:  # type: ignore[call-overload]
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` atomically with ``data``."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` atomically with ``text`` (written with ``\\n`` line ends untranslated)."""
    with atomic_writer(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files an interrupted atomic write left in ``directory``; return them.

    Called at start-up (R3). Only our own prefix is touched, never SQLite's -wal/-shm/-journal.
    """
    removed = []
    for candidate in Path(directory).glob(TEMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed
