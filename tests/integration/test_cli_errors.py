"""Every anticipated failure of a command is one line on stderr and exit 1, never a traceback.

Usage errors (argparse's, and options that do not go together) exit 2. A store held by another
writer is made the way the workstation holds it: ``open_store`` on the same file.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from sall_desktop.__main__ import main
from sall_desktop.store import open_store


@dataclass(frozen=True)
class World:
    """A scanned folder, its database and things that are not what a command needs."""

    root: Path
    images: Path
    db: Path
    text: Path

    def p(self, name: str) -> str:
        return str(self.root / name)

    @property
    def home(self) -> Path:
        """The data folder (``SALL_DESKTOP_HOME``): where the site key lives."""
        return self.root / "home"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # De-identified exports create the site key in the data folder: never the user's own.
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))


@pytest.fixture
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> World:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    for stem in ("10_left", "10_right", "11_left"):
        pixels = rng.integers(0, 255, (40, 40, 3), np.uint8)
        assert cv2.imwrite(str(images / f"{stem}.jpeg"), pixels)
    db = tmp_path / "labels.sqlite"
    assert main(["--db", str(db), "scan", str(images)]) == 0
    text = tmp_path / "notes.txt"
    text.write_text("not a database, not an image, not a model\n")
    (tmp_path / "labels.csv").write_text("image,level\n10_left,2\n")
    (tmp_path / "wrong-header.csv").write_text("name,grade\n10_left,2\n")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "nul.csv").write_bytes(b"image,level\n10_left,\x002\n")
    (tmp_path / "empty-model").mkdir()
    damaged = bytearray(db.read_bytes())
    damaged[4096:8192] = b"\xa5" * 4096
    (tmp_path / "damaged.sqlite").write_bytes(bytes(damaged))
    (tmp_path / "empty.sqlite").write_bytes(b"")  # lost its contents: refused, never re-made
    capsys.readouterr()
    return World(tmp_path, images, db, text)


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return int(exc.code or 0)


Argv = Callable[[World], list[str]]

CASES: list[tuple[str, Argv, int]] = [
    # a database that is missing, a folder, not SQLite, damaged
    ("export-missing-db", lambda w: ["--db", w.p("none.sqlite"), "export", "--format",
                                     "canonical", "--out", w.p("x.csv")], 1),
    ("export-missing-db-sub", lambda w: ["export", "--format", "canonical", "--out",
                                         w.p("x.csv"), "--db", w.p("no/such/x.sqlite")], 1),
    ("scan-db-in-missing-folder", lambda w: ["--db", w.p("no/such/x.sqlite"), "scan",
                                             str(w.images)], 1),
    ("grade-db-in-missing-folder", lambda w: ["--db", w.p("no/x.sqlite"), "grade",
                                              str(w.images), "--model", w.p("empty-model")], 1),
    ("scan-db-is-a-folder", lambda w: ["--db", str(w.images), "scan", str(w.images)], 1),
    ("export-db-is-a-folder", lambda w: ["--db", str(w.images), "export", "--format",
                                         "eyepacs", "--out", w.p("x.csv")], 1),
    ("scan-db-not-sqlite", lambda w: ["--db", str(w.text), "scan", str(w.images)], 1),
    ("export-db-not-sqlite", lambda w: ["--db", str(w.text), "export", "--format",
                                        "eyepacs", "--out", w.p("x.csv")], 1),
    ("import-db-damaged", lambda w: ["--db", w.p("damaged.sqlite"), "import", w.p("labels.csv"),
                                     "--format", "eyepacs", "--folder", str(w.images),
                                     "--as-grader", "Ann"], 1),
    ("export-db-damaged", lambda w: ["--db", w.p("damaged.sqlite"), "export", "--format",
                                     "eyepacs", "--out", w.p("x.csv")], 1),
    ("scan-db-empty", lambda w: ["--db", w.p("empty.sqlite"), "scan", str(w.images)], 1),
    ("export-db-empty", lambda w: ["--db", w.p("empty.sqlite"), "export", "--format",
                                   "eyepacs", "--out", w.p("x.csv")], 1),
    ("restore-missing-backup", lambda w: ["--db", str(w.db), "restore", "--from",
                                          w.p("none.sqlite")], 1),
    ("restore-not-a-backup", lambda w: ["--db", str(w.db), "restore", "--from",
                                        str(w.text)], 1),
    # a folder or file that is missing or is the wrong kind
    ("scan-missing-folder", lambda w: ["--db", str(w.db), "scan", w.p("nowhere")], 1),
    ("scan-file-as-folder", lambda w: ["--db", str(w.db), "scan", str(w.text)], 1),
    ("import-missing-folder", lambda w: ["--db", str(w.db), "import", w.p("labels.csv"),
                                         "--format", "eyepacs", "--folder", w.p("nowhere"),
                                         "--as-grader", "Ann"], 1),
    ("import-missing-file", lambda w: ["--db", str(w.db), "import", w.p("none.csv"), "--format",
                                       "eyepacs", "--folder", str(w.images), "--as-grader",
                                       "Ann"], 1),
    ("import-not-csv", lambda w: ["--db", str(w.db), "import", str(w.images / "10_left.jpeg"),
                                  "--format", "eyepacs", "--folder", str(w.images),
                                  "--as-grader", "Ann"], 1),
    ("grade-missing-folder", lambda w: ["--db", str(w.db), "grade", w.p("nowhere"), "--model",
                                        w.p("empty-model")], 1),
    ("inspect-missing-file", lambda w: ["inspect", w.p("none.jpeg")], 1),
    ("inspect-not-an-image", lambda w: ["inspect", str(w.text)], 1),
    # a model that is missing or cannot be loaded
    ("grade-missing-model", lambda w: ["--db", str(w.db), "grade", str(w.images), "--model",
                                       w.p("no-model")], 1),
    ("grade-model-without-card", lambda w: ["--db", str(w.db), "grade", str(w.images),
                                            "--model", w.p("empty-model")], 1),
    ("self-test-missing-model", lambda w: ["--self-test", "--model", w.p("no-model")], 1),
    # an output that cannot be written
    ("export-out-in-missing-folder", lambda w: ["--db", str(w.db), "export", "--format",
                                                "eyepacs", "--out", w.p("no/x.csv")], 1),
    ("export-out-is-a-folder", lambda w: ["--db", str(w.db), "export", "--format", "eyepacs",
                                          "--out", str(w.images)], 1),
    ("grade-out-in-missing-folder", lambda w: ["--db", str(w.db), "grade", str(w.images),
                                               "--model", w.p("empty-model"), "--out",
                                               w.p("no/p.csv")], 1),
    ("import-report-in-missing-folder", lambda w: ["--db", str(w.db), "import",
                                                   w.p("labels.csv"), "--format", "eyepacs",
                                                   "--folder", str(w.images), "--as-grader",
                                                   "Ann", "--report", w.p("no/r.csv")], 1),
    # an output that is the database, one of its files, the site key or in the data folder
    ("export-out-is-the-db", lambda w: ["--db", str(w.db), "export", "--format", "canonical",
                                        "--identified", "--out", str(w.db)], 1),
    ("export-out-is-the-db-wal", lambda w: ["--db", str(w.db), "export", "--format", "eyepacs",
                                            "--identified", "--out", f"{w.db}-wal"], 1),
    ("export-out-is-the-db-lock", lambda w: ["--db", str(w.db), "export", "--format", "eyepacs",
                                             "--identified", "--out", f"{w.db}.lock"], 1),
    ("export-out-is-the-site-key", lambda w: ["--db", str(w.db), "export", "--format",
                                              "canonical", "--identified", "--out",
                                              str(w.home / "site_key.bin")], 1),
    ("export-out-in-the-data-folder", lambda w: ["--db", str(w.db), "export", "--format",
                                                 "canonical", "--out",
                                                 str(w.home / "x.csv")], 1),
    ("export-tree-is-the-data-folder", lambda w: ["--db", str(w.db), "export", "--format",
                                                  "imagefolder", "--identified", "--out",
                                                  str(w.home)], 1),
    ("import-report-is-the-db", lambda w: ["--db", str(w.db), "import", w.p("labels.csv"),
                                           "--format", "eyepacs", "--folder", str(w.images),
                                           "--as-grader", "Ann", "--report", str(w.db)], 1),
    ("grade-out-is-the-db", lambda w: ["--db", str(w.db), "grade", str(w.images), "--model",
                                       w.p("empty-model"), "--out", str(w.db)], 1),
    # a label file that is not one
    ("import-wrong-header", lambda w: ["--db", str(w.db), "import", w.p("wrong-header.csv"),
                                       "--format", "eyepacs", "--folder", str(w.images),
                                       "--as-grader", "Ann"], 1),
    ("import-wrong-header-canonical", lambda w: ["--db", str(w.db), "import",
                                                 w.p("wrong-header.csv"), "--format",
                                                 "canonical", "--folder", str(w.images),
                                                 "--as-grader", "Ann"], 1),
    ("import-empty-file", lambda w: ["--db", str(w.db), "import", w.p("empty.csv"), "--format",
                                     "eyepacs", "--folder", str(w.images), "--as-grader",
                                     "Ann"], 1),
    ("import-nul-bytes", lambda w: ["--db", str(w.db), "import", w.p("nul.csv"), "--format",
                                    "eyepacs", "--folder", str(w.images), "--as-grader",
                                    "Ann"], 1),
    # usage errors: exit 2
    ("export-bad-format", lambda w: ["--db", str(w.db), "export", "--format", "kaggle",
                                     "--out", w.p("x.csv")], 2),
    ("import-bad-format", lambda w: ["--db", str(w.db), "import", w.p("labels.csv"), "--format",
                                     "kaggle", "--folder", str(w.images), "--as-grader",
                                     "Ann"], 2),
    ("import-grader-and-reference", lambda w: ["--db", str(w.db), "import", w.p("labels.csv"),
                                               "--format", "eyepacs", "--folder", str(w.images),
                                               "--as-grader", "Ann", "--as-reference", "x"], 2),
    ("import-blank-grader", lambda w: ["--db", str(w.db), "import", w.p("labels.csv"),
                                       "--format", "eyepacs", "--folder", str(w.images),
                                       "--as-grader", "  "], 2),
    ("export-notes-de-identified", lambda w: ["--db", str(w.db), "export", "--format",
                                              "canonical", "--out", w.p("x.csv"),
                                              "--include-notes"], 2),
    ("export-notes-de-identified-tree", lambda w: ["--db", str(w.db), "export", "--format",
                                                   "imagefolder", "--out", w.p("tree"),
                                                   "--include-notes"], 2),
    ("grade-batch-size-0", lambda w: ["--db", str(w.db), "grade", str(w.images), "--model",
                                      w.p("empty-model"), "--batch-size", "0"], 2),
]  # fmt: skip

LOCKED: list[tuple[str, Argv]] = [
    ("scan", lambda w: ["--db", str(w.db), "scan", str(w.images)]),
    ("import", lambda w: ["--db", str(w.db), "import", w.p("labels.csv"), "--format", "eyepacs",
                          "--folder", str(w.images), "--as-grader", "Ann"]),
    ("grade", lambda w: ["--db", str(w.db), "grade", str(w.images), "--model", w.p("empty-model")]),
]  # fmt: skip


def _check(code: int, expected: int, out: str, err: str) -> str:
    assert code == expected, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    if expected == 1:
        assert len(lines) == 1, err
        assert lines[0].startswith("sall-desktop: "), err
    else:
        assert lines and re.match(r"sall-desktop( \w+)?: ", lines[-1]), err
    assert "look but not grade" not in err and "window" not in err
    return lines[-1]


@pytest.fixture
def held(world: World) -> Iterator[None]:
    """The workstation writing the database (its writer lock taken by ``open_store``)."""
    holder = open_store(world.db)
    try:
        yield
    finally:
        holder.close()


ALL = [(name, argv, code, False) for name, argv, code in CASES] + [
    (f"{name}-busy-db", argv, 1, True) for name, argv in LOCKED
]


@pytest.mark.parametrize(
    ("argv", "expected", "busy"), [c[1:] for c in ALL], ids=[c[0] for c in ALL]
)
def test_anticipated_errors_are_one_line_and_exit_1(
    argv: Argv,
    expected: int,
    busy: bool,
    world: World,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if busy:
        request.getfixturevalue("held")
    code = _run(argv(world))
    out, err = capsys.readouterr()
    line = _check(code, expected, out, err)
    if busy:
        assert "another SALL Desktop program" in line and str(world.db) in line


@pytest.mark.usefixtures("held")
def test_export_reads_a_database_another_program_writes(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--db", str(world.db), "export", "--format", "eyepacs", "--out", world.p("x.csv")]
    assert _run(argv) == 0
    assert "Traceback" not in "".join(capsys.readouterr())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_folder_that_cannot_be_listed(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    locked = world.root / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        try:
            list(locked.iterdir())
        except PermissionError:
            code = _run(["--db", str(world.db), "scan", str(locked)])
        else:
            pytest.skip("this user reads every folder (root)")
    finally:
        locked.chmod(0o755)
    out, err = capsys.readouterr()
    assert "permission denied" in _check(code, 1, out, err)


def test_the_reported_command_prints_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    argv = ["export", "--format", "canonical", "--out", str(tmp_path / "x.csv")]
    result = subprocess.run(
        [sys.executable, "-m", "sall_desktop", *argv, "--db", str(tmp_path / "none" / "x.db")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("sall-desktop: there is no label database at ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stdout


@pytest.mark.parametrize(
    "command",
    ["", "gui", "scan", "import", "export", "grade", "inspect", "verify", "backups", "restore"],
)
def test_help_is_in_the_users_words(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([command, "--help"] if command else ["--help"]) == 0
    text = capsys.readouterr().out
    assert "usage: sall-desktop" in text
    assert not re.search(r"\bR\d+\b|§", text), text


def test_export_says_why_rows_are_missing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    out = world.p("x.csv")
    export = ["--db", str(world.db), "export", "--format", "eyepacs", "--out", out, "--identified"]
    assert main(export) == 0
    text = capsys.readouterr().out
    assert "0 rows written: 3 images have no human grade" in text
    assert "sall-desktop grade FOLDER --model M --out predictions.csv" in text

    imp = ["--db", str(world.db), "import", world.p("labels.csv"), "--format", "eyepacs"]
    assert main([*imp, "--folder", str(world.images), "--as-reference", "eyepacs"]) == 0
    capsys.readouterr()
    assert main(export) == 0
    assert "--grader reference:eyepacs" in capsys.readouterr().out

    assert main([*imp, "--folder", str(world.images), "--as-grader", "Ann"]) == 0
    capsys.readouterr()
    assert main(export) == 0
    assert "1 row written: 2 images have no human grade" in capsys.readouterr().out
    with open(out, newline="") as handle:
        assert [row["image"] for row in csv.DictReader(handle)] == ["10_left"]

    assert main([*export, "--grader", "Bob"]) == 0
    assert "0 rows written: 3 images have no grade by Bob" in capsys.readouterr().out


def _bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


PROTECTED: list[tuple[str, Callable[[World], Path], Argv]] = [
    ("db", lambda w: w.db, lambda w: ["export", "--format", "canonical", "--identified",
                                      "--out", str(w.db)]),
    ("db-relative", lambda w: w.db, lambda w: ["export", "--format", "canonical",
                                               "--identified", "--out",
                                               "images/../labels.sqlite"]),
    ("db-by-symlink", lambda w: w.db, lambda w: ["export", "--format", "eyepacs", "--identified",
                                                 "--out", w.p("link-to-db.csv")]),
    ("db-report", lambda w: w.db, lambda w: ["import", w.p("labels.csv"), "--format", "eyepacs",
                                             "--folder", str(w.images), "--as-grader", "Ann",
                                             "--report", "./labels.sqlite"]),
    ("db-predictions", lambda w: w.db, lambda w: ["grade", str(w.images), "--model",
                                                  w.p("empty-model"), "--out", str(w.db)]),
    ("site-key", lambda w: w.home / "site_key.bin", lambda w: ["export", "--format", "canonical",
                                                               "--identified", "--out",
                                                               str(w.home / "site_key.bin")]),
]  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
@pytest.mark.parametrize(
    ("target", "argv"), [c[1:] for c in PROTECTED], ids=[c[0] for c in PROTECTED]
)
def test_the_database_and_the_site_key_are_never_overwritten(
    target: Callable[[World], Path],
    argv: Argv,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(world.root)  # the relative spellings are relative to the data's folder
    (world.root / "link-to-db.csv").symlink_to(world.db)
    imp = ["import", world.p("labels.csv"), "--format", "eyepacs", "--folder", str(world.images)]
    assert _run(["--db", str(world.db), *imp, "--as-grader", "Ann"]) == 0  # a row to pseudonymise
    default_export = ["--db", str(world.db), "export", "--format", "canonical", "--out"]
    assert _run([*default_export, world.p("first.csv")]) == 0  # creates the site key
    capsys.readouterr()
    protected = target(world)
    before = _bytes(protected)
    assert before is not None

    code = _run(["--db", str(world.db), *argv(world)])
    out, err = capsys.readouterr()
    assert "will not write" in _check(code, 1, out, err)
    assert _bytes(protected) == before
    # The store and the key still work: the next default export gives the same pseudonyms.
    assert _run([*default_export, world.p("second.csv")]) == 0
    assert (world.root / "second.csv").read_bytes() == (world.root / "first.csv").read_bytes()


def test_a_damaged_database_is_not_exported_even_when_the_open_skips_the_check(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Databases above this size are opened without a check (it would slow every start).
    monkeypatch.setattr("sall_desktop.store.opener.QUICK_CHECK_MAX_BYTES", 0)
    out = world.root / "x.csv"
    argv = ["--db", world.p("damaged.sqlite"), "export", "--format", "canonical", "--identified"]
    code = _run([*argv, "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert "damaged" in _check(code, 1, stdout, err)
    assert not out.exists()


def test_an_export_checks_a_database_opened_unchecked() -> None:
    from sall_desktop.__main__ import CommandError, _refuse_unchecked_damage

    class Store:
        def __init__(self, startup_check: str | None, found: str) -> None:
            self.startup_check = startup_check
            self.found = found

        def integrity_check(self, *, quick: bool = False) -> str:
            assert quick
            return self.found

    _refuse_unchecked_damage(Store("ok", "never asked"), Path("x.sqlite"))
    _refuse_unchecked_damage(Store(None, "ok"), Path("x.sqlite"))
    with pytest.raises(CommandError, match="damaged; nothing was exported"):
        _refuse_unchecked_damage(Store(None, "*** in database main ***\nPage 7"), Path("x"))
