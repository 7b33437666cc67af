"""Prepared-input cache: exact round trip, keyed by content and spec, damage is a miss, LRU."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from model_zoo.fileio import TEMP_PREFIX
from model_zoo.input_cache import InputCache, prune_inputs
from model_zoo.prepare import InputSpec, read_for_model
from model_zoo.transforms import eval_transform

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def _image(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)


@pytest.fixture
def cache(tmp_path: Path) -> InputCache:
    return InputCache(tmp_path / "inputs", InputSpec(32, "bilinear", fundus_crop=True))


def test_round_trip_is_exact_and_keyed_by_content(cache: InputCache) -> None:
    image = _image(32)
    assert SHA_A not in cache and cache.get(SHA_A) is None
    assert cache.put(SHA_A, image)
    assert SHA_A in cache and SHA_B not in cache
    got = cache.get(SHA_A)
    assert got is not None and got.dtype == np.uint8 and got.shape == (32, 32, 3)
    assert np.array_equal(got, image)
    assert cache.path(SHA_A).parent.name == SHA_A[:2]


def test_a_wrong_shape_is_refused(cache: InputCache) -> None:
    with pytest.raises(ValueError, match="32×32×3"):
        cache.put(SHA_A, _image(16))
    with pytest.raises(ValueError):
        cache.put(SHA_A, _image(32).astype(np.float32))


@pytest.mark.parametrize("damage", ["truncate", "flip_pixel", "flip_magic", "empty"])
def test_a_damaged_entry_is_a_miss_and_is_removed(cache: InputCache, damage: str) -> None:
    cache.put(SHA_A, _image(32))
    path = cache.path(SHA_A)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_pixel":
        data[-1] ^= 0x01  # one bit of the last pixel: only the CRC can tell
    elif damage == "flip_magic":
        data[0] ^= 0xFF
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    assert cache.get(SHA_A) is None
    assert not path.exists()
    assert cache.put(SHA_A, _image(32))  # and it can be prepared again


def test_an_entry_of_another_size_is_a_miss(tmp_path: Path) -> None:
    small = InputCache(tmp_path, InputSpec(32, "bilinear"))
    small.put(SHA_A, _image(32))
    # Same folder and name, another input size (a forged key would be needed; simulate it).
    large = InputCache(tmp_path, InputSpec(48, "bilinear"))
    large.path(SHA_A).parent.mkdir(parents=True, exist_ok=True)
    large.path(SHA_A).write_bytes(small.path(SHA_A).read_bytes())
    assert large.get(SHA_A) is None


def test_specs_that_change_the_pixels_have_their_own_keys() -> None:
    base = InputSpec(224, "bilinear", fundus_crop=True, crop_threshold=10)
    variants = [
        InputSpec(256, "bilinear", fundus_crop=True, crop_threshold=10),
        InputSpec(224, "bicubic", fundus_crop=True, crop_threshold=10),
        InputSpec(224, "bilinear", fundus_crop=False, crop_threshold=10),
        InputSpec(224, "bilinear", fundus_crop=True, crop_threshold=20),
    ]
    keys = {base.key, *(v.key for v in variants)}
    assert len(keys) == 5
    assert InputSpec(224, "bilinear", True, 10).key == base.key  # deterministic


def test_the_spec_of_a_card_is_the_transform_s(card_factory) -> None:
    card = card_factory(input_size=96, fundus_crop=True)
    card = card.replace(preprocessing={**card.preprocessing, "crop_threshold": 12})
    spec = InputSpec.of(card)
    assert spec == eval_transform(card).input_spec
    assert (spec.input_size, spec.fundus_crop, spec.crop_threshold) == (96, True, 12)


def test_a_fine_tuned_version_shares_its_parent_s_inputs(card_factory) -> None:
    parent = card_factory(input_size=64)
    child = parent.replace(id="e" * 64, version="2", mean=(0.4, 0.4, 0.4))
    # Normalisation is applied after the cache, so it does not split the key.
    assert InputSpec.of(parent).key == InputSpec.of(child).key


def test_writing_into_an_unwritable_place_reports_false(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    cache = InputCache(blocker, InputSpec(32, "bilinear"))
    assert cache.put(SHA_A, _image(32)) is False
    assert cache.get(SHA_A) is None


def test_prune_removes_the_least_recently_used_first(cache: InputCache) -> None:
    for n, sha in enumerate((SHA_A, SHA_B, SHA_C)):
        cache.put(sha, _image(32, seed=n))
        past = time.time() - 1000 + 100 * n
        os.utime(cache.path(sha), (past, past))
    cache.get(SHA_A)  # a use makes it the most recent
    stale = cache.path(SHA_B).parent / f"{TEMP_PREFIX}123-{SHA_B}.input"
    stale.write_bytes(b"half a write")
    entry = cache.path(SHA_A).stat().st_size
    freed = prune_inputs(cache.root, max_bytes=entry + entry // 2)
    assert freed == 2 * entry
    assert SHA_A in cache and SHA_B not in cache and SHA_C not in cache
    assert not stale.exists()
    assert prune_inputs(cache.root, max_bytes=10 * entry) == 0


def test_prune_of_a_missing_folder_is_a_no_op(tmp_path: Path) -> None:
    assert prune_inputs(tmp_path / "nothing", max_bytes=0) == 0


def test_read_for_model_decodes_at_the_reduction_the_size_calls_for(
    tmp_path: Path, write_jpeg, fundus_image
) -> None:
    path = write_jpeg(tmp_path / "a.jpg", fundus_image(400, 600))
    # Short side 400: 1/4 gives 100 >= 96; 1/8 would give 50.
    for hint in (8, 4, 1):
        loaded = read_for_model(path, 96, reduce_hint=hint)
        assert loaded.rgb.shape == (100, 150, 3)
        assert loaded.meta.width == 600 and loaded.meta.height == 400
