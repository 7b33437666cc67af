"""R3 for exports: a SIGKILLed export leaves the old file or the complete new one; a failed
replace (a file locked by Excel) leaves the original untouched and says so.

The exporting child is forked from the test process (no interpreter start per trial, so a
trial costs the export itself). It reads labels from an in-memory snapshot rather than a SQLite
store: what is under test is the file replacement, and filling a store with 50,000 audited
gradings would take minutes.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from model_zoo.fileio import TEMP_PREFIX, remove_stale_temp_files
from sall_desktop.domain.grades import Grading, ImageRecord
from sall_desktop.services.labels_io import ExportError, export_labels

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork and SIGKILL"
)


class Snapshot:
    """Read side of the label store, frozen in memory (``list_images``/``current_gradings``)."""

    def __init__(self, images: Sequence[ImageRecord], gradings: Sequence[Grading]) -> None:
        self._images, self._gradings = list(images), list(gradings)

    def list_images(self) -> list[ImageRecord]:
        return list(self._images)

    def current_gradings(self, *, grader: str | None = None) -> list[Grading]:
        return [g for g in self._gradings if grader in (None, g.grader)]


def snapshots(rows: int) -> tuple[Snapshot, Snapshot]:
    images = [ImageRecord(f"{n:064x}", f"/data/site/{n}_left.jpeg") for n in range(rows)]
    stamp = "2026-11-25T12:00:00.000000+00:00"

    def version(shift: int) -> Snapshot:
        gradings = [
            Grading(
                image.sha256,
                "Ann",
                dr_grade=(n + shift) % 5,
                amd_grade=n % 4,
                notes=f"=note {n}",
                created_at=stamp,
            )
            for n, image in enumerate(images)
        ]
        return Snapshot(images, gradings)

    return version(0), version(1)


def export(snapshot: Snapshot, out: Path) -> None:
    export_labels(snapshot, "canonical", out, identified=True, include_notes=True)  # type: ignore[arg-type]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kill_campaign(tmp_path: Path, rows: int, trials: int) -> None:
    versions = snapshots(rows)
    out = tmp_path / "labels.csv"
    hashes = []
    started = time.perf_counter()
    for version in versions:
        export(version, out)
        hashes.append(digest(out))
    duration = (time.perf_counter() - started) / 2
    assert hashes[0] != hashes[1]
    rng = random.Random(20261125)
    outcomes = {"old": 0, "new": 0, "temp_left": 0}
    current = 1  # the file holds version 1 now
    for _ in range(trials):
        target = 1 - current
        pid = os.fork()
        if pid == 0:  # child: export the other version, then vanish without cleanup
            try:
                export(versions[target], out)
            finally:
                os._exit(0)
        # Kill anywhere from half-way through to after a normal finish.
        time.sleep(rng.uniform(0.5, 1.5) * duration)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        found = digest(out)
        assert found in hashes, "the export left a torn file"
        if found == hashes[target]:
            outcomes["new"] += 1
            current = target
        else:
            outcomes["old"] += 1
        # Simulated restart: stale temporaries are removed and nothing else is touched.
        stale = remove_stale_temp_files(tmp_path)
        outcomes["temp_left"] += bool(stale)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert digest(out) == found
    # Random kills land before or after the replace as the machine's speed has it; the two
    # sides of the replace itself are killed on purpose, so both outcomes are always checked.
    for after in (False, True):
        current = _kill_at_the_replace(versions, hashes, out, current, after=after)


def _kill_at_the_replace(
    versions: Sequence[Snapshot], hashes: list[str], out: Path, current: int, *, after: bool
) -> int:
    """Kill an exporting child just before (or just after) its ``os.replace``: the file holds
    the old (or the new) version, whole. Returns the version the file holds."""
    target = 1 - current
    reached, signal_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: stop at the replace, say so, and wait to be killed
        try:
            replace = os.replace

            def stop_at_replace(src: object, dst: object) -> None:
                if after:
                    replace(src, dst)  # type: ignore[arg-type]
                os.write(signal_write, b"x")
                time.sleep(3600)

            os.replace = stop_at_replace  # type: ignore[assignment]
            export(versions[target], out)
        finally:
            os._exit(0)
    os.close(signal_write)
    try:
        assert os.read(reached, 1) == b"x", "the export never reached its replace"
    finally:
        os.close(reached)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    expected = target if after else current
    assert digest(out) == hashes[expected]
    remove_stale_temp_files(out.parent)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    return expected


@pytest.mark.slow
def test_sigkill_during_export_leaves_old_or_new_file(tmp_path: Path) -> None:
    kill_campaign(tmp_path, rows=3_000, trials=30)


@pytest.mark.long
def test_sigkill_during_50k_row_export_200_times(tmp_path: Path) -> None:
    kill_campaign(tmp_path, rows=50_000, trials=200)


def test_failed_replace_leaves_the_original_and_raises_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = snapshots(20)
    out = tmp_path / "labels.csv"
    export(old, out)
    before = out.read_bytes()

    def locked(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", locked)
    with pytest.raises(ExportError, match="open in another program") as info:
        export(new, out)
    assert "previous file is unchanged" in str(info.value)
    assert isinstance(info.value.__cause__, PermissionError)
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
