"""Fine-tune jobs: the pure command builder, the frozen manifest (hold-out excluded), outcomes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from model_zoo.cards import read_card
from sall_desktop.domain.grades import Grading, GradingSource, ImageRecord
from sall_desktop.services import holdout, models, training_jobs
from sall_desktop.services.training_jobs import FinetuneSpec, TrainingJobError, build_command
from sall_desktop.store import open_store
from sall_desktop.store.sqlite_repository import SqliteLabelStore
from training.cli import build_parser
from training.protocol.manifest import manifest_digest, read_manifest

GOLDEN = Path(__file__).resolve().parents[2] / "unit" / "protocol" / "golden"


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


DEMO_CARD = Path(__file__).resolve().parents[3] / "model_zoo" / "weights" / "demo" / "card.json"


def _spec(tmp_path: Path, **kwargs: object) -> FinetuneSpec:
    return FinetuneSpec(
        run_dir=tmp_path / "run",
        init=tmp_path / "models" / "abc",
        manifest=tmp_path / "run" / "manifest.csv",
        holdout=tmp_path / "run" / "holdout.csv",
        run_id="ft-1",
        manifest_digest="d" * 64,
        **kwargs,  # type: ignore[arg-type]
    )


def test_build_command_from_source_is_python_m_training_and_parses(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    argv = build_command(spec, False, app_executable="/venv/bin/python3")
    assert argv[:4] == ["/venv/bin/python3", "-m", "training", "finetune"]
    # Exactly the bare command: no --set, --config or --replay (the model folder has the sets).
    assert argv[4:] == [
        "--init", str(spec.init), "--manifest", str(spec.manifest),
        "--holdout", str(spec.holdout), "--out", str(spec.run_dir),
        "--run-id", "ft-1", "--expect-manifest-digest", "d" * 64,
    ]  # fmt: skip
    args = build_parser().parse_args(argv[3:])
    assert args.init == spec.init and args.manifest == spec.manifest
    assert args.holdout == spec.holdout and args.out == spec.run_dir
    assert args.overrides == [] and args.config is None and args.replay is None
    assert args.run_id == "ft-1" and args.expect_manifest_digest == "d" * 64
    assert build_command(spec, False, app_executable="/venv/bin/python3") == argv  # pure
    # Tests and experiments may still pass --set (the app never does).
    tuned = build_command(_spec(tmp_path, overrides=("finetune.max_epochs=1",)), False)
    assert build_parser().parse_args(tuned[3:]).overrides == ["finetune.max_epochs=1"]


def _resolved(argv: list[str]) -> tuple[str, str]:
    """The digests of a ``finetune`` command line's config, as ``training.cli.run_command``
    loads it (what ``run_started`` records) and as ``run_finetune`` trains with it (after
    ``config_for_parent`` with the demo model's card)."""
    from model_zoo.cards import read_card
    from training.engine.finetune import config_for_parent
    from training.protocol.config import load_config

    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    return cfg.digest(), config_for_parent(cfg, read_card(DEMO_CARD)).digest()


def test_the_one_click_and_the_bare_cli_freeze_the_same_config(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    for i in range(12):
        _grade(store, i, i % 3)
    holdout.designate_holdout(store, [sha(0)], actor="Dr A")
    frozen = training_jobs.freeze_finetune(store, run_dir=tmp_path / "run")
    gui = build_command(frozen.spec, False)[3:]  # what the Fine-tune button starts
    spec = frozen.spec
    bare = ["finetune", "--init", str(spec.init), "--manifest", str(spec.manifest),
            "--holdout", str(spec.holdout), "--out", str(spec.run_dir)]  # fmt: skip
    assert _resolved(gui) == _resolved(bare)
    # ...and the comparison would see a difference (eval.plots=false used to be passed).
    assert _resolved([*bare, "--set", "eval.plots=false"]) != _resolved(bare)
    run = store.get_training_run(spec.run_id)
    assert run is not None and json.loads(run.config_json)["overrides"] == []


def test_build_command_frozen_uses_the_bundled_sall_train(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    posix = build_command(spec, True, app_executable="/opt/sall-desktop/sall-desktop")
    assert posix[0] == str(Path("/opt/sall-desktop/sall-train")) and posix[1] == "finetune"
    win = build_command(spec, True, app_executable="C:/Apps/SALL/sall-desktop.exe")
    assert Path(win[0]).name == "sall-train.exe" and "-m" not in win


@pytest.fixture
def store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model_writer: Callable[..., str]
) -> Iterator[SqliteLabelStore]:
    monkeypatch.setenv("SALL_DESKTOP_HOME", str(tmp_path / "home"))
    demo = tmp_path / "demo"
    fake_model_writer(demo, 1)
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: demo)
    s = open_store(tmp_path / "db.sqlite")
    for i in range(24):  # 12 patients, two eyes each
        path = tmp_path / "img" / f"{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        s.upsert_image(ImageRecord(sha256=sha(i), path=str(path), patient_id=f"p{i // 2}"))
    yield s
    s.close()


def _grade(s: SqliteLabelStore, i: int, dr: int, **kw: object) -> None:
    s.add_grading(Grading(image_sha256=sha(i), grader="Dr A", dr_grade=dr, amd_grade=0, **kw))  # type: ignore[arg-type]


def test_frozen_manifest_holds_current_human_gradings_and_excludes_the_holdout(
    store: SqliteLabelStore, tmp_path: Path
) -> None:
    for i in range(20):
        _grade(store, i, 1)
    _grade(store, 5, 3)  # a change of mind: the current grade counts
    store.add_grading(  # an accepted model grade is not a correction
        Grading(
            image_sha256=sha(20), grader="Dr A", dr_grade=0, amd_grade=0,
            source=GradingSource.ACCEPTED_PREDICTION,
        )
    )  # fmt: skip
    holdout.designate_holdout(store, [sha(0), sha(2)], actor="Dr A")  # patients p0 and p1
    frozen = training_jobs.freeze_finetune(store, run_dir=tmp_path / "run", val_fraction=0.25)
    rows = read_manifest(frozen.spec.manifest)
    shas = {r.sha256 for r in rows}
    assert shas == {sha(i) for i in range(4, 20)}  # 0-3 are hold-out images or their patients
    assert frozen.excluded_images == 2 and frozen.excluded_patient_images == 2
    assert "4 corrected image(s) excluded" in frozen.summary()
    assert next(r for r in rows if r.sha256 == sha(5)).dr_grade == 3
    assert {r.split for r in rows} == {"train", "val"}
    assert frozen.val_images + frozen.train_images == len(rows) == frozen.corrections
    hold = read_manifest(frozen.spec.holdout)
    assert {r.sha256 for r in hold} == {sha(0), sha(2)} and {r.split for r in hold} == {"holdout"}
    text = frozen.spec.manifest.read_text(encoding="utf-8")
    assert frozen.spec.manifest_digest == manifest_digest(text)
    assert read_card(frozen.spec.init).id == frozen.parent_id
    run = store.get_training_run(frozen.spec.run_id)
    assert (
        run is not None and run.status == "pending" and run.manifest_sha256 == manifest_digest(text)
    )


def test_freeze_refuses_without_holdout_or_corrections(store: SqliteLabelStore) -> None:
    _grade(store, 0, 1)
    with pytest.raises(TrainingJobError, match="hold-out"):
        training_jobs.freeze_finetune(store)
    holdout.designate_holdout(store, [sha(0)], actor="Dr A")
    with pytest.raises(TrainingJobError, match="grade at least"):
        training_jobs.freeze_finetune(store)


def test_outcome_of_recorded_runs(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "events.jsonl").write_bytes((GOLDEN / "finetune_leakage.jsonl").read_bytes())
    failed = training_jobs.read_outcome(run)
    assert failed.status == "failed" and "LeakageError" in failed.message
    assert not failed.gate_passed
    (run / "events.jsonl").write_bytes((GOLDEN / "cancel_then_resume.jsonl").read_bytes())
    assert training_jobs.read_outcome(run).status in {"cancelled", "finished", "failed"}
    (run / "events.jsonl").write_text('{"v":1,"event":"run_started"\n', encoding="utf-8")
    broken = training_jobs.read_outcome(run)
    assert broken.status == "running" and len(broken.errors) == 1
    assert training_jobs.read_outcome(tmp_path / "missing").status == "failed"
