"""Opening the label database for headless commands: writable, or read-only, always closed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sall_desktop.store import SqliteLabelStore, open_store


class ReadOnlyDatabaseError(RuntimeError):
    """The database could not be opened for writing (another instance, a corrupt file, ...)."""


@contextlib.contextmanager
def writable_store(path: Path) -> Iterator[SqliteLabelStore]:
    """Open the label database for writing and close it afterwards.

    Raises:
        ReadOnlyDatabaseError: the store opened read-only; the message says why (R2, R7).
    """
    store = open_store(path)
    try:
        if store.read_only:
            raise ReadOnlyDatabaseError(f"the database is read-only: {store.read_only_reason}")
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def readable_store(path: Path) -> Iterator[SqliteLabelStore]:
    """Open the label database read-only (exports, reports) and close it afterwards."""
    store = open_store(path, read_only=True)
    try:
        yield store
    finally:
        store.close()
