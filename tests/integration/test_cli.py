"""The headless command line runs the same services as the app: scan, import, export, inspect."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sall_desktop.__main__ import main


def _images(folder: Path) -> None:
    rng = np.random.default_rng(3)
    for stem in ("10_left", "10_right", "11_left"):
        assert cv2.imwrite(
            str(folder / f"{stem}.jpeg"), rng.integers(0, 255, (40, 40, 3), np.uint8)
        )


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "eyepacs"
    root.mkdir()
    _images(root)
    return root


def test_scan_import_export_round_trip(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "labels.sqlite")
    assert main(["--db", db, "scan", str(folder)]) == 0
    assert "3 images" in capsys.readouterr().out

    labels = tmp_path / "trainLabels.csv"
    labels.write_text("image,level\n10_left,2\n10_right,0\n11_left,4\n")
    argv = ["--db", db, "import", str(labels), "--format", "eyepacs", "--folder", str(folder)]
    assert main([*argv, "--as-grader", "Dr Ada"]) == 0

    out = tmp_path / "export.csv"
    assert (
        main(["--db", db, "export", "--format", "eyepacs", "--out", str(out), "--identified"]) == 0
    )
    with out.open(newline="") as handle:
        rows = {row["image"]: row["level"] for row in csv.DictReader(handle)}
    assert rows == {"10_left": "2", "10_right": "0", "11_left": "4"}


def test_import_refuses_to_overwrite_a_graders_grades_without_replace(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "labels.sqlite")
    first = tmp_path / "a.csv"
    first.write_text("image,level\n10_left,2\n")
    second = tmp_path / "b.csv"
    second.write_text("image,level\n10_left,3\n")
    base = [
        "--db",
        db,
        "import",
        "--format",
        "eyepacs",
        "--folder",
        str(folder),
        "--as-grader",
        "Dr Ada",
    ]
    assert main([*base[:3], str(first), *base[3:]]) == 0
    capsys.readouterr()
    main([*base[:3], str(second), *base[3:]])
    report = capsys.readouterr().out
    assert "10_left" in report
    out = tmp_path / "export.csv"
    assert (
        main(["--db", db, "export", "--format", "eyepacs", "--out", str(out), "--identified"]) == 0
    )
    assert "10_left,2" in out.read_text()


def test_inspect_prints_metadata_and_refuses_a_text_file(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(folder / "10_left.jpeg")]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["width"] == 40 and meta["laterality"] == "L" and meta["patient_id"] == "10"

    fake = tmp_path / "fake.jpg"
    fake.write_text("hello, I am not a photograph")
    assert main(["inspect", str(fake)]) == 1
    assert "fake.jpg" in capsys.readouterr().err


def test_console_script_entry_point_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sall_desktop", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "scan" in result.stdout


def test_a_database_held_by_another_instance_is_refused_clearly(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sall_desktop.store import open_store

    db = tmp_path / "labels.sqlite"
    holder = open_store(db)  # the running workstation
    try:
        assert main(["--db", str(db), "scan", str(folder)]) == 1
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert "another SALL Desktop program" in err and "look but not grade" not in err


def test_scan_of_a_relative_folder_stores_absolute_paths(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sall_desktop.store import open_store

    link = tmp_path / "link"
    link.symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "labels.sqlite"
    assert main(["--db", str(db), "scan", "link/../eyepacs"]) == 0
    assert main(["--db", str(db), "scan", "link"]) == 0  # the same files, by a symbolic link
    with open_store(db, read_only=True) as store:
        images = store.list_images()
        paths = {p for image in images for p in store.image_paths(image.sha256)}
    assert paths == {
        str(folder.resolve() / f"{s}.jpeg") for s in ("10_left", "10_right", "11_left")
    }


@pytest.mark.parametrize("cell", ["-0", "+0", "-0.0", "+2"])
def test_a_signed_grade_is_refused_even_when_it_is_zero(
    cell: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "labels.sqlite")
    labels = tmp_path / "signed.csv"
    labels.write_text(f"image,level\n10_left,{cell}\n10_right, 0 \n11_left,0.0\n")
    argv = ["--db", db, "import", str(labels), "--format", "eyepacs", "--folder", str(folder)]
    assert main([*argv, "--as-grader", "Ann"]) == 1  # a row was not imported
    report = capsys.readouterr().out
    assert "2 added" in report and "line 2: malformed: 10_left" in report and "no sign" in report
    out = tmp_path / "e.csv"
    assert (
        main(["--db", db, "export", "--format", "eyepacs", "--identified", "--out", str(out)]) == 0
    )
    with out.open(newline="") as handle:
        assert {r["image"]: r["level"] for r in csv.DictReader(handle)} == {
            "10_right": "0",
            "11_left": "0",
        }


def test_export_never_creates_a_missing_folder(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "labels.sqlite")
    assert main(["--db", db, "scan", str(folder)]) == 0
    for fmt, target in (("eyepacs", "new/sub/x.csv"), ("imagefolder", "new/sub/tree")):
        code = main(["--db", db, "export", "--format", fmt, "--out", str(tmp_path / target)])
        assert code == 1
        assert "there is no folder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
