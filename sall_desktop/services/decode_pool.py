"""Decode processes: untrusted image files are read in a small spawn-context process pool.

Two reasons (``docs/architecture.md``). Isolation (R14, R15): a codec that crashes, hangs
or swells past the memory cap (``RLIMIT_AS``) costs that one file, and the pool is rebuilt.
Fluency (R24, P6): hashing and decoding on threads of the GUI process take the GIL in bursts that
the GUI thread then waits behind; in other processes they cannot.

Callers run a picklable module-level function with its arguments and get its (small) result:
a catalogue record, a thumbnail. ``workers=0`` runs the same functions on the caller's thread,
which most unit tests use; the headless ``scan``, ``import`` and ``grade`` describe folders in
a pool of their own (``folder_scan.scan_folder``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from model_zoo.io import LoadError
from sall_desktop.services.background import BACKGROUND_NICENESS

T = TypeVar("T")

DEFAULT_WORKERS = 2
DEFAULT_MEMORY_LIMIT = 4 * 1024**3
"""Address space one decode process may add to what it maps once started: the backstop behind
``read_image``'s own limits, which refuse from the header a decode needing more than
``model_zoo.io.limits.DEFAULT_MAX_DECODE_BYTES`` beyond the file's bytes (a 100 Mpx 16-bit RGB
image fits). Room for the largest file read, that budget, and the allocator's reservations; a
codec that allocates more than its header implies is stopped here."""
DEFAULT_TIMEOUT_S = 120.0
"""How long one file may take (queueing included) before its decoder is stopped."""
PARENT_POLL_S = 0.5
"""How often a decode process checks that the app that started it still runs."""
ATTEMPTS = 2
"""A file whose worker died is tried once more on a fresh pool: the culprit may have been a
neighbour decoded at the same moment. Dying twice means the file itself kills the decoder."""


class DecodePool:
    """A few worker processes that run decoding functions; rebuilt when one dies.

    Args:
        workers: processes (0: run on the calling thread, no isolation).
        memory_limit: bytes of address space each process may add once started (Linux
            ``RLIMIT_AS``; elsewhere only the decoders' own size checks apply).
        timeout_s: seconds before a call's decoder is stopped and the file refused.

    Example:
        >>> pool = DecodePool()
        >>> record = pool.run(describe_file, found, name=str(found.path))
    """

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        *,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be 0 or more")
        self.workers = workers
        self.memory_limit = memory_limit
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._generation = 0
        self._closed = False
        self.rebuilds = 0
        """How many times a dead or stopped pool was replaced."""

    def start(self) -> None:
        """Spawn the processes now, so the first folder does not wait for their imports."""
        if self.workers == 0:
            return
        executor, _ = self._current()
        for _ in range(self.workers):
            executor.submit(os.getpid)

    def run(self, fn: Callable[..., T], *args: Any, name: str, timeout_s: float | None = None) -> T:
        """``fn(*args)`` in a worker process; its result, or what it raised.

        Args:
            fn: a module-level function (it is pickled by reference).
            name: the file being read, for the message when its worker dies or hangs.
            timeout_s: this call's limit instead of the pool's ``timeout_s`` (tests give one
                hung call a short limit and every other call a hang guard, so a pool that
                starts slowly on a busy machine is not taken for a hung decoder).

        Raises:
            LoadError: the worker died on this file twice (``decoder_crashed``), took longer
                than ``timeout_s`` (``decoder_crashed``), or ran out of its memory
                (``too_large``); or whatever ``fn`` raised (usually ``LoadError``).
            RuntimeError: the pool is closed.
        """
        if self.workers == 0:
            return fn(*args)
        limit = self.timeout_s if timeout_s is None else timeout_s
        for _ in range(ATTEMPTS):
            executor, generation = self._current()
            try:
                future: Future[T] = executor.submit(_guarded, name, self.memory_limit, fn, *args)
                return future.result(timeout=limit)
            except (RuntimeError, CancelledError) as exc:  # BrokenProcessPool is a RuntimeError
                if self._closed:
                    raise RuntimeError("the decode pool is closed") from None
                # A worker died, or another caller replaced this pool meanwhile (its shut-down
                # cancels queued calls and refuses new ones): try again on the next pool.
                # Anything else is what ``fn`` raised.
                if not isinstance(exc, BrokenProcessPool) and generation == self._generation:
                    raise
                self._replace(generation)
            except FutureTimeout:
                self._replace(generation, kill=True)
                raise LoadError(
                    name,
                    "decoder_crashed",
                    f"{Path(name).name} took longer than {limit:.0f} s to decode; "
                    "its decoder was stopped",
                ) from None
        raise LoadError(
            name,
            "decoder_crashed",
            f"{Path(name).name} made the image decoder stop (a crash in the decoding "
            "library); the file was skipped",
        )

    def close(self) -> None:
        """Stop the workers; calls waiting on them fail (used at shut-down only)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            _stop(executor, kill=False)

    def _current(self) -> tuple[ProcessPoolExecutor, int]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the decode pool is closed")
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(self.memory_limit, os.getpid()),
                )
            return self._executor, self._generation

    def _replace(self, generation: int, *, kill: bool = False) -> None:
        """Drop the pool of ``generation`` once (whoever sees it first); calls make a new one."""
        with self._lock:
            if generation != self._generation:
                return
            self._generation += 1
            self.rebuilds += 1
            executor, self._executor = self._executor, None
        if executor is not None:
            _stop(executor, kill=kill)


def _stop(executor: ProcessPoolExecutor, *, kill: bool) -> None:
    processes = list(getattr(executor, "_processes", {}).values())
    if kill:
        # A hung decoder never returns: kill its processes; calls queued on them see
        # BrokenProcessPool and retry on the next pool.
        for process in processes:
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


def _init_worker(memory_limit: int, parent: int) -> None:
    # Ctrl+C in the terminal is for the app, which stops the pool itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    if sys.platform.startswith("linux"):
        import resource

        # The cap is on top of what the process already maps: a parent whose main module
        # imports torch makes spawned children import it too (GBs of reserved address space),
        # and an absolute cap would then leave no room to decode at all.
        soft = _mapped_bytes() + memory_limit
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                soft = min(soft, hard)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        except (ValueError, OSError):
            pass  # a stricter limit is already in force
    try:
        os.nice(BACKGROUND_NICENESS)  # decoding yields the cores to the GUI process
    except OSError:
        pass
    import cv2

    cv2.setNumThreads(1)  # one image per process; the pool is the parallelism


def _exit_with_parent(parent: int) -> None:
    """End this worker when the app is gone, even if it was killed without stopping the pool.

    A worker holds both ends of its call queue's pipe, so it never sees end-of-file when the
    parent dies; without this, a crashed or killed app leaves its decode processes running.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="decode-parent-watch", daemon=True).start()


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _guarded(name: str, memory_limit: int, fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except MemoryError:
        raise LoadError(
            name,
            "too_large",
            f"{Path(name).name} needs more memory to decode than one image may use "
            f"({memory_limit / 1024**3:.0f} GB)",
        ) from None


def allocation_fits(nbytes: int) -> bool:
    """Whether ``nbytes`` can be reserved here (the self-test asks a worker: is the cap on?)."""
    import numpy as np

    try:
        block = np.empty(nbytes, dtype=np.uint8)
    except MemoryError:
        return False
    del block
    return True
