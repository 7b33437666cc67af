"""Thumbnails (reduced decode, disk cache by SHA-256) and viewer images (decode, enhance, LRU)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_zoo.io import LoadError, read_image
from sall_desktop.imaging.enhance import Enhancement, EnhancePreset
from sall_desktop.services.images import ImageService
from sall_desktop.services.thumbnails import ThumbnailService
from tests.unit.services.conftest import HANG_GUARD_S


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (480, 640)) -> tuple[Path, str]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path, read_image(path, reduce=8).meta.sha256


@pytest.fixture
def no_new_threads():  # type: ignore[no-untyped-def]
    before = set(threading.enumerate())
    yield
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_thumbnail_is_made_by_reduced_decode_and_cached_by_content(
    tmp_path: Path, no_new_threads
) -> None:  # type: ignore[no-untyped-def]
    path, sha = _jpeg(tmp_path / "a.jpg", 1)
    service = ThumbnailService(tmp_path / "cache", max_side=96)
    try:
        first = service.request(sha, str(path), width=640, height=480).result(timeout=HANG_GUARD_S)
        assert max(first.rgb.shape[:2]) == 96 and first.rgb.shape[:2] == (72, 96)
        assert not first.from_cache and service.cache_path(sha).is_file()
        moved = path.rename(tmp_path / "renamed.jpg")  # a new path, the same content
        second = service.request(sha, str(moved), width=640, height=480).result(
            timeout=HANG_GUARD_S
        )
        assert second.from_cache and second.rgb.shape == first.rgb.shape
    finally:
        service.close()


def test_thumbnail_errors_are_readable_and_a_changed_file_is_not_cached(tmp_path: Path) -> None:
    service = ThumbnailService(tmp_path / "cache", max_side=64)
    try:
        text = tmp_path / "notes.jpg"
        text.write_text("not an image")
        with pytest.raises(LoadError, match="notes.jpg"):
            service.request("0" * 64, str(text)).result(timeout=HANG_GUARD_S)
        path, sha = _jpeg(tmp_path / "b.jpg", 2)
        _jpeg(path, 3)  # the file changed after it was catalogued
        with pytest.raises(LoadError, match="changed on disk"):
            service.request(sha, str(path)).result(timeout=HANG_GUARD_S)
        assert not service.cache_path(sha).exists()
    finally:
        service.close()


def test_duplicate_requests_share_a_future_and_cancel_drops_queued(tmp_path: Path) -> None:
    service = ThumbnailService(tmp_path / "cache", max_side=64, workers=1)
    try:
        items = [_jpeg(tmp_path / f"{i}.jpg", i) for i in range(30)]
        futures = [service.request(sha, str(p)) for p, sha in items]
        assert service.request(items[-1][1], str(items[-1][0])) is futures[-1]
        dropped = service.cancel_pending()
        assert dropped > 0 and sum(f.cancelled() for f in futures) == dropped
        done = [f for f in futures if not f.cancelled()]
        assert all(f.result(timeout=HANG_GUARD_S).rgb.size for f in done)
    finally:
        service.close()


def test_viewer_image_is_decoded_enhanced_and_cached(tmp_path: Path, no_new_threads) -> None:  # type: ignore[no-untyped-def]
    path, sha = _jpeg(tmp_path / "c.jpg", 4, size=(60, 80))
    service = ImageService(workers=2)
    try:
        plain = service.view(sha, str(path)).result(timeout=HANG_GUARD_S)
        assert plain.rgb.shape == (60, 80, 3) and plain.enhancement.is_identity
        assert service.view(sha, str(path)).result() is plain  # cached
        look = Enhancement(EnhancePreset.RED_FREE)
        shown = service.view(sha, str(path), look).result(timeout=HANG_GUARD_S)
        assert shown.enhancement == look and np.array_equal(shown.rgb[:, :, 0], plain.rgb[:, :, 1])
        with pytest.raises(LoadError):
            # not the content it names
            service.view("f" * 64, str(path)).result(timeout=HANG_GUARD_S)
    finally:
        service.close()


def test_viewer_cache_is_bounded_by_memory(tmp_path: Path) -> None:
    items = [_jpeg(tmp_path / f"{i}.jpg", i, size=(100, 100)) for i in range(6)]
    service = ImageService(workers=1, cache_bytes=3 * 100 * 100 * 3)
    try:
        for p, sha in items:
            service.view(sha, str(p)).result(timeout=HANG_GUARD_S)
        first_sha = items[0][1]
        assert (first_sha, Enhancement()) not in service._cache
        assert (items[-1][1], Enhancement()) in service._cache
    finally:
        service.close()
