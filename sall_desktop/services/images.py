"""Full-resolution images for the viewer: decoded and enhanced off the GUI thread, pre-decoded.

Qt-free. :meth:`ImageService.view` returns a future of the pixels to show for one image under
one display enhancement. Results are kept in a small memory-bounded LRU cache, so the viewer can
pre-decode the next image while the grader looks at the current one and then show it at once
(P3). Decoding goes through ``model_zoo.io`` (the only code that opens image files).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model_zoo.io import LoadError, read_image
from sall_desktop.imaging.enhance import Enhancement, apply_enhancement

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
"""Decoded and enhanced pixels kept in memory: about ten 3000×2000 images with their looks."""


@dataclass(frozen=True, slots=True)
class ViewImage:
    """Pixels ready to show.

    Args:
        sha256: the image.
        path: the file it was decoded from.
        rgb: H×W×3 uint8 RGB as shown (enhanced when ``enhancement`` is not the identity).
        enhancement: what was applied.
    """

    sha256: str
    path: str
    rgb: npt.NDArray[np.uint8]
    enhancement: Enhancement

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


_Key = tuple[str, Enhancement]


class ImageService:
    """Decode + enhance on a small thread pool, with request de-duplication and an LRU cache.

    Args:
        workers: threads (decoding and CLAHE release the GIL).
        cache_bytes: memory bound of the cache of finished images.

    Example:
        >>> images = ImageService()
        >>> shown = images.view(sha, path, Enhancement(EnhancePreset.CLAHE)).result()
    """

    def __init__(self, *, workers: int = 2, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        # Normal priority: a lowered thread that holds the GIL while the decode processes have
        # the cores keeps the GUI thread waiting for the GIL (ADR 0004).
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="image-decode")
        # Start every thread now (a barrier keeps each busy so the next submit adds one):
        # starting a thread waits until it runs, which under load stalls the GUI thread's first
        # request (P6).
        started = threading.Barrier(workers)
        for _ in range(workers):
            self._pool.submit(started.wait, 5.0)
        self._lock = threading.Lock()
        self._cache: OrderedDict[_Key, Future[ViewImage]] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._closed = False

    def view(
        self, sha256: str, path: str, enhancement: Enhancement | None = None
    ) -> Future[ViewImage]:
        """The pixels of ``path`` under ``enhancement``; cached, so a second call is instant.

        The future fails with ``LoadError`` (a grader-readable message) when the file cannot be
        decoded or no longer has the content ``sha256`` names.
        """
        look = enhancement if enhancement is not None else Enhancement()
        key = (sha256, look)
        with self._lock:
            if self._closed:
                raise RuntimeError("the image service is closed")
            future = self._usable_locked(key)
            if future is not None:
                return future
            base_key = (sha256, Enhancement())
            base = self._usable_locked(base_key)
            if base is None:
                base = self._pool.submit(self._decode, sha256, path)
                self._cache[base_key] = base
            if look.is_identity:
                future = base
            else:
                future = self._chain(base, look)
                self._cache[key] = future
        future.add_done_callback(lambda _: self._trim())
        return future

    def prefetch(self, sha256: str, path: str, enhancement: Enhancement | None = None) -> None:
        """Start decoding (and enhancing) in the background so a later :meth:`view` is instant."""
        self.view(sha256, path, enhancement)

    def close(self) -> None:
        """Cancel queued work and join the workers."""
        with self._lock:
            self._closed = True
            self._cache.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ internals
    def _usable_locked(self, key: _Key) -> Future[ViewImage] | None:
        # A failed or cancelled result is not kept: the next view retries (the file may be back).
        future = self._cache.get(key)
        if future is None:
            return None
        if future.cancelled() or (future.done() and future.exception() is not None):
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return future

    def _chain(self, base: Future[ViewImage], look: Enhancement) -> Future[ViewImage]:
        out: Future[ViewImage] = Future()

        def enhance(original: ViewImage) -> None:
            try:
                rgb = apply_enhancement(original.rgb, look)
            except Exception as exc:  # reported through the future, never lost
                out.set_exception(exc)
            else:
                out.set_result(ViewImage(original.sha256, original.path, rgb, look))

        def on_base(done: Future[ViewImage]) -> None:
            if done.cancelled():
                out.cancel()
                return
            error = done.exception()
            if error is not None:
                out.set_exception(error)
                return
            if not out.set_running_or_notify_cancel():
                return
            try:
                self._pool.submit(enhance, done.result())
            except RuntimeError as exc:  # closed meanwhile
                out.set_exception(exc)

        base.add_done_callback(on_base)
        return out

    @staticmethod
    def _decode(sha256: str, path: str) -> ViewImage:
        loaded = read_image(path)
        if loaded.meta.sha256 != sha256:
            message = f"{Path(path).name} changed on disk since the folder was opened"
            raise LoadError(path, "io_error", message)
        return ViewImage(sha256, path, loaded.rgb, Enhancement())

    def _trim(self) -> None:
        with self._lock:
            total = 0
            for future in reversed(self._cache.values()):
                if future.done() and not future.cancelled() and future.exception() is None:
                    total += future.result().rgb.nbytes
            while total > self._cache_bytes and len(self._cache) > 2:
                _, oldest = self._cache.popitem(last=False)
                if oldest.done() and not oldest.cancelled() and oldest.exception() is None:
                    total -= oldest.result().rgb.nbytes
