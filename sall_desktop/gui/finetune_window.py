"""The one-click fine-tune window: freeze, run the trainer as a QProcess, report, promote.

Everything that touches the store or files runs on the store thread (``submit(fn) -> Future``);
results come back to the GUI thread through a queued signal. The window never changes the
active model by itself: only Promote (a named approver, a passed gate) does, and a failed or
cancelled run, or a candidate whose gate failed or found too little evidence, leaves it untouched.
The trainer is started as the bare ``finetune --init M --manifest C --holdout H --out R``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.gui.geometry import close_on_escape, remember_geometry
from sall_desktop.gui.report_view import ReportView
from sall_desktop.gui.training_panel import TrainingPanel
from sall_desktop.gui.training_process import TrainingProcess
from sall_desktop.services import holdout as holdout_service
from sall_desktop.services import models as model_service
from sall_desktop.services import training_jobs as jobs
from sall_desktop.services.models import Store as SqliteLabelStore

T = TypeVar("T")


class StoreExecutor(Protocol):
    """What the window needs of ``StoreThread``."""

    def submit(self, fn: Callable[[SqliteLabelStore], T]) -> Future[T]: ...


class _Returner(QObject):
    """Delivers a future's outcome to a GUI-thread callback (queued signal)."""

    arrived = Signal(object, object)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.arrived.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def watch(
        self, future: Future[Any], on_done: Callable[[Any, BaseException | None], None]
    ) -> None:
        def done(f: Future[Any]) -> None:
            exc = f.exception()
            self.arrived.emit(on_done, (None if exc else f.result(), exc))

        future.add_done_callback(done)

    @staticmethod
    def _deliver(callback: Any, payload: Any) -> None:
        callback(*payload)


class FinetuneWindow(QWidget):
    """Freeze the corrections, fine-tune, show the report, promote or discard.

    Signals:
        active_model_changed(str): a candidate was promoted (new active model id).
        outcome_ready(object): the run ended; a ``services.training_jobs.RunOutcome``.
        message(str): a grader-readable status line (also shown in the window).
    """

    active_model_changed = Signal(str)
    outcome_ready = Signal(object)
    message = Signal(str)

    def __init__(
        self,
        store: StoreExecutor,
        *,
        approver: str = "",
        overrides: tuple[str, ...] = (),
        grace_ms: int = 15_000,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune the active model")
        # Progress, curves and the gate's checks visible without resizing; where the grader
        # put it last time after that. Esc and Close hide it (a run goes on, see closeEvent).
        remember_geometry(self, "finetune", 1100, 820)
        close_on_escape(self)
        self._store = store
        self._overrides = overrides  # tests only: the app passes none
        self._returner = _Returner(self)
        self.process = TrainingProcess(self, grace_ms=grace_ms)
        self.process.event_received.connect(self._on_event)
        self.process.finished.connect(self._on_process_finished)
        self.process.failed_to_start.connect(self._on_failed_to_start)
        self.summary_label = QLabel(
            "Fine-tuning trains a candidate on your corrections; it is judged against the active "
            "model on the locked hold-out and the model's reference set, and replaces the active "
            "model only if it passes and you promote it."
        )
        self.summary_label.setWordWrap(True)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.sample_button = QPushButton("Sample a hold-out")
        self.sample_button.clicked.connect(self._sample_holdout)
        self.start_button = QPushButton("Fine-tune")
        self.start_button.clicked.connect(self.start)
        self.panel = TrainingPanel()
        self.panel.cancel_requested.connect(self.cancel)
        self.panel.setVisible(False)
        self.report_view = ReportView()
        self.report_view.approver.setText(approver)
        self.report_view.promote_requested.connect(self.promote)
        self.report_view.discard_requested.connect(self.discard)
        self.report_view.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(self.sample_button)
        top.addStretch(1)
        top.addWidget(self.start_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addLayout(top)
        layout.addWidget(self.status_label)
        # Curves and the report (two confusion matrices per head) are taller than a laptop
        # screen: they scroll, and the Promote/Discard row stays reachable.
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        body_layout.addWidget(self.panel, 1)
        body_layout.addWidget(self.report_view, 1)
        self.body_scroll = QScrollArea()
        self.body_scroll.setWidgetResizable(True)
        self.body_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.body_scroll.setWidget(body)
        layout.addWidget(self.body_scroll, 1)
        close_row = QHBoxLayout()
        close_row.addStretch(1)
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip(
            "Esc. A fine-tune under way goes on; Model → Fine-tune… shows it"
        )
        self.close_button.clicked.connect(self.close)
        close_row.addWidget(self.close_button)
        layout.addLayout(close_row)
        self.frozen: jobs.FrozenRun | None = None
        self.outcome: jobs.RunOutcome | None = None
        self.candidate: model_service.ModelVersion | None = None
        self.approver = approver

    # ------------------------------------------------------------------ helpers

    def _say(self, text: str) -> None:
        self.status_label.setText(text)
        self.message.emit(text)

    def _run(
        self,
        fn: Callable[[SqliteLabelStore], T],
        on_ok: Callable[[T], None],
        what: str,
    ) -> None:
        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._say(f"Could not {what}: {exc}")
                self.start_button.setEnabled(not self.process.is_running())
                return
            on_ok(result)

        self._returner.watch(self._store.submit(fn), done)

    # ------------------------------------------------------------------ hold-out

    def _sample_holdout(self) -> None:
        actor = self.approver or "grader"

        def sample(store: SqliteLabelStore) -> int:
            return len(holdout_service.sample_holdout(store, actor=actor))

        self._run(sample, lambda n: self._say(f"{n} images locked into the hold-out."), "sample")

    # ------------------------------------------------------------------ run

    def start(self) -> None:
        """Freeze the corrections into a new run folder, then start the trainer."""
        if self.process.is_running():
            return
        self.start_button.setEnabled(False)
        self.report_view.setVisible(False)
        self._say("Freezing the corrections…")
        overrides = self._overrides

        def freeze(store: SqliteLabelStore) -> jobs.FrozenRun:
            return jobs.freeze_finetune(store, overrides=overrides)

        self._run(freeze, self._launch, "prepare the fine-tune")

    def _launch(self, frozen: jobs.FrozenRun) -> None:
        self.frozen = frozen
        self.summary_label.setText(frozen.summary())
        argv = jobs.build_command(frozen.spec, jobs.is_frozen())
        self.panel.reset()
        self.panel.setVisible(True)
        self._say("Training…")
        self.process.start(argv, frozen.spec.run_dir, env=jobs.child_environment())
        run_id = frozen.spec.run_id
        self._store.submit(lambda store: jobs.mark_started(store, run_id))

    def _on_event(self, ev: object) -> None:
        self.panel.handle_event(ev)

    def cancel(self) -> None:
        """Ask the trainer to stop (STOP file, then kill after the grace period)."""
        self._say("Cancelling…")
        self.process.cancel()

    def _on_failed_to_start(self, text: str) -> None:
        self._say(text)
        self.start_button.setEnabled(True)
        if self.frozen is not None:
            outcome = jobs.RunOutcome("failed", message=text)
            run_id, run_dir = self.frozen.spec.run_id, self.frozen.spec.run_dir
            self._store.submit(
                lambda store: jobs.record_outcome(store, run_id, run_dir, outcome, actor="app")
            )
            self.outcome = outcome
            self.outcome_ready.emit(outcome)

    def _on_process_finished(self, code: int, crashed: bool) -> None:
        frozen = self.frozen
        if frozen is None:
            return
        events = tuple(self.process.events)
        run_id, run_dir = frozen.spec.run_id, frozen.spec.run_dir
        tail = self.process.stderr_tail()
        actor = self.approver or "training"

        def record(
            store: SqliteLabelStore,
        ) -> tuple[jobs.RunOutcome, model_service.ModelVersion | None]:
            outcome = jobs.outcome_from_events(events, (), run_dir)
            if outcome.status == "running":  # no final event: killed or crashed
                why = "killed after the grace period" if crashed else f"exit code {code}"
                outcome = jobs.RunOutcome(
                    "cancelled" if self.process.cancel_requested else "failed",
                    events,
                    message=f"The training process ended without a result ({why}). "
                    + (tail.splitlines()[-1] if tail else ""),
                )
            candidate = jobs.record_outcome(store, run_id, run_dir, outcome, actor=actor)
            return outcome, candidate

        self._run(record, self._show_outcome, "read the run's result")

    def _show_outcome(
        self, result: tuple[jobs.RunOutcome, model_service.ModelVersion | None]
    ) -> None:
        outcome, candidate = result
        self.outcome, self.candidate = outcome, candidate
        self.start_button.setEnabled(True)
        if outcome.status == "finished" and outcome.report is not None:
            self.report_view.show_report(
                outcome.report, outcome.verdict, status=outcome.gate_status
            )
            self.report_view.setVisible(True)
            # The verdict and its checks are what the grader came for: bring them into view.
            QTimer.singleShot(0, self._scroll_to_report)
            if outcome.gate_passed:
                self._say("The candidate passed the gate: promote it or discard it.")
            elif outcome.gate_status == "insufficient":
                self._say(
                    "Not enough evidence to judge the candidate; it cannot be promoted and the "
                    "active model is unchanged."
                )
            else:
                self._say("The candidate failed the gate; the active model is unchanged.")
        elif outcome.status == "cancelled":
            self._say("The fine-tune was cancelled; the active model is unchanged.")
        else:
            self._say(f"The fine-tune failed; the active model is unchanged. {outcome.message}")
        self.outcome_ready.emit(outcome)

    # ------------------------------------------------------------------ decision

    def _scroll_to_report(self) -> None:
        self.body_scroll.verticalScrollBar().setValue(self.report_view.y())

    def promote(self, approver: str) -> None:
        """Promote the candidate (gate passed; the approver is recorded)."""
        candidate = self.candidate
        if candidate is None or self.outcome is None or not self.outcome.gate_passed:
            self._say("Only a candidate that passed the gate can be promoted.")
            return

        def run(store: SqliteLabelStore) -> model_service.ModelVersion:
            return model_service.promote(store, candidate.id, approver=approver)

        def done(version: model_service.ModelVersion) -> None:
            self.report_view.set_decided(
                f"<b>Promoted</b> {version.short_id} by {approver}; the previous version can be "
                "restored from the model manager."
            )
            self.active_model_changed.emit(version.id)

        self._run(run, done, "promote the candidate")

    def discard(self) -> None:
        """Retire the candidate without promoting it."""
        candidate = self.candidate
        if candidate is None:
            return
        actor = self.report_view.approver.text().strip() or self.approver or "grader"
        self._run(
            lambda store: model_service.discard(store, candidate.id, actor=actor),
            lambda _: self.report_view.set_decided("Candidate discarded."),
            "discard the candidate",
        )

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, timeout_ms: int = 20_000) -> None:
        """Stop a running trainer (STOP, then kill) and wait for it (window close, app quit)."""
        self.panel.stop_rendering()
        if self.process.is_running():
            self.process.cancel()
            if not self.process.wait_finished(timeout_ms):
                self.process.kill()
                self.process.wait_finished(5_000)

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        # The Esc shortcut needs focus inside the window; a key sent to the window itself (or
        # one its children leave unhandled) arrives here.
        if event.key() == Qt.Key.Key_Escape:
            self.close()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        if self.process.is_running():
            # Closing the window is not cancelling the run: Cancel does that, quitting too.
            event.ignore()
            self.hide()
            self._say("The fine-tune goes on in the background; Model → Fine-tune… shows it.")
            return
        self.shutdown()
        super().closeEvent(event)


__all__ = ["FinetuneWindow", "StoreExecutor"]
