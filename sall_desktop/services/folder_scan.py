"""Register a folder's images in the label store (the headless ``scan``, ``import`` and ``grade``
paths).

Files are described in decode processes (:class:`DecodePool`), as in the GUI: each has an
address-space cap and every call a time limit, so a file that slips past ``read_image``'s own
header-based limits (a codec that crashes, hangs or allocates more than its header implies)
costs that one file, not the command or the machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sall_desktop.domain.grades import ImageRecord
from sall_desktop.services.catalogue import (
    DescribedFile,
    FolderCatalogue,
    FoundFile,
    Outcome,
    describe_files,
)
from sall_desktop.services.decode_pool import DEFAULT_WORKERS, DecodePool
from sall_desktop.store.repository import LabelRepository

DESCRIBE_CHUNK = 8
"""Files one decode process describes per call (the round trip is amortised over them)."""


class FolderError(ValueError):
    """The folder to scan is missing, is a file, or cannot be listed; ``str(err)`` says which."""


def check_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` as a path, once it is known to be a folder this process can list.

    Raises:
        FolderError: no such folder, a file, or a folder that cannot be read.
    """
    path = Path(folder)
    try:
        with os.scandir(path):
            pass
    except FileNotFoundError:
        raise FolderError(f"there is no folder {path}") from None
    except NotADirectoryError:
        raise FolderError(f"{path} is a file, not a folder") from None
    except PermissionError:
        raise FolderError(f"cannot read the folder {path} (permission denied)") from None
    except OSError as exc:
        raise FolderError(f"cannot read the folder {path} ({exc.strerror or exc})") from None
    return path


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What a scan found: readable images, files that failed (with reasons) and duplicates."""

    folder: Path
    records: tuple[ImageRecord, ...]
    failures: tuple[tuple[Path, str], ...] = field(default=())
    duplicates: tuple[tuple[Path, Path], ...] = field(default=())

    def format(self) -> str:
        unique = len({r.sha256 for r in self.records})
        lines = [
            f"{self.folder}: {len(self.records)} images ({unique} distinct), "
            f"{len(self.failures)} unreadable, {len(self.duplicates)} duplicates"
        ]
        lines += [f"  unreadable: {path}: {reason}" for path, reason in self.failures]
        lines += [
            f"  duplicate: {path} has the same content as {first}"
            for path, first in self.duplicates
        ]
        return "\n".join(lines)


def _describe_in_pool(decoder: DecodePool, files: list[FoundFile]) -> list[Outcome]:
    return decoder.run(describe_files, files, None, name=str(files[0].path))


def scan_folder(
    folder: str | os.PathLike[str],
    *,
    on_progress: Callable[[int], None] | None = None,
    workers: int = DEFAULT_WORKERS,
    decoder: DecodePool | None = None,
) -> ScanSummary:
    """Describe every image under ``folder`` (hash + metadata), in a stable path order.

    Records carry absolute paths with symbolic links resolved, whatever form ``folder`` had.

    Args:
        folder: the folder to scan recursively.
        on_progress: called with the number of files described so far.
        workers: decode processes started for this scan and stopped after it (0: threads of
            this process, bounded only by ``read_image``'s own limits).
        decoder: a pool to describe in instead (kept running afterwards).

    Raises:
        FolderError: ``folder`` is missing, a file, or cannot be listed (a subfolder that
            cannot be read is skipped instead).
    """
    # Stored paths must name the file from anywhere: a relative folder would store paths that
    # mean nothing to the workstation (or to a command run from another directory).
    root = check_folder(folder).resolve()
    done = 0

    def described(_: DescribedFile) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done)

    pool = decoder if decoder is not None else DecodePool(workers)
    chunk = partial(_describe_in_pool, pool) if pool.workers > 0 else None
    try:
        catalogue = FolderCatalogue(
            root,
            on_described=described,
            workers=max(1, pool.workers if chunk is not None else workers),
            describe_chunk=chunk,
            chunk=DESCRIBE_CHUNK if chunk is not None else 1,
        ).start()
        catalogue.wait()
    finally:
        if decoder is None:
            pool.close()
    results = sorted(catalogue.results, key=lambda d: str(d.found.path))
    # Duplicates are decided on the sorted list so the "original" is the first path by name,
    # whatever order the workers finished in.
    first_by_sha: dict[str, Path] = {}
    records, failures, duplicates = [], [], []
    for item in results:
        if item.record is None:
            failures.append((item.found.path, item.error or "unreadable"))
            continue
        records.append(item.record)
        first = first_by_sha.setdefault(item.record.sha256, item.found.path)
        if first != item.found.path:
            duplicates.append((item.found.path, first))
    return ScanSummary(Path(folder), tuple(records), tuple(failures), tuple(duplicates))


def register_images(store: LabelRepository, records: Sequence[ImageRecord]) -> int:
    """Upsert the records (by SHA-256) and their current paths in one transaction."""
    store.upsert_images(records)
    return len(records)
