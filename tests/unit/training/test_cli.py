"""The command line: argument errors, and failures reported as ``run_failed`` (no training)."""

from __future__ import annotations

import hashlib

import pytest

from training import cli
from training.protocol import events as ev
from training.protocol.events import parse_stream
from training.protocol.manifest import ManifestRow, format_manifest


def _manifest(tmp_path, *, exists: bool = True):
    image = tmp_path / "patients" / "ann_smith_left.jpg"
    image.parent.mkdir()
    image.write_bytes(b"not really a jpeg")
    digest = hashlib.sha256(b"not really a jpeg" if exists else b"other").hexdigest()
    path = tmp_path / "manifest.csv"
    path.write_text(
        format_manifest([ManifestRow(image_path=str(image), sha256=digest, dr_grade=1)]),
        encoding="utf-8",
    )
    return path


def _events(capsys) -> list[ev.Event]:
    events, errors = parse_stream(capsys.readouterr().out)
    assert not errors
    return events


def test_parser_knows_every_stage_and_synth() -> None:
    parser = cli.build_parser()
    for command in (
        "train-teacher",
        "soft-labels",
        "train-student",
        "sall",
        "evaluate",
        "finetune",
        "synth",
    ):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0


def test_missing_required_argument_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["finetune", "--out", "x", "--manifest", "m.csv"])
    assert info.value.code == 2
    assert "--init" in capsys.readouterr().err


def test_bad_run_id_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        cli.main(["sall", "--out", "x", "--manifest", "m.csv", "--run-id", "../etc"])


@pytest.mark.parametrize(
    ("extra", "error_type"),
    [
        (["--set", "sall.temprature=2"], "ConfigError"),
        (["--expect-manifest-digest", "0" * 64], "DataIntegrityError"),
    ],
)
def test_failures_are_reported_as_run_failed(tmp_path, capsys, extra, error_type) -> None:
    manifest = _manifest(tmp_path)
    rc = cli.main(["sall", "--manifest", str(manifest), "--out", str(tmp_path / "run"), *extra])
    assert rc == 1
    events = _events(capsys)
    failed = events[-1]
    assert isinstance(failed, ev.RunFailed) and failed.error_type == error_type
    on_disk, _ = parse_stream((tmp_path / "run" / "events.jsonl").read_text("utf-8"))
    assert on_disk[-1] == failed


def test_changed_image_fails_the_run_without_leaking_its_path(tmp_path, capsys) -> None:
    manifest = _manifest(tmp_path, exists=False)
    rc = cli.main(
        [
            "train-teacher",
            "--task",
            "dr",
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "model.backbone=resnet18",
            "--set",
            "model.input_size=32",
            "--set",
            "runtime.device=cpu",
        ]
    )
    assert rc == 1
    events = _events(capsys)
    assert isinstance(events[0], ev.RunStarted)
    failed = events[-1]
    assert isinstance(failed, ev.RunFailed) and failed.error_type == "DataIntegrityError"
    log = (tmp_path / "run" / "train.log").read_text("utf-8")
    for text in (failed.message, log):
        assert "ann_smith" not in text and str(tmp_path) not in text


def test_sall_run_finished_names_the_teachers(tmp_path, capsys, monkeypatch) -> None:
    # The training itself is stubbed (tests/integration runs it): only the event is checked.
    from types import SimpleNamespace

    from training.engine.sall import pipeline

    teachers = {"dr": "teacher-dr/ckpt/e0001", "amd": "teacher-amd/ckpt/e0000"}
    ids = {"dr": "d" * 64, "amd": "e" * 64}
    card = SimpleNamespace(id="c" * 64)
    result = pipeline.SallResult(card, tmp_path / "run" / "report.json", teachers, ids)  # type: ignore[arg-type]
    monkeypatch.setattr(pipeline, "run_sall", lambda inp: result)
    rc = cli.main(["sall", "--manifest", str(_manifest(tmp_path)), "--out", str(tmp_path / "run")])
    assert rc == 0
    finished = _events(capsys)[-1]
    assert isinstance(finished, ev.RunFinished)
    assert (finished.model_path, finished.model_id, finished.report_path) == (
        "model",
        "c" * 64,
        "report.json",
    )
    assert finished.teachers == teachers and finished.teacher_ids == ids
