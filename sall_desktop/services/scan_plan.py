"""How a folder scan is run: who hashes and reads each file (the decode processes, or threads at
background priority), in what chunks, and where the active model's prepared inputs go.

Qt-free: :class:`~sall_desktop.gui.bridges.CatalogueBridge` only starts a plan, buffers what it
delivers and re-emits it on the GUI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

from sall_desktop.domain.grades import ImageRecord
from sall_desktop.services.background import background_priority
from sall_desktop.services.catalogue import (
    DescribedFile,
    FolderCatalogue,
    FoundFile,
    InputCache,
    Outcome,
    describe_file,
    describe_files,
)
from sall_desktop.services.decode_pool import DecodePool

DESCRIBE_CHUNK = 8
"""Files a decode process describes per round trip: fewer results for the GUI process to receive
and unpickle under the GIL (P6), while a chunk still finishes within a frame or two."""

InputsProvider = Callable[[], InputCache | None]
"""Where a scan leaves the active model's prepared inputs (resolved off the GUI thread)."""


def _describe_on_thread(inputs: InputsProvider, found: FoundFile) -> ImageRecord:
    background_priority()  # hashing and header reads must not crowd out the GUI thread
    return describe_file(found, inputs())


def _describe_in_pool(
    decoder: DecodePool, inputs: InputsProvider, files: list[FoundFile]
) -> list[Outcome]:
    # This thread only waits and hands on, at normal priority: a lowered thread of the GUI
    # process that holds the GIL when the decode processes take the cores keeps the GUI
    # thread waiting for the GIL (a priority inversion that stalls it past the P6 budget).
    return decoder.run(describe_files, files, inputs(), name=str(files[0].path))


def _no_inputs() -> None:
    return None


class _ScanInputs:
    """The active model's input cache as of one scan, looked up on a thread of its own.

    Resolving it waits for the store (the active version's weights are re-hashed):
    files described before the answer are not prepared (grading decodes and caches them), so
    the first screen of thumbnails never waits for it.
    """

    def __init__(self, provider: InputsProvider) -> None:
        self._value: InputCache | None = None
        self._provider = provider
        threading.Thread(target=self._resolve, name="catalogue-inputs", daemon=True).start()

    def _resolve(self) -> None:
        self._value = self._provider()

    def __call__(self) -> InputCache | None:
        return self._value


def start_scan(
    folder: str,
    *,
    on_found: Callable[[list[FoundFile]], None],
    on_described: Callable[[DescribedFile], None],
    decoder: DecodePool | None = None,
    inputs: InputsProvider | None = None,
    workers: int = 2,
) -> FolderCatalogue:
    """Start scanning ``folder``: files are described in ``decoder``'s processes when it has
    workers, else on ``workers`` threads at background priority; the active model's inputs are
    prepared where ``inputs`` names a cache. Callbacks come on the scan's threads."""
    pool = decoder if decoder is not None and decoder.workers > 0 else None
    provider: InputsProvider = _no_inputs if inputs is None else _ScanInputs(inputs)
    describe_chunk = None if pool is None else partial(_describe_in_pool, pool, provider)
    catalogue = FolderCatalogue(
        folder,
        on_found=on_found,
        on_described=on_described,
        workers=workers,
        describe=partial(_describe_on_thread, provider),
        describe_chunk=describe_chunk,
        chunk=DESCRIBE_CHUNK if describe_chunk is not None else 1,
    )
    return catalogue.start()


def watch_scan(
    catalogue: FolderCatalogue, on_end: Callable[[BaseException | None], None]
) -> threading.Thread:
    """A thread that waits for ``catalogue`` and calls ``on_end`` once, with the exception that
    ended the scan thread if one did (the scan is over either way)."""

    def watch() -> None:
        try:
            catalogue.wait()
        except Exception as exc:  # the scan thread died: say so
            on_end(exc)
            return
        on_end(None)

    thread = threading.Thread(target=watch, name="catalogue-watch", daemon=True)
    thread.start()
    return thread


__all__ = ["DESCRIBE_CHUNK", "InputsProvider", "start_scan", "watch_scan"]
