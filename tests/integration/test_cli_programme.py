"""The programme's command line: setup, roles, status, test sets and ``report graders``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sall_desktop.__main__ import main
from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord
from sall_desktop.store import open_store


def _sha(i: int) -> str:
    return hashlib.sha256(f"cli-{i}".encode()).hexdigest()


def _run(db: Path, *argv: str) -> int:
    return main(["--db", str(db), *argv])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "labels.sqlite"
    open_store(path, app_version="test").close()
    return path


def _grade_programme(db: Path) -> None:
    store = open_store(db, app_version="test")
    images = [ImageRecord(_sha(i), f"/x/{i}.png") for i in range(40)]
    store.upsert_images(images)
    for i, image in enumerate(images):
        store.add_grading(Grading(image.sha256, "Dr P", dr_grade=i % 5, amd_grade=0))
    routed = [d.image_sha256 for d in store.routing_decisions() if d.stage == "secondary"]
    for n, sha in enumerate(routed):
        dr = 0 if n % 4 == 0 else 3  # some disagree in outcome
        store.add_grading(Grading(sha, "Dr S", dr_grade=dr, amd_grade=0, role=GraderRole.SECONDARY))
    arbitrate = [d.image_sha256 for d in store.routing_decisions() if d.stage == "arbitration"]
    for sha in arbitrate:
        store.add_grading(Grading(sha, "Dr A", dr_grade=2, amd_grade=0, role=GraderRole.ARBITER))
    store.close()


def test_setup_roles_status_and_report(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(db, "programme", "status") == 0
    assert "no programme is set up" in capsys.readouterr().out
    assert _run(db, "programme", "role", "Dr P", "primary", "--by", "QA") == 1
    assert "programme setup" in capsys.readouterr().err
    assert _run(db, "programme", "setup", "--seed", "3", "--by", "QA") == 0
    store = open_store(db, app_version="test")
    assert [(g.grader, g.role.value) for g in store.programme_roles()] == [("QA", "qa")]
    store.close()
    for grader, role in (("Dr P", "primary"), ("Dr S", "secondary"), ("Dr A", "arbiter")):
        assert _run(db, "programme", "role", grader, role, "--by", "QA") == 0
    _grade_programme(db)
    capsys.readouterr()
    assert _run(db, "programme", "status") == 0
    out = capsys.readouterr().out
    assert "Dr S: secondary — secondary 0 to grade" in out
    assert "arbitrated" in out and "single" in out

    for suffix in ("html", "pdf", "png"):
        target = tmp_path / f"report.{suffix}"
        assert _run(db, "report", "graders", "--out", str(target)) == 0
        assert target.stat().st_size > 1000
    assert "Dr P" in capsys.readouterr().out
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")

    before = db.read_bytes()
    assert _run(db, "report", "graders", "--out", str(db)) == 1  # never over the database
    assert _run(db, "report", "graders", "--out", str(tmp_path / "report.txt")) == 1
    assert db.read_bytes() == before
    assert not (tmp_path / "report.txt").exists()


def test_test_set_answers_are_reported_apart_and_change_no_final_grade(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(db, "programme", "setup", "--by", "QA") == 0
    for grader, role in (("Dr P", "primary"), ("Dr S", "secondary"), ("Dr A", "arbiter")):
        assert _run(db, "programme", "role", grader, role, "--by", "QA") == 0
    _grade_programme(db)
    assert _run(db, "testset", "create", "induction", "--from-final", "--size", "10",
                "--by", "QA")  == 0  # fmt: skip
    assert _run(db, "testset", "assign", "induction", "Trainee T", "--by", "QA") == 0
    assert _run(db, "testset", "assign", "missing", "Trainee T", "--by", "QA") == 1

    from sall_desktop.services.programme import load_state

    store = open_store(db, app_version="test")
    finals_before = load_state(store).finals()
    answers = store.test_set_answers("induction")
    assert len(answers) == 10
    for sha, reference in answers.items():
        wrong = 4 if reference.dr_grade != 4 else 0
        store.add_test_answer("induction", Grading(sha, "Trainee T", dr_grade=wrong, amd_grade=0))
    assert load_state(store).finals() == finals_before
    assert "Trainee T" not in {g.grader for g in store.current_gradings()}
    assert store.verify_chain().ok
    store.close()
    capsys.readouterr()
    assert _run(db, "report", "graders", "--out", str(tmp_path / "r.html")) == 0
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "induction" in html and "Trainee T" in html
