"""The one-click fine-tune window: a view over :class:`~sall_desktop.services.finetune_run.
FinetuneRun` (freeze, train, record, promote or discard) with the trainer as a QProcess.

The run's state machine and every store step live in the service; the window forwards the
grader's clicks and the process's reports to it and shows what it reports, which a relay brings
to the GUI thread. The window never changes the active model by itself: only Promote (a named
approver, a passed gate) does, and a failed or cancelled run, or a candidate whose gate failed
or found too little evidence, leaves it untouched. The trainer is started as the bare
``finetune --init M --manifest C --holdout H --out R``.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
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
from sall_desktop.gui.relay import Relay
from sall_desktop.gui.report_view import ReportView
from sall_desktop.gui.training_panel import TrainingPanel
from sall_desktop.gui.training_process import TrainingProcess
from sall_desktop.services import models as model_service
from sall_desktop.services.finetune_run import (
    BUSY,
    FinetuneRun,
    FrozenRun,
    Notice,
    RunOutcome,
    RunState,
    RunUpdate,
    StateChanged,
    TrainerEvent,
)
from sall_desktop.services.store_executor import StoreExecutor

SHUTDOWN_WAIT_MS = 20_000
"""How long a quitting app lets a trainer stop at its next step (STOP) before killing it."""


class FinetuneWindow(QWidget):
    """Freeze the corrections, fine-tune, show the report, promote or discard.

    Signals:
        active_model_changed(str): a candidate was promoted (new active model id).
        outcome_ready(object): the run ended; a ``services.training_RunOutcome``.
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
        self._relay = Relay(self)
        # ``overrides``: tests only (the app passes none).
        self.run = FinetuneRun(
            store, self._relay.deliver(self._on_update), approver=approver, overrides=overrides
        )
        self.process = TrainingProcess(self, grace_ms=grace_ms)
        # Straight to the service, not through the relay: a quit's wait for the process must
        # see its exit recorded before the store closes.
        self.process.event_received.connect(self.run.on_event)
        self.process.finished.connect(
            lambda code, crashed: self.run.on_exit(code, crashed, self.process.stderr_tail())
        )
        self.process.failed_to_start.connect(self.run.on_failed_to_start)
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

    # ------------------------------------------------------------------ the run's state

    @property
    def approver(self) -> str:
        """Who is recorded for the run's steps (the signed-in grader)."""
        return self.run.approver

    @approver.setter
    def approver(self, name: str) -> None:
        self.run.approver = name

    @property
    def frozen(self) -> FrozenRun | None:
        """The run folder of the current run, once frozen."""
        return self.run.frozen

    @property
    def outcome(self) -> RunOutcome | None:
        """How the last run ended."""
        return self.run.outcome

    @property
    def candidate(self) -> model_service.ModelVersion | None:
        """The last run's candidate version (registered with its gate verdict)."""
        return self.run.candidate

    # ------------------------------------------------------------------ showing

    def _say(self, text: str) -> None:
        self.status_label.setText(text)
        self.message.emit(text)

    def _on_update(self, update: RunUpdate) -> None:
        if isinstance(update, TrainerEvent):
            self.panel.handle_event(update.event)
        elif isinstance(update, Notice):
            self._say(update.text)
        else:
            self._on_state(update)

    def _on_state(self, change: StateChanged) -> None:
        state, outcome = change.state, change.outcome
        self.start_button.setEnabled(state not in BUSY)
        if state is RunState.FREEZING:
            self.report_view.setVisible(False)
        elif state is RunState.FROZEN:
            self.run.start(self.process)
        elif state is RunState.RUNNING and self.run.frozen is not None:
            self.summary_label.setText(self.run.frozen.summary())
            self.panel.reset()
            self.panel.setVisible(True)
        elif state in (RunState.PROMOTED, RunState.DISCARDED):
            self.report_view.set_decided(change.decision)
            if change.model_id:
                self.active_model_changed.emit(change.model_id)
        if state is RunState.FINISHED and outcome is not None and outcome.report is not None:
            self.report_view.show_report(
                outcome.report, outcome.verdict, status=outcome.gate_status
            )
            self.report_view.setVisible(True)
            # The verdict and its checks are what the grader came for: bring them into view.
            QTimer.singleShot(0, self._scroll_to_report)
        if outcome is not None:
            self.outcome_ready.emit(outcome)

    def _scroll_to_report(self) -> None:
        self.body_scroll.verticalScrollBar().setValue(self.report_view.y())

    # ------------------------------------------------------------------ forwarding

    def _sample_holdout(self) -> None:
        self.run.sample_holdout()

    def start(self) -> None:
        """Freeze the corrections into a new run folder, then start the trainer."""
        if self.process.is_running():
            return
        self.run.freeze()

    def cancel(self) -> None:
        """Ask the trainer to stop (STOP file, then kill after the grace period)."""
        self.run.cancel()

    def promote(self, approver: str) -> None:
        """Promote the candidate (gate passed; the approver is recorded)."""
        self.run.promote(approver)

    def discard(self) -> None:
        """Retire the candidate without promoting it."""
        self.run.discard(self.report_view.approver.text().strip())

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, timeout_ms: int | None = None) -> None:
        """Stop a running trainer (STOP, then kill) and wait for it (window close, app quit);
        ``timeout_ms`` (default :data:`SHUTDOWN_WAIT_MS`) is how long STOP gets before the kill."""
        self.panel.stop_rendering()
        if self.process.is_running():
            self.run.cancel(quiet=True)
            wait = SHUTDOWN_WAIT_MS if timeout_ms is None else timeout_ms
            if not self.process.wait_finished(wait):
                self.run.kill()
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


__all__ = ["FinetuneWindow"]
