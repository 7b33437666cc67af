"""Prepared model inputs on disk, so a photograph is decoded once for the catalogue and the model.

The SQLite implementation of :class:`model_zoo.prepare.PreparedInputs` (all SQL lives in this
package). Torch-free: the catalogue's decode processes import it.

Reading a fundus photograph (decoding it, cropping and resizing it) costs about as much as a
light model's forward pass on a CPU, or more (see docs/benchmarks.md, "Figures formerly in
docstrings"). The app reads every file anyway when it opens a folder (for its
SHA-256 and metadata), so that read also leaves the model's input here, and batch grading, and
every re-grading after a promote, only normalises it.

An entry is the ``uint8 S×S×3`` image of :meth:`model_zoo.prepare.InputSpec.prepare`, keyed by the
image's SHA-256 and the spec's key, so it can never be used for another file or another
preprocessing. Entries live in one SQLite file under ``root``, opened like the label store (WAL,
so the decode processes write while the app reads; ``synchronous=FULL``): a row committed with
others costs a fraction of the file-system work of a file per entry.

A damaged entry (a CRC-32 guards the pixels) is a miss and is removed. A damaged database is
only ignored (every read a miss, every write refused): the app never deletes SQLite files (R7),
so deleting the ``model-inputs`` folder starts afresh. Writing is best-effort: a full disk or a
locked database costs speed, never a result. :func:`prune_inputs` keeps the database under a
size cap, least recently used first.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model_zoo.prepare import InputSpec
from sall_desktop.store import db
from sall_desktop.store.rows import in_parts

DATABASE = "inputs.sqlite"
TOUCH_AFTER_S = 3600.0
"""A read marks its entry used again only when the mark is older than this (reads stay reads)."""

_SCHEMA = """
PRAGMA auto_vacuum = INCREMENTAL;
CREATE TABLE IF NOT EXISTS inputs (
    spec TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    side INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    used REAL NOT NULL,
    pixels BLOB NOT NULL,
    UNIQUE (spec, sha256)
);
CREATE INDEX IF NOT EXISTS inputs_used ON inputs (used);
"""


_local = threading.local()


def _connect(database: Path) -> sqlite3.Connection:
    database.parent.mkdir(parents=True, exist_ok=True)
    # The store's own PRAGMAs (R1: WAL, synchronous=FULL, busy timeout), like every connection
    # the app opens; puts are batched per chunk of files so the fsync per commit stays cheap.
    connection = db.connect(database)
    try:
        connection.executescript(_SCHEMA)
    except BaseException:
        connection.close()
        raise
    return connection


def _connection(database: Path) -> sqlite3.Connection:
    """This thread's connection (SQLite connections belong to the thread that made them)."""
    connections: dict[Path, sqlite3.Connection] | None = getattr(_local, "connections", None)
    if connections is None or getattr(_local, "pid", None) != os.getpid():
        connections = _local.connections = {}
        _local.pid = os.getpid()
    connection = connections.get(database)
    if connection is None:
        connection = connections[database] = _connect(database)
    return connection


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
    def database(self) -> Path:
        return self.root / DATABASE

    def __contains__(self, sha256: object) -> bool:
        if not isinstance(sha256, str):
            return False
        try:
            row = _connection(self.database).execute(
                "SELECT 1 FROM inputs WHERE spec = ? AND sha256 = ?", (self.spec.key, sha256)
            )
            return row.fetchone() is not None
        except (sqlite3.Error, OSError):
            return False

    def get(self, sha256: str) -> NDArray[np.uint8] | None:
        """The prepared ``S×S×3`` image of the file with this SHA-256, or None."""
        return self.get_many([sha256]).get(sha256)

    def get_many(self, sha256s: Sequence[str]) -> dict[str, NDArray[np.uint8]]:
        """The prepared images of those of ``sha256s`` that have a sound entry, by SHA-256.

        One query per 500 images: batch grading reads a window of inputs at once, and a query
        per image would pay SQLite's per-query overhead each time. The images are rows of one
        ``N×S×S×3`` block in the order asked, so a forward pass's consecutive images need no
        stacking (``Preprocess.normalise_batch`` takes such a run as it is): copying a row here
        is cheaper than stacking the images between forward passes, which shortens the
        inference thread's time outside the forward pass (see docs/benchmarks.md, "Figures
        formerly in docstrings"). An image found keeps its block alive: ask for about a forward
        pass's images at a time.
        """
        size = self.spec.input_size
        length = size * size * 3
        found: dict[str, NDArray[np.uint8]] = {}
        unique = list(dict.fromkeys(sha256s))
        place = {sha256: n for n, sha256 in enumerate(unique)}
        block = np.empty((len(unique), size, size, 3), np.uint8)
        stale: list[tuple[float, str, str]] = []
        damaged: list[tuple[str, str]] = []
        now = time.time()
        try:
            connection = _connection(self.database)
            for marks, part in in_parts(unique):
                rows = connection.execute(
                    "SELECT sha256, side, crc, used, pixels FROM inputs "
                    f"WHERE spec = ? AND sha256 IN ({marks})",
                    (self.spec.key, *part),
                )
                for sha256, side, crc, used, pixels in rows:
                    if side == size and len(pixels) == length and zlib.crc32(pixels) == crc:
                        row = block[place[sha256]]
                        row[...] = np.frombuffer(pixels, np.uint8).reshape(size, size, 3)
                        found[sha256] = row
                        if now - used > TOUCH_AFTER_S:
                            stale.append((now, self.spec.key, sha256))
                    else:  # damaged (a bit flip on disk): the caller decodes the file instead
                        damaged.append((self.spec.key, sha256))
            if stale or damaged:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    connection.executemany(
                        "UPDATE inputs SET used = ? WHERE spec = ? AND sha256 = ?", stale
                    )
                    connection.executemany(
                        "DELETE FROM inputs WHERE spec = ? AND sha256 = ?", damaged
                    )
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OSError):
            # A damaged or unreadable database: what was read and checked is still sound.
            pass
        return found

    def put(self, sha256: str, prepared: NDArray[np.uint8]) -> bool:
        """Store ``prepared`` for ``sha256``; False when it could not be written (never raises
        for a disk or database problem: the cache only saves time)."""
        return self.put_many([(sha256, prepared)])

    def put_many(self, items: Sequence[tuple[str, NDArray[np.uint8]]]) -> bool:
        """Store several entries in one transaction (one fsync); False when nothing could be
        written."""
        size = self.spec.input_size
        rows = []
        for sha256, prepared in items:
            if prepared.shape != (size, size, 3) or prepared.dtype != np.uint8:
                raise ValueError(f"expected a {size}×{size}×3 uint8 image, got {prepared.shape}")
            pixels = np.ascontiguousarray(prepared).tobytes()
            rows.append((self.spec.key, sha256, size, zlib.crc32(pixels), time.time(), pixels))
        if not rows:
            return True
        try:
            connection = _connection(self.database)
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "INSERT OR REPLACE INTO inputs (spec, sha256, side, crc, used, pixels) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError):
            return False
        return True


def prune_inputs(root: Path, max_bytes: int) -> int:
    """Delete the least recently used entries until the pixels under ``root`` fit
    ``max_bytes``, and give the space back to the disk; returns the bytes freed. Entries of
    every spec share the budget."""
    database = root / DATABASE
    if not database.exists():
        return 0
    try:
        connection = _connection(database)
        (total,) = connection.execute("SELECT total(length(pixels)) FROM inputs").fetchone()
        excess = int(total) - max_bytes
        if excess <= 0:
            return 0
        freed = 0
        rows = connection.execute(
            "SELECT rowid, length(pixels) FROM inputs ORDER BY used"
        ).fetchall()
        doomed = []
        for rowid, size in rows:
            if freed >= excess:
                break
            doomed.append((rowid,))
            freed += size
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany("DELETE FROM inputs WHERE rowid = ?", doomed)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("PRAGMA incremental_vacuum")
        return freed
    except sqlite3.Error:
        return 0
