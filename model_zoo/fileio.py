"""Atomic file replacement (R3): readers see the old file or the complete new one, never a torn one.

Also bounded reads of untrusted files (model folders): regular files only, refused over a byte
limit before they are read, and JSON refused past a nesting depth instead of raising
RecursionError. Standard library only, so every layer (model_zoo, training, the app's services)
can share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_PREFIX = ".sall-tmp-"
NEW_FILE_MODE = 0o644


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (its entry reaches the disk)."""
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
    fsync_dir(target.parent)


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


class UnsafeFileError(OSError):
    """A file that is not a regular file, or larger than the caller's limit (never read)."""


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary reading only if it is, or links to, a regular file.

    The type is checked with ``fstat`` on the opened descriptor, so a file swapped between a check
    and the open cannot slip through. ``O_NONBLOCK`` keeps the open of a FIFO from waiting for a
    writer forever; ``O_NOCTTY`` keeps a terminal device from becoming ours. Symlinks are followed:
    what matters is what is read, and model caches (e.g. Hugging Face's) link files to blobs kept
    elsewhere.

    Raises:
        UnsafeFileError: ``path`` is a folder, FIFO, socket or device.
        OSError: it cannot be opened (missing, no permission; a socket gives ENXIO).
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
    nonblocking = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | nonblocking)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFileError(
                f"{Path(path).name} is {_kind(mode)}; only a regular file is read"
            )
        if nonblocking:
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_limited(handle: IO[bytes], max_bytes: int, name: str, what: str) -> bytes:
    """Read all of an open regular file, refusing one over ``max_bytes`` before reading it.

    ``what`` names the limit in the message (e.g. ``"a model card"``). The read itself stops at
    ``max_bytes + 1`` bytes, so a file that grows while being read is refused too.

    Raises:
        UnsafeFileError: the file is larger than ``max_bytes``.
    """
    size = os.fstat(handle.fileno()).st_size
    if size <= max_bytes:
        data = handle.read(max_bytes + 1)
        if len(data) <= max_bytes:
            return data
        size_text = "it grew while being read"
    else:
        size_text = f"{size:,} bytes"
    raise UnsafeFileError(
        f"{name} is larger than the {format_bytes(max_bytes)} limit for {what} ({size_text})"
    )


def read_regular(path: str | os.PathLike[str], max_bytes: int, what: str) -> bytes:
    """:func:`open_regular` then :func:`read_limited` (bounded, never blocks, never a device)."""
    with open_regular(path) as handle:
        return read_limited(handle, max_bytes, Path(path).name, what)


def format_bytes(count: int) -> str:
    """``1,048,576 bytes (1 MiB)``-style text for a limit, exact and readable."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count:,}-byte ({count >> shift} {unit})"
    return f"{count:,}-byte"


def loads_json(text: str | bytes, max_depth: int) -> Any:
    """``json.loads`` for untrusted text: nesting deeper than ``max_depth`` is a ValueError.

    Deep nesting otherwise raises RecursionError in the parser (or in whoever walks the result
    later), which no caller expects; MemoryError is turned into a ValueError too.

    Raises:
        ValueError: not JSON, not UTF-8, nested too deeply, or too big to hold in memory.
    """
    too_deep = f"it is nested deeper than the {max_depth}-level limit"
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(too_deep) from None
    except MemoryError:
        raise ValueError("it is too big to parse in the memory available") from None
    # Iterative walk: a recursive one would fail on the very input it guards against.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > max_depth:
                    raise ValueError(too_deep)
                stack.append((child, depth + 1))
    return value
