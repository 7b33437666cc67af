"""Every command takes a team store's address for ``--db``: a folder scanned, labels imported and
exported, a programme set up and reported, the trail verified, all on a real PostgreSQL server;
what only a SQLite file has (backups, restore) is refused in one line."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from sall_desktop.__main__ import main
from sall_desktop.domain.grades import Grading
from sall_desktop.store import open_team_store


def test_the_command_line_works_on_a_team_store(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "eyepacs"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for stem in ("10_left", "10_right", "11_left"):
        assert cv2.imwrite(
            str(folder / f"{stem}.jpeg"), rng.integers(0, 255, (40, 40, 3), np.uint8)
        )

    def run(*argv: str) -> int:
        return main(["--db", pg_url, *argv])

    assert run("scan", str(folder)) == 0
    assert "3 images" in capsys.readouterr().out
    labels = tmp_path / "trainLabels.csv"
    labels.write_text("image,level\n10_left,2\n10_right,0\n11_left,4\n")
    assert run("import", str(labels), "--format", "eyepacs", "--folder", str(folder),
               "--as-grader", "Dr Ada") == 0  # fmt: skip
    eyepacs = tmp_path / "eyepacs.csv"
    assert run("export", "--format", "eyepacs", "--out", str(eyepacs), "--identified") == 0
    with eyepacs.open(newline="") as handle:
        rows = {row["image"]: row["level"] for row in csv.DictReader(handle)}
    assert rows == {"10_left": "2", "10_right": "0", "11_left": "4"}
    assert run("programme", "setup", "--by", "QA Lead") == 0
    assert run("programme", "role", "Dr P", "primary", "--by", "QA Lead") == 0
    assert run("programme", "status") == 0
    with open_team_store(pg_url, app_version="test") as store:  # Dr P grades at a workstation
        for image in store.list_images():
            store.add_grading(Grading(image.sha256, "Dr P", dr_grade=0, amd_grade=0))
    exported = tmp_path / "out.csv"
    assert run("export", "--format", "canonical", "--out", str(exported)) == 0
    assert run("report", "graders", "--out", str(tmp_path / "report.html")) == 0
    assert run("verify") == 0
    out = capsys.readouterr().out
    assert "verified:" in out and "audit chain head:" in out
    with exported.open(encoding="utf-8") as lines:
        assert sum(1 for _ in lines) >= 1  # the header at least; pending images are left out
    assert (tmp_path / "report.html").stat().st_size > 0

    assert run("backups") == 1
    assert "pg_dump" in capsys.readouterr().err
    assert "secret" not in pg_url  # the address printed in messages carries no password
