"""The JSON-lines event protocol: round trips, tolerance rules, malformed lines, redaction."""

from __future__ import annotations

import json

import pytest

from training.protocol import events as ev
from training.protocol.events import (
    PROTOCOL_VERSION,
    EventParseError,
    format_event,
    parse_event,
    parse_stream,
    redact_message,
)

SAMPLES: list[ev.Event] = [
    ev.RunStarted(
        run_id="r1",
        command="sall",
        config={"sall": {"temperature": 3.0, "tasks": [{"name": "dr", "classes": ["a", "b"]}]}},
        config_digest="c" * 64,
        manifest_digest="m" * 64,
        device="cpu",
        versions={"torch": "2.14.1"},
    ),
    ev.StageStarted(
        run_id="r1", stage="teacher-dr", index=0, total=4, train_images=30, val_images=6
    ),
    ev.Progress(run_id="r1", stage="student", epoch=0, step=1, steps_per_epoch=2, loss=1.5),
    ev.EpochEnd(
        run_id="r1",
        stage="student",
        epoch=0,
        train_loss=1.25,
        val_loss=None,
        losses={"train_kl": 0.5, "val_hard": None},
        metrics={"dr": {"accuracy": 0.5, "qwk": None}},
        lr=1e-5,
        is_best=True,
        seconds=2.5,
    ),
    ev.CheckpointSaved(
        run_id="r1",
        stage="student",
        epoch=0,
        path="student/ckpt/e0000",
        weights_sha256="a" * 64,
        is_best=True,
    ),
    ev.StopAcknowledged(run_id="r1", reason="stop_file"),
    ev.RunCancelled(run_id="r1", stage="student", checkpoint_path="student/ckpt/e0000"),
    ev.RunFinished(
        run_id="r1",
        model_path="model",
        model_id="b" * 64,
        report_path="report.json",
        gate_passed=None,
        seconds=12.0,
        teachers={"dr": "teacher-dr/ckpt/e0001", "amd": "teacher-amd/ckpt/e0000"},
        teacher_ids={"dr": "d" * 64, "amd": "e" * 64},
    ),
    ev.RunFailed(run_id="r1", error_type="LeakageError", message="2 hold-out images in training"),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.EVENT)
def test_every_event_round_trips(sample: ev.Event) -> None:
    line = format_event(sample)
    assert "\n" not in line
    obj = json.loads(line)
    assert list(obj)[:4] == ["v", "event", "time", "run_id"]
    assert obj["v"] == PROTOCOL_VERSION and obj["event"] == sample.EVENT
    assert parse_event(line) == sample
    assert parse_event(line.encode("utf-8") + b"\r\n") == sample


def test_every_event_class_is_sampled() -> None:
    assert {type(s) for s in SAMPLES} == set(ev.EVENT_TYPES.values())


def test_time_is_utc_iso8601() -> None:
    from datetime import datetime, timedelta

    stamp = datetime.fromisoformat(ev.StopAcknowledged(run_id="r", reason="signal").time)
    assert stamp.utcoffset() == timedelta(0)


def test_non_finite_floats_travel_as_null() -> None:
    line = format_event(
        ev.EpochEnd(
            run_id="r",
            stage="s",
            epoch=0,
            train_loss=float("nan"),
            val_loss=float("inf"),
            losses={"x": float("-inf")},
            metrics={"dr": {"auc": float("nan")}},
            lr=0.1,
            is_best=False,
            seconds=1.0,
        )
    )
    parsed = parse_event(line)
    assert isinstance(parsed, ev.EpochEnd)
    assert parsed.train_loss is None and parsed.val_loss is None
    assert parsed.losses == {"x": None} and parsed.metrics == {"dr": {"auc": None}}


def test_unknown_event_and_unknown_fields_are_ignored() -> None:
    assert parse_event('{"v": 1, "event": "gpu_temperature", "celsius": 80}') is None
    line = json.loads(format_event(SAMPLES[2]))
    line["new_field_from_a_newer_trainer"] = [1, 2]
    line["v"] = PROTOCOL_VERSION + 1
    parsed = parse_event(json.dumps(line))
    assert isinstance(parsed, ev.Progress) and parsed.loss == 1.5


def test_integers_in_float_fields_compare_equal() -> None:
    line = format_event(SAMPLES[2]).replace('"loss":1.5', '"loss":2')
    parsed = parse_event(line)
    assert isinstance(parsed, ev.Progress) and parsed.loss == 2.0 and isinstance(parsed.loss, float)


def test_run_finished_of_an_older_trainer_has_no_teachers() -> None:
    # Written before run_finished named the teachers: the new fields take their defaults.
    line = (
        '{"v":1,"event":"run_finished","time":"t","run_id":"r","model_path":"model",'
        '"model_id":"ab","report_path":"","gate_passed":null,"seconds":1.5}'
    )
    parsed = parse_event(line)
    assert isinstance(parsed, ev.RunFinished) and parsed.model_path == "model"
    assert parsed.teachers == {} and parsed.teacher_ids == {}


def test_run_finished_names_the_teachers_on_the_wire() -> None:
    finished = SAMPLES[7]
    assert isinstance(finished, ev.RunFinished)
    obj = json.loads(format_event(finished))
    assert obj["teachers"] == {"dr": "teacher-dr/ckpt/e0001", "amd": "teacher-amd/ckpt/e0000"}
    assert obj["teacher_ids"] == {"dr": "d" * 64, "amd": "e" * 64}
    # A reader that predates the fields ignores them (unknown extra fields).
    older = {k: v for k, v in obj.items() if k not in ("teachers", "teacher_ids")}
    assert parse_event(json.dumps(older)) == ev.RunFinished(
        **{k: v for k, v in older.items() if k != "event"}
    )


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "not json",
        '{"v": 1, "event": "progress"',  # truncated by a kill mid-write
        "[1, 2]",
        '"run_started"',
        '{"v": 1, "run_id": "r"}',
        '{"v": 1, "event": 7}',
        '{"v": "1", "event": "stop_acknowledged", "time": "t", "run_id": "r", "reason": "signal"}',
        '{"v": 1, "event": "stop_acknowledged", "time": "t", "run_id": "r", "reason": "boom"}',
        '{"v": 1, "event": "stop_acknowledged", "time": "t", "run_id": "r"}',
        '{"v": 1, "event": "progress", "time": "t", "run_id": "r", "stage": "s", "epoch": 1.5,'
        ' "step": 1, "steps_per_epoch": 1, "loss": 1}',
        '{"v": 1, "event": "progress", "time": "t", "run_id": "r", "stage": "s", "epoch": 1,'
        ' "step": 1, "steps_per_epoch": 1, "loss": "1"}',
        '{"v": 1, "event": "epoch_end", "time": "t", "run_id": "r", "stage": "s", "epoch": 0,'
        ' "train_loss": 1, "val_loss": 1, "losses": {"a": "x"}, "metrics": {}, "lr": 1,'
        ' "is_best": 1, "seconds": 1}',
        # an optional field may be absent, never mistyped; the common fields are required
        '{"v": 1, "event": "run_finished", "time": "t", "run_id": "r", "model_path": "m",'
        ' "model_id": "i", "report_path": "", "gate_passed": null, "seconds": 1,'
        ' "teachers": {"dr": 3}}',
        '{"v": 1, "event": "stop_acknowledged", "run_id": "r", "reason": "signal"}',
    ],
)
def test_malformed_lines_raise_event_parse_error(line: str) -> None:
    with pytest.raises(EventParseError):
        parse_event(line)


def test_invalid_utf8_raises_event_parse_error() -> None:
    with pytest.raises(EventParseError):
        parse_event(b'{"v": 1, "event": "\xff"}')


def test_parse_stream_collects_errors_without_raising() -> None:
    text = "\n".join([format_event(SAMPLES[0]), "", "garbage", '{"event":"later"}', '{"v":1,'])
    events, errors = parse_stream(text)
    assert events == [SAMPLES[0]]
    assert len(errors) == 2 and errors[0].startswith("line 3")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("cannot read /home/ann/eyes/p1_left.jpg: truncated", "cannot read <path>: truncated"),
        ("C:\\Users\\Ann\\scan 1.dcm is bad", "<path> 1.dcm is bad"),
        ("\\\\server\\share\\x.png missing", "<path> missing"),
        ("decoding site2/p001_left.jpg failed", "decoding <path> failed"),
        ("file:///tmp/a.png", "<path>"),
        (
            "loss 0/1 between dr/amd heads, ratio 3/4.5",
            "loss 0/1 between dr/amd heads, ratio 3/4.5",
        ),
    ],
)
def test_redact_message_removes_paths(message: str, expected: str) -> None:
    assert redact_message(message) == expected


def test_redact_message_is_bounded() -> None:
    assert len(redact_message("x" * 10_000, limit=100)) == 100
