"""Folder catalogue: streaming, cancellable scan; identity by content; duplicates; bad files."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_zoo.prepare import InputSpec, read_for_model
from sall_desktop.domain.grades import FieldSource, Laterality
from sall_desktop.services.catalogue import (
    FolderCatalogue,
    FoundFile,
    describe_file,
    describe_files,
    scan_files,
)
from sall_desktop.services.folder_scan import scan_folder
from sall_desktop.store.input_cache import InputCache
from tests.unit.services.conftest import HANG_GUARD_S


def _write_jpeg(path: Path, seed: int, size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    _write_jpeg(root / "10_left.jpg", 1)
    _write_jpeg(root / "10_right.jpg", 2)
    _write_jpeg(root / "sub" / "b" / "11_left.jpeg", 3)
    _write_jpeg(root / "sub" / "a.png", 4)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    _write_jpeg(root / ".hidden" / "x.jpg", 5)
    return root


def test_scan_finds_images_recursively_in_stable_order_and_skips_the_rest(folder: Path) -> None:
    found = [f.path.relative_to(folder).as_posix() for f in scan_files(folder)]
    assert found == ["10_left.jpg", "10_right.jpg", "sub/a.png", "sub/b/11_left.jpeg"]


def test_scan_stops_when_cancelled(tmp_path: Path) -> None:
    for i in range(30):
        _write_jpeg(tmp_path / f"img{i:02d}.jpg", i, size=8)
    cancel = threading.Event()
    seen = []
    for found in scan_files(tmp_path, cancel=cancel):
        seen.append(found)
        if len(seen) == 5:
            cancel.set()
    assert len(seen) == 5


def test_suffixless_dicom_is_found_by_its_preamble(tmp_path: Path) -> None:
    (tmp_path / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    (tmp_path / "README").write_text("hello")
    assert [f.path.name for f in scan_files(tmp_path)] == ["IM0001"]


def test_catalogue_describes_each_file_with_identity_and_filename_laterality(folder: Path) -> None:
    batches: list[list[FoundFile]] = []
    catalogue = FolderCatalogue(folder, on_found=batches.append, batch=2).start()
    assert catalogue.wait(timeout=HANG_GUARD_S)
    assert [len(b) for b in batches] == [2, 2]
    by_name = {d.found.path.name: d for d in catalogue.results}
    left = by_name["10_left.jpg"].record
    assert left is not None
    assert (
        left.laterality is Laterality.LEFT and left.laterality_source is FieldSource.FILENAME_RULE
    )
    assert left.patient_id == "10"
    assert len(left.sha256) == 64 and left.width == 48 and left.height == 48


def test_duplicate_content_is_flagged_and_renames_keep_identity(
    folder: Path, tmp_path: Path
) -> None:
    original = folder / "10_left.jpg"
    copy = folder / "zz_copy.jpg"
    copy.write_bytes(original.read_bytes())
    summary = scan_folder(folder)
    assert summary.duplicates == ((copy, original),)
    before = {Path(r.path).name: r.sha256 for r in summary.records}

    moved = tmp_path / "moved"
    folder.rename(moved)
    (moved / "10_left.jpg").rename(moved / "renamed.jpg")
    after = {Path(r.path).name: r.sha256 for r in scan_folder(moved).records}
    assert after["renamed.jpg"] == before["10_left.jpg"]


def test_one_byte_change_is_a_different_image(tmp_path: Path) -> None:
    a = _write_jpeg(tmp_path / "a.jpg", 7)
    data = bytearray(a.read_bytes())
    data[-3] ^= 0xFF  # inside the entropy-coded data, still decodable
    (tmp_path / "b.jpg").write_bytes(bytes(data))
    records = {Path(r.path).name: r.sha256 for r in scan_folder(tmp_path).records}
    assert records["a.jpg"] != records["b.jpg"]


def test_unreadable_files_are_reported_and_the_scan_goes_on(folder: Path) -> None:
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture\n")
    summary = scan_folder(folder)
    failed = {path.name: reason for path, reason in summary.failures}
    assert set(failed) == {"broken.jpg", "empty.png", "text.jpg"}
    assert all(reason for reason in failed.values())
    assert len(summary.records) == 4


def test_an_unexpected_describe_error_costs_one_file_not_the_folder(tmp_path: Path) -> None:
    _write_jpeg(tmp_path / "a.jpg", 1)
    _write_jpeg(tmp_path / "b.jpg", 2)

    def explode_on_a(found: FoundFile) -> object:
        if found.path.name == "a.jpg":
            raise RuntimeError("decoder bug")
        from sall_desktop.services.catalogue import describe_file

        return describe_file(found)

    catalogue = FolderCatalogue(tmp_path, describe=explode_on_a).start()  # type: ignore[arg-type]
    assert catalogue.wait(timeout=HANG_GUARD_S)
    by_name = {d.found.path.name: d for d in catalogue.results}
    assert by_name["a.jpg"].record is None and "decoder bug" in (by_name["a.jpg"].error or "")
    assert by_name["b.jpg"].record is not None


def test_describing_with_an_input_cache_leaves_the_model_input_of_one_read(
    tmp_path: Path,
) -> None:
    path = _write_jpeg(tmp_path / "a.jpg", 7, size=400)
    spec = InputSpec(96, "bilinear", fundus_crop=True)
    cache = InputCache(tmp_path / "inputs", spec)
    record = describe_file(FoundFile(path, 0, 0), cache)
    plain = describe_file(FoundFile(path, 0, 0))
    assert record == plain  # the same identity and metadata, whatever resolution was decoded
    cached = cache.get(record.sha256)
    assert cached is not None
    # Bit for bit what the model's own read of the file prepares.
    assert np.array_equal(cached, spec.prepare(read_for_model(path, 96).rgb))


def test_a_failing_input_cache_never_fails_the_description(tmp_path: Path) -> None:
    path = _write_jpeg(tmp_path / "a.jpg", 8, size=64)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x", encoding="utf-8")
    [outcome] = describe_files([FoundFile(path, 0, 0)], InputCache(blocker, InputSpec(32, "area")))
    assert not isinstance(outcome, str) and outcome.width == 64


def test_preparing_inputs_in_a_decode_process_never_imports_torch(tmp_path: Path) -> None:
    # The catalogue's decode processes prepare inputs; torch there would cost each ~3 s and
    # hundreds of MB.
    path = _write_jpeg(tmp_path / "a.jpg", 1, size=96)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sall_desktop.store.input_cache import InputCache\n"
        "from model_zoo.prepare import InputSpec\n"
        "from sall_desktop.services.catalogue import FoundFile, describe_files\n"
        "cache = InputCache(Path(sys.argv[2]), InputSpec(64, 'bilinear', fundus_crop=True))\n"
        "[record] = describe_files([FoundFile(Path(sys.argv[1]), 0, 0)], cache)\n"
        "assert record.sha256 in cache, record\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "inputs")],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=True,
    )
    assert out.stdout.strip() == "False"
