"""Folder catalogue: stream a folder's image files at once, identify them in the background.

An image's identity is the SHA-256 of its bytes (R6), so labels follow content across renames
and moves, and two paths with the same content are duplicates. Finding files is cheap and comes
first (a grader sees the folder fill at once); hashing and metadata need the bytes and run on a
small pool, reporting each file as it is described.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model_zoo.io import SUPPORTED_SUFFIXES, ImageMeta, LoadError, read_image, sniff_format
from model_zoo.prepare import choose_reduce
from sall_desktop.store.input_cache import InputCache

__all__ = [
    "InputCache",
    "LoadError",
    "inspect_file",
    "scan_files",
    "describe_file",
    "describe_files",
    "FolderCatalogue",
]
from sall_desktop.domain.grades import FieldSource, ImageRecord, Laterality

THUMBNAIL_REDUCE = 8
"""Reduced decoding factor used while describing: metadata and the hash come from one read."""


@dataclass(frozen=True, slots=True)
class FoundFile:
    """A candidate image file, found before its bytes are read."""

    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class DescribedFile:
    """The outcome of reading one file: a record, or the grader-readable reason it failed.

    ``duplicate_of`` is the first path seen with the same content, when there is one.
    """

    found: FoundFile
    record: ImageRecord | None = None
    error: str | None = None
    duplicate_of: Path | None = None


def _is_candidate(entry: os.DirEntry[str]) -> bool:
    suffix = os.path.splitext(entry.name)[1].lower()
    if suffix in SUPPORTED_SUFFIXES:
        return True
    if suffix:
        return False
    # DICOM files from modalities often carry no suffix: sniff the 132-byte preamble.
    try:
        with open(entry.path, "rb") as handle:
            return sniff_format(handle.read(132)) == "dicom"
    except OSError:
        return False


def scan_files(
    root: str | os.PathLike[str], *, cancel: threading.Event | None = None
) -> Iterator[FoundFile]:
    """Yield image files under ``root`` recursively, in a stable (sorted) order, as they are found.

    Hidden files and folders (leading dot) are skipped; symbolic links to folders are not followed
    (a link loop would never end). Unreadable folders are skipped, not fatal.

    Args:
        root: folder to scan.
        cancel: set it to stop the scan at the next directory entry.

    Example:
        >>> for found in scan_files("/data/fundus"):
        ...     print(found.path)
    """
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if cancel is not None and cancel.is_set():
                return
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                elif entry.is_file() and _is_candidate(entry):
                    stat = entry.stat()
                    yield FoundFile(Path(entry.path), stat.st_size, stat.st_mtime_ns)
            except OSError:
                continue
        # Depth-first, in name order: push reversed so the first subfolder is scanned first.
        stack.extend(reversed(subfolders))


def inspect_file(path: Path) -> ImageMeta:
    """Decode one file fully and return its metadata (``sall-desktop inspect``).

    Raises:
        LoadError: the file is not a readable image; the message is meant for a grader.
    """
    return read_image(path).meta


_reduce_hint = THUMBNAIL_REDUCE  # per process: files of one folder mostly share a size


Prepared = list[tuple[str, NDArray[np.uint8]]]
"""Model inputs prepared while describing, waiting to be stored together (one commit)."""


def describe_file(found: FoundFile, inputs: InputCache | None = None) -> ImageRecord:
    """Read one file once: its SHA-256 and metadata (laterality, patient id with their sources).

    With ``inputs``, the same read decodes at the active model's resolution and leaves the
    model's prepared input in the cache, so grading does not decode the file again.

    Raises:
        LoadError: the file is not a readable image; the message is meant for a grader.
    """
    prepared: Prepared = []
    record = _describe(found, inputs, prepared)
    if inputs is not None:
        _store_quietly(inputs, prepared)
    return record


def _describe(found: FoundFile, inputs: InputCache | None, prepared: Prepared) -> ImageRecord:
    global _reduce_hint
    if inputs is None:
        meta = read_image(found.path, reduce=THUMBNAIL_REDUCE).meta
    else:
        loaded = inputs.spec.read(found.path, reduce_hint=_reduce_hint)
        meta = loaded.meta
        _reduce_hint = choose_reduce(meta.width, meta.height, inputs.spec.input_size)
        if meta.sha256 not in inputs:
            try:
                prepared.append((meta.sha256, inputs.spec.prepare(loaded.rgb)))
            except Exception:  # noqa: BLE001 - a head start for grading, never a failed file
                pass
    return ImageRecord(
        sha256=meta.sha256,
        path=str(found.path),
        width=meta.width,
        height=meta.height,
        file_format=meta.file_format,
        laterality=Laterality(meta.laterality),
        laterality_source=FieldSource(meta.laterality_source),
        patient_id=meta.patient_id,
        patient_id_source=FieldSource(meta.patient_id_source),
        study_date=meta.study_date,
        modality=meta.modality,
        sop_instance_uid=meta.sop_instance_uid,
        frames=meta.frames,
    )


def _store_quietly(inputs: InputCache, prepared: Prepared) -> None:
    # Only a head start for grading: no failure here may fail a file's description; grading
    # decodes a file itself when its input is missing.
    try:
        inputs.put_many(prepared)
    except Exception:  # noqa: BLE001
        pass


Outcome = ImageRecord | str
"""What describing one file gives: its record, or the grader-readable reason it failed."""


def describe_outcome(found: FoundFile, describe: Callable[[FoundFile], ImageRecord]) -> Outcome:
    """``describe(found)``, with every failure turned into a grader-readable reason."""
    try:
        return describe(found)
    except LoadError as exc:
        if exc.reason == "decoder_crashed":
            raise  # the caller retries the files of a chunk one by one
        return str(exc)
    except OSError as exc:
        return f"{found.path.name} could not be read: {exc.strerror}"
    except Exception as exc:  # a decoder bug must cost one file, not the whole folder
        return f"{found.path.name}: unexpected error ({exc!r})"


def describe_files(files: Sequence[FoundFile], inputs: InputCache | None = None) -> list[Outcome]:
    """Describe several files in one call (one round trip to a decode process for a chunk, one
    commit for the chunk's model inputs)."""
    prepared: Prepared = []
    describe = partial(_describe, inputs=inputs, prepared=prepared)
    outcomes = [describe_outcome(found, describe) for found in files]
    if inputs is not None:
        _store_quietly(inputs, prepared)
    return outcomes


class FolderCatalogue:
    """Scans a folder on a background thread; describes files in chunks on a small worker pool.

    Callbacks run on worker threads and must only hand data on (a Qt bridge re-emits them on
    the GUI thread). ``on_found`` receives batches so a view can grow in steps, not per file.

    Args:
        root: folder to scan.
        on_found: called with each batch of found files (at most ``batch`` per call).
        on_described: called once per file with its record or error.
        workers: threads that describe chunks (or wait for a decode process to).
        describe: the function that reads one file (tests substitute a failing one).
        describe_chunk: reads a chunk of files at once, one outcome per file, in order (the
            app passes one that runs :func:`describe_files` in a decode process); when it
            raises ``LoadError("decoder_crashed")`` the chunk's files are retried one by one,
            so only the file that kills the decoder fails.
        chunk: files per chunk (more amortises the round trip, fewer shows records sooner).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        on_found: Callable[[list[FoundFile]], None] | None = None,
        on_described: Callable[[DescribedFile], None] | None = None,
        workers: int = 2,
        batch: int = 256,
        describe: Callable[[FoundFile], ImageRecord] = describe_file,
        describe_chunk: Callable[[list[FoundFile]], list[Outcome]] | None = None,
        chunk: int = 1,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be 1 or more")
        self.root = Path(root)
        self._on_found = on_found
        self._on_described = on_described
        self._workers = workers
        self._batch = batch
        self._describe = describe
        self._describe_chunk = describe_chunk
        self._chunk = chunk
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._first_path_by_sha: dict[str, Path] = {}
        self._results: list[DescribedFile] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="catalogue-scan", daemon=True)

    def start(self) -> FolderCatalogue:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop scanning and describing; files already described stay reported."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the scan and all descriptions finished (or were cancelled)."""
        finished = self._done.wait(timeout)
        if finished and self._error is not None:
            raise self._error
        return finished

    @property
    def results(self) -> list[DescribedFile]:
        with self._lock:
            return list(self._results)

    def _run(self) -> None:
        # Bound the queue so a huge folder does not hold every future in memory. A semaphore,
        # not wait(): wait() walks every pending future on each call, which for a 10,000-file
        # folder kept this thread on the GIL for seconds and stalled the GUI thread (P6).
        slots = threading.BoundedSemaphore(max(2, 4 * self._batch // self._chunk))
        try:
            with ThreadPoolExecutor(self._workers, thread_name_prefix="catalogue-describe") as pool:
                pending: list[Future[None]] = []
                batch: list[FoundFile] = []
                files: list[FoundFile] = []

                def submit() -> bool:
                    nonlocal files
                    if not self._take(slots):
                        return False  # cancelled while the queue was full
                    future = pool.submit(self._describe_files, files)
                    future.add_done_callback(lambda _: slots.release())
                    pending.append(future)
                    files = []
                    return True

                for found in scan_files(self.root, cancel=self._cancel):
                    batch.append(found)
                    files.append(found)
                    if len(files) >= self._chunk and not submit():
                        break
                    if len(batch) >= self._batch:
                        self._emit_found(batch)
                        batch = []
                        pending = [f for f in pending if not f.done()]
                if batch:
                    self._emit_found(batch)
                if files and not self._cancel.is_set():
                    submit()
                if self._cancel.is_set():
                    for future in pending:
                        future.cancel()
        except BaseException as exc:  # reported through wait(); a scan thread must not die silently
            self._error = exc
        finally:
            self._done.set()

    def _take(self, slots: threading.BoundedSemaphore) -> bool:
        while not slots.acquire(timeout=0.1):
            if self._cancel.is_set():
                return False
        return True

    def _emit_found(self, batch: list[FoundFile]) -> None:
        if self._on_found is not None:
            self._on_found(batch)

    def _describe_files(self, files: list[FoundFile]) -> None:
        if self._cancel.is_set():
            for found in files:
                self._report(found, "cancelled")
            return
        for found, outcome in zip(files, self._outcomes(files), strict=True):
            self._report(found, outcome)

    def _outcomes(self, files: list[FoundFile]) -> list[Outcome]:
        if self._describe_chunk is None:
            return [self._outcome_of_one(found) for found in files]
        try:
            return self._describe_chunk(files)
        except Exception as exc:
            if len(files) > 1:  # one file killed the decoder: retry alone, so only it fails
                return [outcome for found in files for outcome in self._outcomes([found])]
            if isinstance(exc, LoadError):
                return [str(exc)]
            return [f"{files[0].path.name}: unexpected error ({exc!r})"]

    def _outcome_of_one(self, found: FoundFile) -> Outcome:
        try:
            return describe_outcome(found, self._describe)
        except LoadError as exc:  # decoder_crashed from a describe that uses a pool itself
            return str(exc)

    def _report(self, found: FoundFile, outcome: Outcome) -> None:
        if isinstance(outcome, str):
            result = DescribedFile(found, error=outcome)
        else:
            with self._lock:
                first = self._first_path_by_sha.setdefault(outcome.sha256, found.path)
            result = DescribedFile(
                found, outcome, duplicate_of=None if first == found.path else first
            )
        with self._lock:
            self._results.append(result)
        if self._on_described is not None:
            self._on_described(result)
