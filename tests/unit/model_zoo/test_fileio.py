"""Atomic replacement keeps the old file on failure, cleans its temp file and keeps modes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_zoo.fileio import (
    TEMP_PREFIX,
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    remove_stale_temp_files,
)


def test_write_replaces_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    atomic_write_text(target, "a\n")
    atomic_write_text(target, "b\n")
    assert target.read_text() == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_an_exception_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_writer(target, "wb") as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk went away")
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))


def test_a_failed_replace_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "labels.csv"
    atomic_write_text(target, "old\n")

    def locked(src: object, dst: object) -> None:
        raise PermissionError("file is open in another program")

    monkeypatch.setattr(os, "replace", locked)
    with pytest.raises(PermissionError):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_new_files_are_readable_and_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.txt"
    atomic_write_text(fresh, "x")
    assert fresh.stat().st_mode & 0o777 == 0o644
    private = tmp_path / "private.txt"
    private.write_text("x")
    private.chmod(0o600)
    atomic_write_text(private, "y")
    assert private.stat().st_mode & 0o777 == 0o600


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / f"{TEMP_PREFIX}abc.csv").write_text("torn")
    (tmp_path / "labels.sqlite-wal").write_text("keep")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [f"{TEMP_PREFIX}abc.csv"]
    assert (tmp_path / "labels.sqlite-wal").exists()


def test_package_sets_the_same_opencv_pixel_cap_as_the_decoder() -> None:
    import subprocess
    import sys

    code = (
        "import os; os.environ.pop('OPENCV_IO_MAX_IMAGE_PIXELS', None)\n"
        "import model_zoo, model_zoo.io.limits as l\n"
        "assert os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'] == str(l.DEFAULT_MAX_PIXELS)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
