"""Decode processes: same results as in-thread decoding; a crash, hang or memory blow-up costs
one file and the pool recovers (R14, R15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from model_zoo.io import LoadError
from sall_desktop.services.catalogue import (
    FolderCatalogue,
    FoundFile,
    Outcome,
    describe_file,
    describe_files,
)
from sall_desktop.services.decode_pool import DecodePool, allocation_fits
from sall_desktop.services.thumbnails import make_thumbnail
from tests.unit.services.conftest import HANG_GUARD_S, wait_for


def _jpeg(path: Path, seed: int, size: int = 96) -> FoundFile:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    stat = path.stat()
    return FoundFile(path, stat.st_size, stat.st_mtime_ns)


@pytest.fixture
def pool():  # type: ignore[no-untyped-def]
    decode = DecodePool(1, timeout_s=HANG_GUARD_S)
    yield decode
    decode.close()


def test_results_from_a_decode_process_equal_those_decoded_in_this_thread(
    tmp_path: Path, pool: DecodePool
) -> None:
    good = _jpeg(tmp_path / "12_left.jpg", 1)
    bad_path = tmp_path / "bad.jpg"
    bad_path.write_text("not a picture")
    bad = FoundFile(bad_path, 13, 0)
    remote = pool.run(describe_files, [good, bad], name=str(good.path))
    assert remote == describe_files([good, bad])
    assert remote[0] == describe_file(good) and isinstance(remote[1], str)
    assert "bad.jpg" in remote[1]
    sha = remote[0].sha256  # type: ignore[union-attr]
    args = (str(good.path), sha, 2, 32)
    in_pool = pool.run(make_thumbnail, *args, str(tmp_path / "t1.jpg"), name=str(good.path))
    here = make_thumbnail(*args, str(tmp_path / "t2.jpg"))
    assert in_pool.shape == (32, 32, 3) and np.array_equal(in_pool, here)
    assert (tmp_path / "t1.jpg").read_bytes() == (tmp_path / "t2.jpg").read_bytes()


def test_a_file_that_kills_its_decoder_fails_alone_and_the_pool_recovers(
    pool: DecodePool,
) -> None:
    first_pid = pool.run(os.getpid, name="warm-up")
    with pytest.raises(LoadError) as caught:
        pool.run(os.abort, name="/study/crasher.jpg")  # SIGABRT in the worker, as a codec bug
    assert caught.value.reason == "decoder_crashed"
    assert "crasher.jpg" in str(caught.value) and "skipped" in str(caught.value)
    assert pool.rebuilds >= 1
    assert pool.run(os.getpid, name="after") not in (first_pid, os.getpid())


def test_a_crashing_file_in_a_chunk_costs_only_that_file(tmp_path: Path, pool: DecodePool) -> None:
    files = [_jpeg(tmp_path / f"{i:02d}.jpg", i) for i in range(6)]
    (tmp_path / "03.jpg").rename(tmp_path / "03_crash.jpg")
    files[3] = FoundFile(tmp_path / "03_crash.jpg", files[3].size, files[3].mtime_ns)
    chunks: list[int] = []

    def chunk_in_pool(chunk: list[FoundFile]) -> list[Outcome]:
        chunks.append(len(chunk))
        if any("crash" in f.path.name for f in chunk):
            return pool.run(os.abort, name=str(chunk[0].path))
        return pool.run(describe_files, chunk, name=str(chunk[0].path))

    catalogue = FolderCatalogue(tmp_path, describe_chunk=chunk_in_pool, chunk=4, workers=1)
    assert catalogue.start().wait(timeout=HANG_GUARD_S)
    by_name = {d.found.path.name: d for d in catalogue.results}
    assert len(by_name) == 6
    assert by_name["03_crash.jpg"].record is None
    assert "decoder" in (by_name["03_crash.jpg"].error or "")
    assert all(d.record is not None for name, d in by_name.items() if name != "03_crash.jpg")
    assert chunks[0] == 4 and chunks.count(1) == 4  # the crashed chunk was retried file by file


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux-only")
def test_decode_processes_are_memory_capped() -> None:
    capped = DecodePool(1, memory_limit=1024**3)
    try:
        assert capped.run(allocation_fits, 64 * 1024**2, name="small")
        assert not capped.run(allocation_fits, 2 * 1024**3, name="large")
        with pytest.raises(LoadError) as caught:
            capped.run(np.ones, 2 * 1024**3, np.uint8, name="/study/huge.tif")
        assert caught.value.reason == "too_large" and "huge.tif" in str(caught.value)
        assert capped.rebuilds == 0  # a refused allocation is an answer, not a crash
    finally:
        capped.close()
    assert allocation_fits(2 * 1024**3)  # this process is not capped: the limit is the pool's


def test_a_hung_decoder_is_stopped_and_the_next_file_is_served() -> None:
    # Only the hung call has a short limit: a pool starting slowly on a busy machine must not
    # be taken for a hung decoder. A sleep of 60 s that returns is no LoadError: it was stopped.
    hung = DecodePool(1, timeout_s=HANG_GUARD_S)
    try:
        with pytest.raises(LoadError, match="longer than 1 s") as caught:
            hung.run(time.sleep, 60, name="/study/slow.dcm", timeout_s=1.0)
        assert caught.value.reason == "decoder_crashed" and hung.rebuilds == 1
        assert hung.run(os.getpid, name="next") != os.getpid()
    finally:
        hung.close()


def test_no_workers_runs_on_the_calling_thread_and_a_closed_pool_refuses() -> None:
    inline = DecodePool(0)
    assert inline.run(threading.get_ident, name="x") == threading.get_ident()
    closing = DecodePool(1)
    closing.close()
    with pytest.raises(RuntimeError, match="closed"):
        closing.run(os.getpid, name="x")


_APP = """
import os, sys, time
from sall_desktop.services.decode_pool import DecodePool

if __name__ == "__main__":
    pool = DecodePool(2)
    pool.start()
    print(pool.run(os.getpid, name="ready"), flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_decode_processes_end_when_the_app_is_killed(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    script = tmp_path / "app.py"
    script.write_text(_APP)
    app = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert app.stdout is not None and app.stdout.readline().strip().isdigit()
        workers: list[Any] = []

        def both_started() -> bool:
            workers[:] = [
                child
                for child in psutil.Process(app.pid).children()
                if "spawn_main" in " ".join(child.cmdline())
            ]
            return len(workers) == 2

        wait_for(both_started, "two decode processes")
        app.send_signal(signal.SIGKILL)  # a crash: the pool is never closed
        app.wait(timeout=HANG_GUARD_S)
        gone, alive = psutil.wait_procs(workers, timeout=HANG_GUARD_S)
        assert not alive, f"orphaned decode processes: {[p.pid for p in alive]}"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()


# Runs in the decode process: says it started, then blocks until that process is gone.
_HUNG_CHILD = """
import os, pathlib, sys, time
parent = os.getppid()
pathlib.Path(sys.argv[1]).touch()
while os.getppid() == parent:
    time.sleep(0.1)
"""


def test_calls_queued_behind_a_hung_file_are_served_by_the_next_pool(tmp_path: Path) -> None:
    # Only the hung call has a short limit; the others (and the next pool's start) a hang guard.
    pool = DecodePool(1, timeout_s=HANG_GUARD_S)
    outcomes: dict[object, object] = {}
    started = tmp_path / "hung-started"

    def call(key: object, fn: Any, *args: Any, timeout_s: float | None = None) -> None:
        try:
            outcomes[key] = pool.run(fn, *args, name=f"/study/{key}.jpg", timeout_s=timeout_s)
        except Exception as exc:  # recorded: the assertions say which calls may fail
            outcomes[key] = exc

    argv = [sys.executable, "-c", _HUNG_CHILD, str(started)]
    try:
        pool.run(os.getpid, name="warm-up")
        hung = threading.Thread(
            target=call, args=("slow", subprocess.run, argv), kwargs={"timeout_s": 1.5}
        )
        hung.start()
        wait_for(started.exists, "the slow file running")  # the next ones queue behind it
        queued = [threading.Thread(target=call, args=(i, os.getpid)) for i in range(3)]
        for thread in queued:
            thread.start()
        for thread in [hung, *queued]:
            thread.join(timeout=HANG_GUARD_S)
    finally:
        pool.close()
    slow = outcomes["slow"]
    assert isinstance(slow, LoadError) and slow.reason == "decoder_crashed"
    # Stopping the hung decoder cancels or breaks the calls queued on its pool; each is retried.
    assert all(isinstance(outcomes[i], int) for i in range(3)), outcomes
