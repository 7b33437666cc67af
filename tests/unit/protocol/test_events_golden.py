"""The event parser against streams recorded from real training runs (golden files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.protocol import events as ev
from training.protocol.events import format_event, parse_event, parse_stream

GOLDEN = Path(__file__).parent / "golden"
TERMINAL = (ev.RunFinished, ev.RunCancelled, ev.RunFailed)


def _load(name: str) -> list[ev.Event]:
    events, errors = parse_stream((GOLDEN / name).read_text("utf-8"))
    assert errors == []
    return events


def _runs(events: list[ev.Event]) -> list[list[ev.Event]]:
    """Split a stream into invocations (a resumed run appends to the same file)."""
    runs: list[list[ev.Event]] = []
    for e in events:
        if isinstance(e, ev.RunStarted):
            runs.append([])
        runs[-1].append(e)
    return runs


@pytest.mark.parametrize(
    "name",
    [
        "sall_tiny.jsonl",
        "cancel_then_resume.jsonl",
        "finetune_gate_failed.jsonl",
        "finetune_leakage.jsonl",
        "ddp_two_ranks.jsonl",
    ],
)
def test_recorded_streams_parse_and_are_well_formed(name: str) -> None:
    events = _load(name)
    assert len({e.run_id for e in events}) == 1
    assert all(e.v == ev.PROTOCOL_VERSION for e in events)
    for run in _runs(events):
        assert isinstance(run[0], ev.RunStarted)
        assert isinstance(run[-1], TERMINAL)
        assert sum(isinstance(e, TERMINAL) for e in run) == 1
    for e in events:
        # Re-formatting a parsed event and parsing it again is lossless.
        assert parse_event(format_event(e)) == e
        if isinstance(e, ev.CheckpointSaved | ev.RunCancelled | ev.RunFinished):
            path = getattr(e, "path", "") or getattr(e, "checkpoint_path", "") or e.model_path  # type: ignore[attr-defined]
            assert not path.startswith("/") and "\\" not in path


def test_sall_stream_has_the_three_stages_in_order() -> None:
    events = _load("sall_tiny.jsonl")
    assert [e.stage for e in events if isinstance(e, ev.StageStarted)] == [
        "teacher-dr",
        "teacher-amd",
        "student",
    ]
    ends = [e for e in events if isinstance(e, ev.EpochEnd)]
    assert [(e.stage, e.epoch) for e in ends] == [
        (s, k) for s in ("teacher-dr", "teacher-amd", "student") for k in (0, 1)
    ]
    student = ends[-1]
    assert set(student.metrics) == {"dr", "amd"}
    assert student.losses["train_kl"] is not None and student.losses["train_feature"] is not None
    finished = events[-1]
    assert isinstance(finished, ev.RunFinished)
    assert finished.model_path == "model" and finished.report_path == "report.json"
    assert finished.gate_passed is None and len(finished.model_id) == 64
    # Recorded before run_finished named the teachers: an older trainer's stream still parses.
    assert finished.teachers == {} and finished.teacher_ids == {}


def test_cancelled_stream_then_resume() -> None:
    first, second = _runs(_load("cancel_then_resume.jsonl"))
    ack = [e for e in first if isinstance(e, ev.StopAcknowledged)]
    assert len(ack) == 1 and ack[0].reason == "stop_file"
    cancelled = first[-1]
    assert isinstance(cancelled, ev.RunCancelled) and cancelled.checkpoint_path
    assert not any(isinstance(e, ev.EpochEnd) for e in first)  # stopped inside epoch 0
    steps = [e.step for e in second if isinstance(e, ev.Progress) and e.epoch == 0]
    stopped_at = max(e.step for e in first if isinstance(e, ev.Progress))
    assert steps and min(steps) == stopped_at + 1  # the resumed run continues, not restarts
    assert isinstance(second[-1], ev.RunFinished)


def test_failed_stream_carries_a_redacted_reason() -> None:
    failed = _load("finetune_leakage.jsonl")[-1]
    assert isinstance(failed, ev.RunFailed) and failed.error_type == "LeakageError"
    assert "hold-out" in failed.message and "/" not in failed.message


def test_gate_verdict_reaches_the_finished_event() -> None:
    finished = _load("finetune_gate_failed.jsonl")[-1]
    assert isinstance(finished, ev.RunFinished) and finished.gate_passed is False


def test_newer_trainer_and_a_truncated_line_do_not_break_the_reader() -> None:
    events, errors = parse_stream((GOLDEN / "future_version_truncated.jsonl").read_text("utf-8"))
    assert len(events) == 1 and isinstance(events[0], ev.RunStarted) and events[0].v == 2
    assert len(errors) == 1 and errors[0].startswith("line 3")
