"""The fine-tune run as a Qt-free state machine: freeze, start, events, exit, cancel, failure,
promote only after a passed gate, discard. No QApplication and no process: the store steps of
``training_jobs`` are replaced by recorders, the store thread by an inline executor and the
trainer by a fake :class:`Runner`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sall_desktop.services import finetune_run as fr
from sall_desktop.services import models
from sall_desktop.services import training_jobs as jobs
from sall_desktop.services.finetune_run import (
    PROMOTE_REFUSED,
    FinetuneRun,
    Notice,
    RunState,
    RunUpdate,
    StateChanged,
    TrainerEvent,
)
from training.protocol.events import Progress, RunCancelled

T = TypeVar("T")


class InlineStore:
    """Runs each job at once (its future is done when ``submit`` returns): deterministic."""

    read_only = False

    def __init__(self) -> None:
        self.jobs = 0

    def submit(self, fn: Callable[[Any], T]) -> Future[T]:
        self.jobs += 1
        future: Future[T] = Future()
        try:
            future.set_result(fn(object()))
        except Exception as exc:  # noqa: BLE001 (a store job's error is the future's)
            future.set_exception(exc)
        return future


@dataclass
class FakeRunner:
    started: list[tuple[list[str], Path, dict[str, str] | None]] = field(default_factory=list)
    cancels: int = 0
    kills: int = 0

    def start(self, argv: list[str], run_dir: Path, env: dict[str, str] | None = None) -> None:
        self.started.append((argv, run_dir, env))

    def cancel(self) -> None:
        self.cancels += 1

    def kill(self) -> None:
        self.kills += 1


@dataclass(frozen=True)
class FakeOutcome:
    """What the run reads of an outcome (``jobs.RunOutcome`` needs a real report for a gate)."""

    status: str
    gate_passed: bool = False
    gate_status: str | None = None
    report: object | None = None
    message: str = ""


@dataclass(frozen=True)
class FakeVersion:
    id: str
    short_id: str


@dataclass
class Recorded:
    """What the replaced store steps were asked to do."""

    started: list[str] = field(default_factory=list)
    outcomes: list[tuple[str, Any, str]] = field(default_factory=list)
    promoted: list[tuple[str, str]] = field(default_factory=list)
    discarded: list[tuple[str, str]] = field(default_factory=list)
    result: Any = None  # what outcome_from_events returns (None: the real function)
    candidate: FakeVersion | None = None


def _frozen(tmp_path: Path) -> jobs.FrozenRun:
    spec = jobs.FinetuneSpec(
        run_dir=tmp_path / "run",
        init=tmp_path / "model",
        manifest=tmp_path / "run" / "manifest.csv",
        holdout=tmp_path / "run" / "holdout.csv",
        run_id="run-1",
    )
    return jobs.FrozenRun(spec, 30, 24, 6, 60, 2, 1, "parent")


@pytest.fixture
def steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    rec = Recorded()
    frozen = _frozen(tmp_path)
    real_outcome = jobs.outcome_from_events

    def outcome_from_events(events: Any, errors: Any, run_dir: Path) -> Any:
        return rec.result if rec.result is not None else real_outcome(events, errors, run_dir)

    def record_outcome(_s: Any, run_id: str, _d: Path, outcome: Any, *, actor: str) -> Any:
        rec.outcomes.append((run_id, outcome, actor))
        return rec.candidate if outcome.status == "finished" else None

    def promote(_s: Any, model_id: str, *, approver: str) -> FakeVersion:
        rec.promoted.append((model_id, approver))
        return FakeVersion(model_id, model_id[:12])

    monkeypatch.setattr(jobs, "freeze_finetune", lambda _s, overrides=(): frozen)
    monkeypatch.setattr(jobs, "mark_started", lambda _s, run_id: rec.started.append(run_id))
    monkeypatch.setattr(jobs, "outcome_from_events", outcome_from_events)
    monkeypatch.setattr(jobs, "record_outcome", record_outcome)
    monkeypatch.setattr(models, "promote", promote)
    monkeypatch.setattr(
        models, "discard", lambda _s, model_id, *, actor: rec.discarded.append((model_id, actor))
    )
    return rec


@pytest.fixture
def updates() -> list[RunUpdate]:
    return []


@pytest.fixture
def run(updates: list[RunUpdate]) -> FinetuneRun:
    return FinetuneRun(InlineStore(), updates.append, approver="Dr B")


def _states(updates: list[RunUpdate]) -> list[RunState]:
    return [u.state for u in updates if isinstance(u, StateChanged)]


def _notices(updates: list[RunUpdate]) -> list[str]:
    return [u.text for u in updates if isinstance(u, Notice)]


def _running(run: FinetuneRun, runner: FakeRunner) -> None:
    assert run.freeze() is not None
    assert run.state is RunState.FROZEN
    run.start(runner)


def test_a_passed_run_goes_idle_frozen_running_finished_promoted(
    run: FinetuneRun, updates: list[RunUpdate], steps: Recorded
) -> None:
    runner = FakeRunner()
    _running(run, runner)
    assert run.state is RunState.RUNNING and run.busy and steps.started == ["run-1"]
    (argv, run_dir, env) = runner.started[0]
    assert argv[argv.index("--out") + 1] == str(run_dir) and run_dir.name == "run"
    assert env is not None and env["PYTHONUNBUFFERED"] == "1"
    assert run.freeze() is None  # one run at a time

    event = Progress(run_id="run-1", stage="finetune", epoch=0, step=1, steps_per_epoch=4, loss=1)
    run.on_event(event)
    assert TrainerEvent(event) in updates and run.events == [event]

    steps.result = FakeOutcome("finished", True, "passed", report=object())
    steps.candidate = FakeVersion("c" * 64, "c" * 12)
    run.on_exit(0, False)
    assert run.state is RunState.FINISHED and not run.busy
    assert steps.outcomes[0][0] == "run-1" and steps.outcomes[0][2] == "Dr B"
    assert run.candidate == steps.candidate
    # The notice comes before the state change that carries the outcome (a view that waits for
    # the outcome finds the line already shown).
    said = updates.index(Notice("The candidate passed the gate: promote it or discard it."))
    assert said == len(updates) - 2 and updates[-1] == StateChanged(RunState.FINISHED, steps.result)

    assert run.promote("Dr C") is not None
    assert steps.promoted == [("c" * 64, "Dr C")]
    assert updates[-1] == StateChanged(
        RunState.PROMOTED,
        decision=f"<b>Promoted</b> {'c' * 12} by Dr C; the previous version can be restored "
        "from the model manager.",
        model_id="c" * 64,
    )
    assert _states(updates) == [
        RunState.FREEZING,
        RunState.FROZEN,
        RunState.RUNNING,
        RunState.RECORDING,
        RunState.FINISHED,
        RunState.PROMOTED,
    ]
    assert _notices(updates)[:2] == ["Freezing the corrections…", "Training…"]


@pytest.mark.parametrize(
    ("gate_status", "said"),
    [
        ("failed", "The candidate failed the gate; the active model is unchanged."),
        ("insufficient", "Not enough evidence to judge the candidate; it cannot be promoted"),
    ],
)
def test_promote_is_refused_unless_the_gate_passed(
    run: FinetuneRun, updates: list[RunUpdate], steps: Recorded, gate_status: str, said: str
) -> None:
    _running(run, FakeRunner())
    steps.result = FakeOutcome("finished", False, gate_status, report=object())
    steps.candidate = FakeVersion("d" * 64, "d" * 12)
    run.on_exit(0, False)
    assert run.state is RunState.FINISHED and _notices(updates)[-1].startswith(said)
    assert run.promote("Dr C") is None
    assert _notices(updates)[-1] == PROMOTE_REFUSED and steps.promoted == []
    assert run.discard() is not None
    assert steps.discarded == [("d" * 64, "Dr B")]
    assert updates[-1] == StateChanged(RunState.DISCARDED, decision="Candidate discarded.")


def test_promote_before_any_run_is_refused(run: FinetuneRun, updates: list[RunUpdate]) -> None:
    assert run.promote("Dr C") is None and _notices(updates) == [PROMOTE_REFUSED]
    assert run.discard() is None and run.state is RunState.IDLE


def test_cancel_stops_the_runner_and_the_run_ends_cancelled(
    run: FinetuneRun, updates: list[RunUpdate], steps: Recorded
) -> None:
    runner = FakeRunner()
    run.cancel()  # nothing runs: said, nothing stopped
    assert runner.cancels == 0 and _notices(updates) == ["Cancelling…"]
    _running(run, runner)
    run.cancel()
    assert runner.cancels == 1 and _notices(updates)[-1] == "Cancelling…"
    run.cancel(quiet=True)  # a quit: says nothing
    assert runner.cancels == 2 and _notices(updates)[-1] == "Cancelling…"
    run.on_event(RunCancelled(run_id="run-1", stage="finetune", checkpoint_path="ckpt"))
    run.on_exit(0, False)
    outcome = steps.outcomes[0][1]
    assert outcome.status == "cancelled" and run.state is RunState.CANCELLED
    assert _notices(updates)[-1] == "The fine-tune was cancelled; the active model is unchanged."
    assert updates[-1] == StateChanged(RunState.CANCELLED, outcome)
    assert run.promote("Dr C") is None and steps.promoted == []


def test_a_killed_trainer_after_cancel_is_cancelled_without_a_final_event(
    run: FinetuneRun, updates: list[RunUpdate], steps: Recorded
) -> None:
    runner = FakeRunner()
    _running(run, runner)
    run.cancel(quiet=True)
    run.kill()
    assert runner.kills == 1
    run.on_exit(9, True, "line one\nKilled")
    outcome = steps.outcomes[0][1]
    assert outcome.status == "cancelled"
    assert outcome.message == (
        "The training process ended without a result (killed after the grace period). Killed"
    )


def test_a_crash_without_a_result_fails_with_the_last_stderr_line(
    run: FinetuneRun, updates: list[RunUpdate], steps: Recorded
) -> None:
    _running(run, FakeRunner())
    run.on_exit(1, False, "Traceback\nValueError: bad")
    assert run.state is RunState.FAILED and steps.outcomes[0][1].status == "failed"
    assert _notices(updates)[-1] == (
        "The fine-tune failed; the active model is unchanged. The training process ended "
        "without a result (exit code 1). ValueError: bad"
    )
    run.on_exit(1, False)  # a second report of the same exit changes nothing
    assert len(steps.outcomes) == 1


def test_a_trainer_that_cannot_start_fails_the_run(
    run: FinetuneRun, updates: list[RunUpdate], steps: Recorded
) -> None:
    _running(run, FakeRunner())
    run.on_failed_to_start("The training program could not be started (no such file).")
    assert run.state is RunState.FAILED and not run.busy
    (run_id, outcome, actor) = steps.outcomes[0]
    assert (run_id, outcome.status, actor) == ("run-1", "failed", "app")
    assert updates[-2:] == [
        Notice("The training program could not be started (no such file)."),
        StateChanged(RunState.FAILED, outcome),
    ]
    assert run.freeze() is not None  # a new run may start


def test_nothing_to_freeze_says_why_and_goes_back_to_idle(
    run: FinetuneRun, updates: list[RunUpdate], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(_s: Any, overrides: tuple[str, ...] = ()) -> jobs.FrozenRun:
        raise jobs.TrainingJobError("No corrections to train on.")

    monkeypatch.setattr(jobs, "freeze_finetune", refuse)
    run.freeze()
    assert run.state is RunState.IDLE and run.frozen is None
    assert _notices(updates)[-1] == "Could not prepare the fine-tune: No corrections to train on."
    with pytest.raises(RuntimeError, match="cannot start from idle"):
        run.start(FakeRunner())


def test_a_result_that_cannot_be_recorded_fails_the_run(
    run: FinetuneRun, updates: list[RunUpdate], steps: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    _running(run, FakeRunner())

    def broken(*_a: Any, **_k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(jobs, "record_outcome", broken)
    run.on_exit(0, False)
    assert run.state is RunState.FAILED and run.outcome is None
    assert _notices(updates)[-1] == "Could not read the run's result: disk full"
    assert updates[-1] == StateChanged(RunState.FAILED)


def test_sample_holdout_reports_how_many(
    run: FinetuneRun, updates: list[RunUpdate], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fr.holdout_service, "sample_holdout", lambda _s, actor: ["a"] * 7)
    assert run.sample_holdout().result() == 7
    assert _notices(updates) == ["7 images locked into the hold-out."]
