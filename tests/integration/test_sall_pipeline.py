"""``sall`` end to end on a tiny synthetic set: events, checkpoints, the card and the report."""

from __future__ import annotations

import hashlib
import json

import pytest

from model_zoo.cards import read_card
from model_zoo.checkpoints import load_checkpoint
from training.protocol import events as ev
from training.protocol.manifest import manifest_digest
from training.protocol.report import report_from_json

pytestmark = pytest.mark.slow


def test_run_succeeds_and_streams_valid_events(sall_run) -> None:
    assert sall_run.returncode == 0, sall_run.stderr[-3000:]
    events = sall_run.events
    assert isinstance(events[0], ev.RunStarted) and isinstance(events[-1], ev.RunFinished)
    assert len({e.run_id for e in events}) == 1
    # stdout and events.jsonl carry the same stream
    on_disk, errors = ev.parse_stream((sall_run.folder / "events.jsonl").read_text("utf-8"))
    assert not errors and on_disk == events
    stages = [e.stage for e in sall_run.of(ev.StageStarted)]
    assert stages == ["teacher-dr", "teacher-amd", "student"]
    for stage in stages:
        ends = [e for e in sall_run.of(ev.EpochEnd) if e.stage == stage]
        assert [e.epoch for e in ends] == [0, 1]
        assert all(e.train_loss is not None and e.train_loss > 0 for e in ends)
    student_end = [e for e in sall_run.of(ev.EpochEnd) if e.stage == "student"][-1]
    assert set(student_end.metrics) == {"dr", "amd"}
    assert {"train_hard", "train_soft", "train_kl", "train_feature"} <= set(student_end.losses)
    assert (
        student_end.losses["train_feature"] is not None and student_end.losses["train_feature"] > 0
    )
    progress = sall_run.of(ev.Progress)
    assert progress and all(p.step <= p.steps_per_epoch for p in progress)


def test_started_event_records_digests(sall_run, tiny_data) -> None:
    started = sall_run.events[0]
    assert isinstance(started, ev.RunStarted)
    assert started.manifest_digest == manifest_digest(tiny_data.manifest.read_text("utf-8"))
    assert started.config["sall"]["kd_t2_scaling"] is True
    assert started.command == "sall" and "torch" in started.versions


def test_checkpoint_events_point_at_complete_checkpoints(sall_run) -> None:
    for saved in sall_run.of(ev.CheckpointSaved):
        folder = sall_run.folder / saved.path
        if not folder.exists():  # superseded checkpoints are pruned; the best and last stay
            continue
        weights = (folder / "weights.safetensors").read_bytes()
        assert hashlib.sha256(weights).hexdigest() == saved.weights_sha256
        assert read_card(folder).id == saved.weights_sha256


def test_model_card_carries_config_lineage_and_calibration(sall_run, tiny_data) -> None:
    finished = sall_run.events[-1]
    assert isinstance(finished, ev.RunFinished) and finished.model_path == "model"
    model, card = load_checkpoint(sall_run.folder / "model")
    assert card.id == finished.model_id
    assert [t.name for t in card.tasks] == ["dr", "amd"]
    assert card.input_size == 64 and card.architecture_kwargs["backbone"] == "resnet18"
    prov = card.provenance
    assert prov.manifest_digest == manifest_digest(tiny_data.manifest.read_text("utf-8"))
    assert (
        prov.config["sall"]["temperature"] == 3.0 and prov.config["sall"]["feature_term"] == "hint"
    )
    assert prov.seed == 3 and prov.training_run_id == finished.run_id
    teacher_ids = {read_card(p).id for p in sall_run.folder.glob("teacher-*/ckpt/*")}
    assert set(prov.teacher_ids) <= teacher_ids and len(prov.teacher_ids) == 2
    assert set(card.temperatures) == {"dr", "amd"} and all(
        t > 0 for t in card.temperatures.values()
    )
    assert prov.metrics["test"]["heads"]["dr"]["n"] > 0
    # The exported weights are the student's best checkpoint.
    best = json.loads((sall_run.folder / "student" / "state.json").read_text("utf-8"))["best"]
    assert read_card(sall_run.folder / "student" / best).id == card.id


def test_run_finished_and_report_name_the_teachers(sall_run) -> None:
    finished = sall_run.events[-1]
    assert isinstance(finished, ev.RunFinished)
    assert set(finished.teachers) == set(finished.teacher_ids) == {"dr", "amd"}
    best_saved = {e.path: e.weights_sha256 for e in sall_run.of(ev.CheckpointSaved) if e.is_best}
    for task, rel in finished.teachers.items():
        folder = sall_run.folder / rel
        assert rel.startswith(f"teacher-{task}/") and not rel.startswith("/")
        assert (folder / "weights.safetensors").is_file()
        assert read_card(folder).id == finished.teacher_ids[task] == best_saved[rel]
        assert [t.name for t in read_card(folder).tasks] == [task]
    student = read_card(sall_run.folder / "model")
    assert set(student.provenance.teacher_ids) == set(finished.teacher_ids.values())
    report = report_from_json((sall_run.folder / "report.json").read_text("utf-8"))
    assert report.teachers == finished.teachers and report.teacher_ids == finished.teacher_ids


def test_report_and_plots(sall_run) -> None:
    report = report_from_json((sall_run.folder / "report.json").read_text("utf-8"))
    assert report.kind == "sall" and report.model.split == "test"
    card = read_card(sall_run.folder / "model")
    assert report.model.model_id == card.id
    for head in report.model.heads:
        assert head.n > 0 and head.accuracy is not None and 0 <= head.accuracy <= 1
        assert head.temperature == pytest.approx(card.temperatures[head.task])
        assert sum(map(sum, head.confusion)) == head.n
        assert head.ece is not None and head.ece_calibrated is not None
    assert report.model.head("dr").referable is not None
    assert {h.stage for h in report.history} == {"teacher-dr", "teacher-amd", "student"}
    for name, rel in report.plots.items():
        png = sall_run.folder / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert {"learning_curves", "confusion_dr", "reliability_amd"} <= set(report.plots)


def test_logs_go_to_the_run_folder_without_image_paths(sall_run, tiny_data) -> None:
    log = (sall_run.folder / "train.log").read_text("utf-8")
    assert "run finished" in log
    assert str(tiny_data.folder) not in log and str(tiny_data.folder) not in sall_run.stderr


def test_evaluate_command_reports_on_any_split(
    sall_run, tiny_data, tiny_config, trainer, tmp_path
) -> None:
    out = tmp_path / "eval"
    run = trainer.run(
        [
            "evaluate",
            "--model",
            str(sall_run.folder / "model"),
            "--manifest",
            str(tiny_data.manifest),
            "--out",
            str(out),
            "--config",
            str(tiny_config),
            "--split",
            "train",
            "--calibrate-on",
            "card",
        ]
    )
    assert run.returncode == 0, run.stderr[-2000:]
    finished = run.events[-1]
    assert isinstance(finished, ev.RunFinished) and finished.report_path == "report.json"
    report = report_from_json((out / "report.json").read_text("utf-8"))
    card = read_card(sall_run.folder / "model")
    assert report.kind == "evaluate" and report.model.split == "train"
    assert report.model.model_id == card.id == finished.model_id
    trained_on = [r for r in tiny_data.rows if r.split == "train" and r.gradable]
    assert report.model.n_images == len(trained_on)
    assert {h.task: h.temperature for h in report.model.heads} == pytest.approx(card.temperatures)
