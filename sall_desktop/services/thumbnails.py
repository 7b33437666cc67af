"""Thumbnails: reduced decoding in the decode processes, cached on disk by image SHA-256.

Qt-free. A grid asks for the thumbnails of the rows it is painting; the newest request is served
first (a grader scrolling through 10,000 images wants the screen they are looking at, not the
one they scrolled past), duplicate requests share one future, and a folder switch drops what is
still queued. The disk cache is keyed by content, so a renamed or moved image keeps its
thumbnail, and each cache file is written atomically (R3).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from model_zoo.fileio import atomic_write_bytes
from model_zoo.io import LoadError, read_image
from sall_desktop.imaging.thumbnails import fit_within, reduce_factor_for
from sall_desktop.services.background import background_priority
from sall_desktop.services.decode_pool import DecodePool

DEFAULT_MAX_SIDE = 192
CACHE_QUALITY = 90
"""JPEG quality of cached thumbnails: visually lossless at thumbnail size, ~15 KB each."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A thumbnail of one image.

    Args:
        sha256: the image.
        rgb: h×w×3 uint8 RGB with max(h, w) <= the requested long side.
        from_cache: True when it came from the disk cache, not from decoding the image.
    """

    sha256: str
    rgb: npt.NDArray[np.uint8]
    from_cache: bool = False


@dataclass(frozen=True, slots=True)
class _Request:
    sha256: str
    path: str
    width: int
    height: int
    max_side: int
    future: Future[Thumbnail]


class ThumbnailService:
    """Background thumbnail maker with a content-addressed disk cache.

    Args:
        cache_dir: folder for cached thumbnails (``<data dir>/thumbnails``).
        max_side: default long side of a thumbnail in pixels.
        workers: threads that serve requests; each waits on the decode pool for a cache miss.
        decoder: where files are decoded (default: on those threads, without isolation).

    Example:
        >>> service = ThumbnailService(data_dir() / "thumbnails")
        >>> thumb = service.request(record.sha256, record.path, width=record.width).result()
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        workers: int = 2,
        decoder: DecodePool | None = None,
    ) -> None:
        if max_side <= 0:
            raise ValueError("max_side must be positive")
        self.cache_dir = Path(cache_dir)
        self.max_side = max_side
        self._decoder = decoder if decoder is not None else DecodePool(0)
        self._lock = threading.Condition()
        self._stack: list[_Request] = []
        self._inflight: dict[tuple[str, int], Future[Thumbnail]] = {}
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"thumbnail-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def cache_path(self, sha256: str, max_side: int | None = None) -> Path:
        """Where the thumbnail of ``sha256`` at ``max_side`` is (or will be) cached."""
        side = self.max_side if max_side is None else max_side
        return self.cache_dir / sha256[:2] / f"{sha256}_{side}.jpg"

    def request(
        self,
        sha256: str,
        path: str,
        *,
        width: int = 0,
        height: int = 0,
        max_side: int | None = None,
    ) -> Future[Thumbnail]:
        """Queue a thumbnail; the newest request is served first.

        Args:
            sha256: the image identity (cache key).
            path: where the image file is now.
            width: full width if known (chooses the reduced-decode factor), else 0.
            height: full height if known, else 0.
            max_side: long side wanted; default the service's.

        Returns:
            A future with the :class:`Thumbnail`; it fails with ``LoadError`` (grader-readable)
            when the file cannot be decoded, and is cancelled by :meth:`cancel_pending`.
        """
        side = self.max_side if max_side is None else max_side
        key = (sha256, side)
        with self._lock:
            if self._closed:
                raise RuntimeError("the thumbnail service is closed")
            existing = self._inflight.get(key)
            if existing is not None:
                # Move it to the top: the caller is looking at it now.
                for i, queued in enumerate(self._stack):
                    if queued.future is existing:
                        self._stack.append(self._stack.pop(i))
                        break
                return existing
            future: Future[Thumbnail] = Future()
            self._inflight[key] = future
            self._stack.append(_Request(sha256, path, width, height, side, future))
            self._lock.notify()
        return future

    def cancel_pending(self) -> int:
        """Drop every request not started yet (a new folder was opened); return how many."""
        with self._lock:
            dropped, self._stack = self._stack, []
            for request in dropped:
                self._inflight.pop((request.sha256, request.max_side), None)
        for request in dropped:
            request.future.cancel()
        return len(dropped)

    def close(self) -> None:
        """Cancel queued requests and join the workers (those in progress finish first)."""
        self.cancel_pending()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join()

    # ------------------------------------------------------------------ workers
    def _work(self) -> None:
        if self._decoder.workers == 0:
            # Decoding here: yield the cores. Not with a pool: then this thread only waits, and
            # lowered it could hold the GIL while the decode processes run (see decode_pool).
            background_priority()
        while True:
            with self._lock:
                while not self._stack and not self._closed:
                    self._lock.wait()
                if self._closed and not self._stack:
                    return
                request = self._stack.pop()
            if not request.future.set_running_or_notify_cancel():
                continue
            try:
                result = self._make(request)
            except LoadError as exc:
                self._settle(request, error=exc)
            except OSError as exc:
                message = f"{Path(request.path).name} could not be read: {exc.strerror or exc}"
                self._settle(request, error=LoadError(request.path, "io_error", message))
            except Exception as exc:  # a bug must still reach the caller, never kill the worker
                self._settle(request, error=exc)
            else:
                self._settle(request, result=result)

    def _settle(
        self,
        request: _Request,
        *,
        result: Thumbnail | None = None,
        error: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._inflight.pop((request.sha256, request.max_side), None)
        if error is not None:
            request.future.set_exception(error)
        else:
            assert result is not None
            request.future.set_result(result)

    def _make(self, request: _Request) -> Thumbnail:
        cached = self.cache_path(request.sha256, request.max_side)
        if cached.is_file():
            try:
                rgb = read_image(cached).rgb
            except LoadError:
                cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never shown
            else:
                return Thumbnail(request.sha256, rgb, from_cache=True)
        reduce = reduce_factor_for(request.width, request.height, request.max_side)
        rgb = self._decoder.run(
            make_thumbnail,
            request.path,
            request.sha256,
            reduce,
            request.max_side,
            str(cached),
            name=request.path,
        )
        return Thumbnail(request.sha256, rgb)


def make_thumbnail(
    path: str, sha256: str, reduce: int, max_side: int, cache_path: str
) -> npt.NDArray[np.uint8]:
    """Decode ``path`` reduced, fit it within ``max_side``, cache it as JPEG; the RGB pixels.

    Runs in a decode process, so it takes and returns only plain, picklable values.

    Raises:
        LoadError: the file cannot be decoded, or its content is no longer ``sha256``.
    """
    loaded = read_image(path, reduce=reduce)
    if loaded.meta.sha256 != sha256:
        # The file changed since it was catalogued: never cache its pixels under the old id.
        message = f"{Path(path).name} changed on disk since the folder was opened"
        raise LoadError(path, "io_error", message)
    rgb = fit_within(loaded.rgb, max_side)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, CACHE_QUALITY])
    if ok:
        try:
            atomic_write_bytes(Path(cache_path), encoded.tobytes())
        except OSError:
            pass  # a full or read-only cache disk costs speed next time, nothing else
    return rgb
