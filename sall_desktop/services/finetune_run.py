"""One fine-tune run as a Qt-free state machine: freeze, train, record, then promote or discard.

::

    idle -> freezing -> frozen -> running -> recording -> finished | failed | cancelled
    finished (gate passed) -> promoted | discarded;   finished (gate not passed) -> discarded
    freezing -> idle (nothing to freeze);   running -> failed (the trainer did not start)

The service owns every store-thread step (:mod:`.training_jobs` holds them as functions) and
the trainer's command line; the trainer itself is behind :class:`Runner`, so the GUI plugs in
its ``QProcess`` wrapper and a test a fake. The runner's reports come in through
:meth:`FinetuneRun.on_event`, :meth:`~FinetuneRun.on_exit` and
:meth:`~FinetuneRun.on_failed_to_start`; what a view shows goes out to one listener as
:class:`StateChanged`, :class:`TrainerEvent` and :class:`Notice` updates, called on whichever
thread made the change (the store thread for the store steps): a GUI relays them to its thread.
A run's notice always comes before the state change that carries its outcome.

The active model changes only through :meth:`FinetuneRun.promote`, and only for a candidate
whose gate passed (the models service refuses any other too); a failed or cancelled run, or a
candidate whose gate failed or found too little evidence, leaves it untouched.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sall_desktop.services import holdout as holdout_service
from sall_desktop.services import models
from sall_desktop.services import training_jobs as jobs
from sall_desktop.services.store_executor import StoreExecutor
from sall_desktop.services.training_jobs import FrozenRun, RunOutcome
from training.protocol.events import Event

if TYPE_CHECKING:
    from sall_desktop.store import LabelStore


class RunState(enum.StrEnum):
    """Where a fine-tune run stands."""

    IDLE = "idle"
    FREEZING = "freezing"
    """The corrections and the hold-out are being frozen into a run folder (store thread)."""
    FROZEN = "frozen"
    """The run folder is ready; :meth:`FinetuneRun.start` launches the trainer."""
    RUNNING = "running"
    RECORDING = "recording"
    """The trainer exited; its outcome (and candidate) is being recorded (store thread)."""
    FINISHED = "finished"
    """The trainer produced a report: a candidate with its gate verdict."""
    FAILED = "failed"
    CANCELLED = "cancelled"
    PROMOTED = "promoted"
    DISCARDED = "discarded"


BUSY = frozenset({RunState.FREEZING, RunState.FROZEN, RunState.RUNNING, RunState.RECORDING})
"""States in which a new run cannot be started."""

PROMOTE_REFUSED = "Only a candidate that passed the gate can be promoted."


class Runner(Protocol):
    """The trainer child process (``gui.training_process.TrainingProcess`` is one)."""

    def start(self, argv: list[str], run_dir: Path, env: dict[str, str] | None = None) -> None:
        """Start ``argv`` (program first) in ``run_dir``; report back through the run."""
        ...

    def cancel(self) -> None:
        """Ask the trainer to stop (the STOP file), killing it after a grace period."""
        ...

    def kill(self) -> None:
        """Kill the trainer and its descendants now."""
        ...


@dataclass(frozen=True)
class StateChanged:
    """The run moved to ``state``.

    Attributes:
        outcome: how the run ended (finished, failed, cancelled); None for other states and for
            a run whose result could not be read.
        decision: promoted or discarded: the line that says what was decided.
        model_id: promoted: the new active version's id.
    """

    state: RunState
    outcome: RunOutcome | None = None
    decision: str = ""
    model_id: str = ""


@dataclass(frozen=True)
class TrainerEvent:
    """An event of the trainer's stream, in the order it arrived."""

    event: Event


@dataclass(frozen=True)
class Notice:
    """A grader-readable status line."""

    text: str


RunUpdate = StateChanged | TrainerEvent | Notice
Listener = Callable[[RunUpdate], None]


def outcome_notice(outcome: RunOutcome) -> str:
    """What the grader is told when a run ends (the active model is never changed by it)."""
    if outcome.status == "finished" and outcome.report is not None:
        if outcome.gate_passed:
            return "The candidate passed the gate: promote it or discard it."
        if outcome.gate_status == "insufficient":
            return (
                "Not enough evidence to judge the candidate; it cannot be promoted and the "
                "active model is unchanged."
            )
        return "The candidate failed the gate; the active model is unchanged."
    if outcome.status == "cancelled":
        return "The fine-tune was cancelled; the active model is unchanged."
    return f"The fine-tune failed; the active model is unchanged. {outcome.message}"


def _end_state(outcome: RunOutcome) -> RunState:
    if outcome.status == "finished" and outcome.report is not None:
        return RunState.FINISHED
    return RunState.CANCELLED if outcome.status == "cancelled" else RunState.FAILED


class FinetuneRun:
    """Fine-tunes the active model on the corrections: one run at a time, again and again.

    Args:
        store: the store thread (every store step runs there, in order).
        listener: receives every :data:`RunUpdate` (on the thread that made it).
        approver: who is recorded for the run's steps (the view keeps it current).
        overrides: tests only: ``--set`` overrides of the frozen config (the app passes none).
    """

    def __init__(
        self,
        store: StoreExecutor,
        listener: Listener,
        *,
        approver: str = "",
        overrides: tuple[str, ...] = (),
    ) -> None:
        self._store = store
        self._listener = listener
        self._overrides = overrides
        self._lock = threading.Lock()  # state is changed on the caller's and the store thread
        self._runner: Runner | None = None
        self._cancel_requested = False
        self.approver = approver
        self.state = RunState.IDLE
        self.frozen: FrozenRun | None = None
        self.outcome: RunOutcome | None = None
        self.candidate: models.ModelVersion | None = None
        self.events: list[Event] = []

    @property
    def busy(self) -> bool:
        """True from freezing until the outcome is recorded (no second run meanwhile)."""
        return self.state in BUSY

    # ------------------------------------------------------------------ reporting

    def _move(
        self,
        state: RunState,
        outcome: RunOutcome | None = None,
        *,
        decision: str = "",
        model_id: str = "",
    ) -> None:
        with self._lock:
            self.state = state
        self._listener(StateChanged(state, outcome, decision, model_id))

    def _notice(self, text: str) -> None:
        self._listener(Notice(text))

    def _failed(self, what: str, exc: BaseException) -> None:
        self._notice(f"Could not {what}: {exc}")

    # ------------------------------------------------------------------ hold-out

    def sample_holdout(self) -> Future[int]:
        """Lock a hold-out sample (the number of images locked; a notice says it too)."""
        actor = self.approver or "grader"

        def sample(store: LabelStore) -> int:
            return len(holdout_service.sample_holdout(store, actor=actor))

        future = self._store.submit(sample)

        def done(f: Future[int]) -> None:
            exc = f.exception()
            if exc is not None:
                self._failed("sample", exc)
            else:
                self._notice(f"{f.result()} images locked into the hold-out.")

        future.add_done_callback(done)
        return future

    # ------------------------------------------------------------------ run

    def freeze(self) -> Future[FrozenRun] | None:
        """Freeze the corrections into a new run folder (None: a run is already under way)."""
        with self._lock:
            if self.state in BUSY:
                return None
            self.state = RunState.FREEZING
            self.frozen = self.outcome = self.candidate = None
            self.events = []
            self._cancel_requested = False
        self._listener(StateChanged(RunState.FREEZING))
        self._notice("Freezing the corrections…")
        overrides = self._overrides
        future = self._store.submit(lambda store: jobs.freeze_finetune(store, overrides=overrides))

        def done(f: Future[FrozenRun]) -> None:
            exc = f.exception()
            if exc is not None:
                self._failed("prepare the fine-tune", exc)
                self._move(RunState.IDLE)
                return
            self.frozen = f.result()
            self._move(RunState.FROZEN)

        future.add_done_callback(done)
        return future

    def start(self, runner: Runner) -> None:
        """Launch the trainer on the frozen run (call on the runner's thread).

        Raises:
            RuntimeError: the run is not frozen (nothing to train on, or already started).
        """
        frozen = self.frozen
        if self.state is not RunState.FROZEN or frozen is None:
            raise RuntimeError(f"a fine-tune cannot start from {self.state}")
        self._runner = runner
        argv = jobs.build_command(frozen.spec, jobs.is_frozen())
        self._move(RunState.RUNNING)
        self._notice("Training…")
        run_id = frozen.spec.run_id
        # Submitted before the start so that a start failure, recorded after it on the same
        # thread, is the run's last word.
        self._store.submit(lambda store: jobs.mark_started(store, run_id))
        runner.start(argv, frozen.spec.run_dir, env=jobs.child_environment())

    def on_event(self, event: Event) -> None:
        """A trainer event arrived (kept for the outcome, passed on to the listener)."""
        self.events.append(event)
        self._listener(TrainerEvent(event))

    def cancel(self, *, quiet: bool = False) -> None:
        """Ask the trainer to stop (the runner's STOP, then kill); ``quiet``: say nothing."""
        if not quiet:
            self._notice("Cancelling…")
        if self.state is RunState.RUNNING and self._runner is not None:
            self._cancel_requested = True
            self._runner.cancel()

    def kill(self) -> None:
        """Kill the trainer now (a quit whose STOP was not heeded in time)."""
        if self.state is RunState.RUNNING and self._runner is not None:
            self._cancel_requested = True
            self._runner.kill()

    def on_failed_to_start(self, text: str) -> None:
        """The trainer could not be started: the run failed (recorded as such)."""
        self._notice(text)
        frozen = self.frozen
        if frozen is None or self.state is not RunState.RUNNING:
            return
        outcome = RunOutcome("failed", message=text)
        run_id, run_dir = frozen.spec.run_id, frozen.spec.run_dir
        self._store.submit(
            lambda store: jobs.record_outcome(store, run_id, run_dir, outcome, actor="app")
        )
        self.outcome = outcome
        self._move(RunState.FAILED, outcome)

    def on_exit(
        self, code: int, crashed: bool, stderr_tail: str = ""
    ) -> Future[tuple[RunOutcome, models.ModelVersion | None]] | None:
        """The trainer exited: read its outcome, register a finished run's candidate (gated),
        and record how the run ended. None when no run was under way."""
        frozen = self.frozen
        if frozen is None or self.state is not RunState.RUNNING:
            return None
        self._move(RunState.RECORDING)
        events = tuple(self.events)
        run_id, run_dir = frozen.spec.run_id, frozen.spec.run_dir
        cancelled = self._cancel_requested
        actor = self.approver or "training"

        def record(
            store: LabelStore,
        ) -> tuple[RunOutcome, models.ModelVersion | None]:
            outcome = jobs.outcome_from_events(events, (), run_dir)
            if outcome.status == "running":  # no final event: killed or crashed
                why = "killed after the grace period" if crashed else f"exit code {code}"
                outcome = RunOutcome(
                    "cancelled" if cancelled else "failed",
                    events,
                    message=f"The training process ended without a result ({why}). "
                    + (stderr_tail.splitlines()[-1] if stderr_tail else ""),
                )
            candidate = jobs.record_outcome(store, run_id, run_dir, outcome, actor=actor)
            return outcome, candidate

        future = self._store.submit(record)

        def done(f: Future[tuple[RunOutcome, models.ModelVersion | None]]) -> None:
            exc = f.exception()
            if exc is not None:
                self._failed("read the run's result", exc)
                self._move(RunState.FAILED)
                return
            outcome, candidate = f.result()
            self.outcome, self.candidate = outcome, candidate
            self._notice(outcome_notice(outcome))
            self._move(_end_state(outcome), outcome)

        future.add_done_callback(done)
        return future

    # ------------------------------------------------------------------ decision

    def promote(self, approver: str) -> Future[models.ModelVersion] | None:
        """Make the candidate active, ``approver`` recorded; refused (a notice, None) unless
        the run finished with a candidate whose gate passed."""
        candidate, outcome = self.candidate, self.outcome
        if candidate is None or outcome is None or not outcome.gate_passed:
            self._notice(PROMOTE_REFUSED)
            return None
        future = self._store.submit(
            lambda store: models.promote(store, candidate.id, approver=approver)
        )

        def done(f: Future[models.ModelVersion]) -> None:
            exc = f.exception()
            if exc is not None:
                self._failed("promote the candidate", exc)
                return
            version = f.result()
            self._move(
                RunState.PROMOTED,
                decision=f"<b>Promoted</b> {version.short_id} by {approver}; the previous "
                "version can be restored from the model manager.",
                model_id=version.id,
            )

        future.add_done_callback(done)
        return future

    def discard(self, actor: str = "") -> Future[None] | None:
        """Retire the candidate without promoting it (None: there is none)."""
        candidate = self.candidate
        if candidate is None:
            return None
        who = actor or self.approver or "grader"
        future = self._store.submit(lambda store: models.discard(store, candidate.id, actor=who))

        def done(f: Future[None]) -> None:
            exc = f.exception()
            if exc is not None:
                self._failed("discard the candidate", exc)
            else:
                self._move(RunState.DISCARDED, decision="Candidate discarded.")

        future.add_done_callback(done)
        return future


__all__ = [
    "BUSY",
    "FinetuneRun",
    "FrozenRun",
    "Listener",
    "Notice",
    "PROMOTE_REFUSED",
    "RunOutcome",
    "RunState",
    "RunUpdate",
    "Runner",
    "StateChanged",
    "TrainerEvent",
    "outcome_notice",
]
