"""Issue 22 on the command line: ``backups`` and ``restore``, an empty database refused by
every command, and the store's warnings at open shown as ``sall-desktop: warning:`` lines."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from sall_desktop.__main__ import main
from sall_desktop.domain.grades import Grading
from sall_desktop.store import open_store
from sall_desktop.store.backups import BackupPolicy, periodic_backups

SHA = [f"{i:064x}" for i in range(1, 6)]
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with 3 gradings and one periodic backup of them (taken at T0)."""
    path = tmp_path / "labels.sqlite"
    with open_store(path, backups=None) as store:
        for i in range(3):
            store.add_grading(Grading(SHA[i], "Dr A", dr_grade=i, amd_grade=0))
    open_store(path, backups=BackupPolicy(now=lambda: T0)).close()
    return path


def _gradings(path: Path) -> list[tuple[str, int | None]]:
    with open_store(path, read_only=True) as store:
        return sorted((g.image_sha256, g.dr_grade) for g in store.current_gradings())


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sall-desktop: "), err
    return lines[0]


def test_backups_then_restore_round_trip(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backup = periodic_backups(db)[0].path
    assert main(["--db", str(db), "backups"]) == 0
    out = capsys.readouterr().out
    assert "2026-03-01 09:00:00  periodic" in out and "verified when taken" in out
    assert str(backup) in out
    assert main(["--db", str(db), "backups", "--check"]) == 0
    assert "verified now (3 gradings)" in capsys.readouterr().out

    at_backup = _gradings(db)
    with open_store(db, backups=None) as store:
        store.add_grading(Grading(SHA[4], "Dr A", dr_grade=4, amd_grade=0))
    later = _gradings(db)
    assert main(["restore", "--from", str(backup), "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and f"restored {db} from {backup}: 3 gradings" in out
    kept = Path(out.split("is kept as ")[1].strip())
    assert _gradings(db) == at_backup and _gradings(kept) == later
    assert main(["--db", str(db), "verify"]) == 0


def test_a_damaged_backup_is_refused_in_one_line(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = periodic_backups(db)[0].path
    data = bytearray(backup.read_bytes())
    data[4096:8192] = b"\xa5" * 4096
    backup.write_bytes(bytes(data))
    before = db.read_bytes()
    assert main(["--db", str(db), "restore", "--from", str(backup)]) == 1
    out, err = capsys.readouterr()
    line = _one_error_line(err)
    assert "was not restored" in line and str(backup) in line and out == ""
    assert db.read_bytes() == before
    assert main(["--db", str(db), "backups", "--check"]) == 1
    assert "NOT USABLE" in capsys.readouterr().out


def test_restore_is_refused_while_the_workstation_writes(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = periodic_backups(db)[0].path
    with open_store(db, backups=None):
        assert main(["--db", str(db), "restore", "--from", str(backup)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "another SALL Desktop program" in line and str(db) in line


def test_no_backups_yet_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(tmp_path / "x.sqlite"), "backups"]) == 0
    assert "no backups of" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "FOLDER"],
        ["export", "--format", "canonical", "--out", "OUT"],
        ["verify"],
        ["programme", "status"],
    ],
    ids=lambda a: a[0],
)
def test_an_empty_database_is_refused_by_every_command(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "labels.sqlite"
    empty.write_bytes(b"")
    (tmp_path / "images").mkdir()
    args = [str(tmp_path / "images") if a == "FOLDER" else a for a in argv]
    args = [str(tmp_path / "x.csv") if a == "OUT" else a for a in args]
    assert main(["--db", str(empty), *args]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(empty) in line and "empty (0 bytes)" in line and "sall-desktop restore" in line
    assert empty.read_bytes() == b""
    assert not (tmp_path / "x.csv").exists()


def _tamper_chain(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET new_value = '4' WHERE id = 2")
    conn.commit()
    conn.close()


def test_a_tampered_chain_is_a_warning_line_on_every_command(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper_chain(db)
    warning = "sall-desktop: warning: The audit trail was altered: row 2"

    assert main(["--db", str(db), "verify"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(warning) and len(err.splitlines()) == 1 and "NOT verified" in out

    out_csv = tmp_path / "x.csv"
    export = ["--db", str(db), "export", "--format", "canonical", "--out", str(out_csv)]
    assert main(export) == 0
    assert capsys.readouterr().err.startswith(warning)

    images = tmp_path / "images"
    images.mkdir()
    assert cv2.imwrite(str(images / "a.jpeg"), np.full((32, 32, 3), 90, np.uint8))
    assert main(["--db", str(db), "scan", str(images)]) == 0  # a writable open: backup due
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(warning)
    assert lines[1] == (
        "sall-desktop: warning: No backup was taken, so the earlier backups are kept."
    )
    assert len(periodic_backups(db)) == 1
