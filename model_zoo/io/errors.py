"""The one exception image loading raises: :class:`LoadError`."""

from __future__ import annotations

import os
from pathlib import Path

#: Machine codes for :attr:`LoadError.reason` (stable: the catalogue stores them as statuses).
REASONS = frozenset(
    {
        "empty",
        "truncated",
        "not_an_image",
        "unsupported_format",
        "too_large",
        "no_pixel_data",
        "unsupported_sop_class",
        "unsupported_transfer_syntax",
        "deflate_bomb",
        "corrupt",
        "io_error",
        "decoder_crashed",  # the decode process died or hung on this file (sall_desktop pool)
    }
)


class LoadError(Exception):
    """An image file could not be loaded; ``str(error)`` is a sentence a grader understands.

    Attributes:
        path: The file, as given to :func:`model_zoo.io.read_image`.
        reason: Short machine code, one of :data:`REASONS`.
        message: The grader-readable sentence (also ``str(error)``).

    Picklable (its ``args`` are the constructor arguments), so it crosses the decode pool's
    process boundary unchanged.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown LoadError reason {reason!r}")
        super().__init__(os.fspath(path), reason, message)
        self.path: str = os.fspath(path)
        self.reason: str = reason
        self.message: str = message

    def __str__(self) -> str:
        return self.message


def fail(path: str | os.PathLike[str], reason: str, detail: str) -> LoadError:
    """Build a :class:`LoadError` whose message starts with the file's name.

    Example: ``fail(p, "not_an_image", "is not an image file (it starts like a text file)")``
    gives ``"photo.jpg is not an image file (it starts like a text file)"``.
    """
    return LoadError(path, reason, f"{Path(os.fspath(path)).name} {detail}")
