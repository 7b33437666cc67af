"""Prepared-input cache: exact round trip, keyed by content and spec, damage is a miss, LRU."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from model_zoo.prepare import InputSpec
from sall_desktop.store.input_cache import InputCache, prune_inputs

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def _image(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)


@pytest.fixture
def cache(tmp_path: Path) -> InputCache:
    return InputCache(tmp_path / "inputs", InputSpec(32, "bilinear", fundus_crop=True))


def _execute(cache: InputCache, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Run SQL on the cache's database from a connection of the test's own."""
    with sqlite3.connect(cache.database) as connection:
        return connection.execute(sql, args).fetchall()


def test_round_trip_is_exact_and_keyed_by_content(cache: InputCache) -> None:
    image = _image(32)
    assert SHA_A not in cache and cache.get(SHA_A) is None
    assert cache.put(SHA_A, image)
    assert SHA_A in cache and SHA_B not in cache
    got = cache.get(SHA_A)
    assert got is not None and got.dtype == np.uint8 and got.shape == (32, 32, 3)
    assert np.array_equal(got, image)
    many = cache.get_many([SHA_A, SHA_B, SHA_C, SHA_A])
    assert list(many) == [SHA_A] and np.array_equal(many[SHA_A], image)
    assert cache.get_many([]) == {}
    assert cache.put(SHA_A, _image(32, seed=1))  # replaced, not duplicated
    assert _execute(cache, "SELECT count(*) FROM inputs") == [(1,)]


def test_a_read_returns_rows_of_one_block_in_the_order_asked(cache: InputCache) -> None:
    images = {sha: _image(32, seed=n) for n, sha in enumerate((SHA_A, SHA_B, SHA_C))}
    for sha, image in images.items():
        cache.put(sha, image)
    asked = [SHA_C, SHA_A, "d" * 64, SHA_B]  # not in the index's order, one missing
    found = cache.get_many(asked)
    assert set(found) == set(images)
    block = found[SHA_C].base
    assert block is not None and all(found[sha].base is block for sha in images)
    for position, sha in enumerate(asked):
        if sha in found:
            assert np.array_equal(found[sha], images[sha])
            assert np.shares_memory(found[sha], block[position])  # its place in the order


def test_a_wrong_shape_is_refused(cache: InputCache) -> None:
    with pytest.raises(ValueError, match="32×32×3"):
        cache.put(SHA_A, _image(16))
    with pytest.raises(ValueError):
        cache.put(SHA_A, _image(32).astype(np.float32))


@pytest.mark.parametrize("damage", ["flip_pixel", "truncate", "side"])
def test_a_damaged_entry_is_a_miss_and_is_removed(cache: InputCache, damage: str) -> None:
    cache.put(SHA_A, _image(32))
    [(pixels,)] = _execute(cache, "SELECT pixels FROM inputs")
    data = bytearray(pixels)  # type: ignore[arg-type]
    if damage == "flip_pixel":
        data[-1] ^= 0x01  # one bit of the last pixel: only the CRC can tell
    elif damage == "truncate":
        data = data[: len(data) // 2]
    if damage == "side":
        _execute(cache, "UPDATE inputs SET side = 48")
    else:
        _execute(cache, "UPDATE inputs SET pixels = ?", bytes(data))
    cache.put(SHA_B, _image(32, seed=1))
    assert list(cache.get_many([SHA_A, SHA_B])) == [SHA_B]  # the sound one is still read
    assert SHA_A not in cache and SHA_B in cache
    assert cache.get(SHA_A) is None
    assert cache.put(SHA_A, _image(32))  # and it can be prepared again


def test_a_damaged_database_is_ignored_not_deleted(cache: InputCache) -> None:
    cache.put(SHA_A, _image(32))
    for suffix in ("-wal", "-shm"):
        Path(f"{cache.database}{suffix}").unlink(missing_ok=True)
    garbage = b"this is not a database" * 100
    cache.database.write_bytes(garbage)  # damaged at rest

    def fresh_thread() -> tuple[object, ...]:
        # A new thread opens its own connection, as the next session's processes would.
        got, stored, seen = cache.get(SHA_A), cache.put(SHA_B, _image(32)), SHA_B in cache
        return got, stored, seen, prune_inputs(cache.root, max_bytes=0)

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(fresh_thread).result() == (None, False, False, 0)
    assert cache.database.read_bytes() == garbage  # never deleted (R7): a person decides


def test_writes_from_another_process_are_seen(cache: InputCache) -> None:
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from model_zoo.prepare import InputSpec\n"
        "from sall_desktop.store.input_cache import InputCache\n"
        "cache = InputCache(Path(sys.argv[1]), InputSpec(32, 'bilinear', fundus_crop=True))\n"
        "assert cache.put(sys.argv[2], np.full((32, 32, 3), 7, np.uint8))\n"
    )
    assert cache.get(SHA_C) is None  # this process has its connection open already
    subprocess.run([sys.executable, "-c", code, str(cache.root), SHA_C], check=True, timeout=60)
    got = cache.get(SHA_C)
    assert got is not None and (got == 7).all()


def test_writing_into_an_unwritable_place_reports_false(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    cache = InputCache(blocker, InputSpec(32, "bilinear"))
    assert cache.put(SHA_A, _image(32)) is False
    assert cache.get(SHA_A) is None


def test_prune_removes_the_least_recently_used_first(cache: InputCache) -> None:
    for n, sha in enumerate((SHA_A, SHA_B, SHA_C)):
        cache.put(sha, _image(32, seed=n))
        _execute(cache, "UPDATE inputs SET used = ? WHERE sha256 = ?", 1000.0 + n, sha)
    cache.get(SHA_A)  # a use (its mark is over an hour old) makes it the most recent
    entry = 32 * 32 * 3
    assert prune_inputs(cache.root, max_bytes=entry + entry // 2) == 2 * entry
    assert SHA_A in cache and SHA_B not in cache and SHA_C not in cache
    assert prune_inputs(cache.root, max_bytes=10 * entry) == 0


def test_prune_shares_the_budget_between_specs(tmp_path: Path) -> None:
    small = InputCache(tmp_path, InputSpec(32, "bilinear"))
    large = InputCache(tmp_path, InputSpec(64, "bilinear"))
    small.put(SHA_A, _image(32))
    large.put(SHA_A, _image(64))
    got = small.get(SHA_A)
    assert SHA_A in large and got is not None and got.shape[0] == 32
    prune_inputs(tmp_path, max_bytes=64 * 64 * 3)
    assert (SHA_A in small) + (SHA_A in large) == 1


def test_prune_of_a_missing_folder_is_a_no_op(tmp_path: Path) -> None:
    assert prune_inputs(tmp_path / "nothing", max_bytes=0) == 0
    assert not (tmp_path / "nothing").exists()
