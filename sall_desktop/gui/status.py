"""Save state and messages: the banner above the workspace and the status bar below it.

A failed write shows a blocking-style banner (R4) that stays until the write commits, with
Retry (and Discard for a write that can never succeed); other background errors show as a
dismissable banner, so no error is ever silent.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStatusBar, QWidget

from sall_desktop.gui.bridges import GradingBridge
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.services.grading import GradingEvent, GradingService


class Banner(QFrame):
    """A coloured message strip with optional Retry / Discard buttons."""

    retry_clicked = Signal()
    discard_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry = QPushButton("Retry now")
        self.discard = QPushButton("Discard unsaved")
        self.close_button = QPushButton("Dismiss")
        for button in (self.retry, self.discard, self.close_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.retry)
        layout.addWidget(self.discard)
        layout.addWidget(self.close_button)
        self.retry.clicked.connect(self.retry_clicked)
        self.discard.clicked.connect(self.discard_clicked)
        self.close_button.clicked.connect(self.hide)
        self.kind = ""
        self.hide()

    def show_message(
        self, kind: str, severity: str, text: str, *, retry: bool = False, discard: bool = False
    ) -> None:
        """``kind`` names the message ("save", "read_only", "error"...) so it can be cleared."""
        self.kind = kind
        self.setProperty("severity", severity)
        self.label.setText(text)
        self.retry.setVisible(retry)
        self.discard.setVisible(discard)
        self.close_button.setVisible(not retry)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()

    def clear(self, kind: str) -> None:
        if self.kind == kind:
            self.kind = ""
            self.hide()


BLIND_TEXT = "Blind-first: the model is hidden until you save your grade"


class StatusController(QObject):
    """Keeps the status bar counts and the global save state current."""

    def __init__(
        self,
        status_bar: QStatusBar,
        banner: Banner,
        model: ImageListModel,
        service: GradingService,
        bridge: GradingBridge,
    ) -> None:
        super().__init__(status_bar)
        self.banner = banner
        self.model = model
        self.service = service
        self.folder = QLabel("No folder open")
        self.counts = QLabel()
        self.save = QLabel()
        self.save.setObjectName("saveState")
        self.blind = QLabel(BLIND_TEXT)
        self.blind.setObjectName("blindFirst")
        self.blind.setToolTip("Ctrl+B turns it off")
        self.blind.setVisible(False)
        self.withheld = QLabel()
        self.withheld.setObjectName("blindFirst")
        self.withheld.setToolTip("The screening programme's second grading: set in Work")
        self.withheld.setVisible(False)
        status_bar.addWidget(self.folder)
        status_bar.addWidget(self.counts, 1)
        self.team = QLabel()
        self.team.setObjectName("teamStore")
        self.team.setVisible(False)
        status_bar.addPermanentWidget(self.team)
        status_bar.addPermanentWidget(self.withheld)
        status_bar.addPermanentWidget(self.blind)
        status_bar.addPermanentWidget(self.save)
        # Recount at most a few times a second: a scan changes entries thousands of times.
        self._recount = QTimer(self, singleShot=True, interval=150)
        self._recount.timeout.connect(self.update_counts)
        model.entries_changed.connect(self._schedule_recount)
        bridge.changed.connect(self._on_event)
        banner.retry_clicked.connect(service.retry)
        banner.discard_clicked.connect(self._discard)
        self.read_only_reason = ""
        self._show_save_state()

    def set_blind(self, on: bool) -> None:
        """Say in the status bar whether blind-first hides the model."""
        self.blind.setVisible(on)

    def set_withheld(self, text: str) -> None:
        """Say why a screening programme hides the model ("" says nothing)."""
        self.withheld.setText(text)
        self.withheld.setVisible(bool(text))

    def set_team_store(self, where: str) -> None:
        """Name the team store the grades go to ("" : this workstation's own database)."""
        self.team.setText(f"Team store {where}" if where else "")
        self.team.setToolTip(
            "Grades go to the team's shared store; other workstations' grades appear here "
            "within seconds."
        )
        self.team.setVisible(bool(where))

    def set_read_only(self, reason: str) -> None:
        self.read_only_reason = reason
        self._show_save_state()

    def set_folder(self, text: str) -> None:
        self.folder.setText(text)

    def _schedule_recount(self) -> None:
        if not self._recount.isActive():
            self._recount.start()

    def update_counts(self) -> None:
        self._recount.stop()
        entries = self.model.entries()
        described = unreadable = graded = ungradable = 0
        for e in entries:  # one pass: this runs several times a second while a folder streams
            described += e.record is not None
            unreadable += bool(e.error)
            if e.grading is not None:
                graded += 1
                ungradable += not e.grading.gradable
        parts = [f"{len(entries)} images"]
        if described + unreadable < len(entries):
            parts.append(f"reading {described + unreadable}/{len(entries)}")
        parts.append(f"{graded} graded")
        if ungradable:
            parts.append(f"{ungradable} ungradable")
        if unreadable:
            parts.append(f"{unreadable} unreadable")
        shown = self.model.visible_count()
        if shown != len(entries):
            parts.append(f"{shown} shown by the filter")
        self.counts.setText("  ·  ".join(parts))

    def show_offline(self, message: str) -> None:
        """The team store cannot be reached (a read or a poll failed): say it once, calmly."""
        if self.banner.kind == "save":
            return
        self.banner.show_message(
            "offline",
            "warning",
            "The team store cannot be reached. Keep grading: your grades are kept on this "
            "workstation and sent when it answers again.",
        )
        self.banner.setToolTip(message)

    def server_answered(self) -> None:
        """The team store answered: the offline notice goes once nothing waits to be sent."""
        if self.service.online and not self.service.outbox_count:
            self.banner.clear("offline")

    def _on_event(self, event: GradingEvent) -> None:
        if not self.service.online:  # nothing is at risk: say offline, not "not saved"
            self.banner.clear("save")
            self.show_offline(event.error)
        elif event.error and self.service.failing:
            self.banner.show_message(
                "save",
                "error",
                f"{event.error}  {event.pending} grade(s) not saved yet: kept and retried.",
                retry=True,
                discard=True,
            )
        elif not self.service.failing:
            self.banner.clear("save")
            self.server_answered()
        self._show_save_state()

    def _discard(self) -> None:
        self.service.discard_failed()

    def _show_save_state(self) -> None:
        pending = self.service.pending_count
        if self.read_only_reason:
            state, text = "failed", "Read-only — grades cannot be saved"
        elif not self.service.online:
            kept = self.service.outbox_count
            state, text = "outbox", f"Offline — {kept} grade(s) kept here, sent when back"
        elif self.service.failing:
            state, text = "failed", f"{pending} not saved — retrying"
        elif pending:
            state, text = "pending", f"Saving {pending}…"
        else:
            state, text = "saved", "✓ All grades saved"
        self.save.setProperty("state", state)
        self.save.setText(text)
        self.save.style().unpolish(self.save)
        self.save.style().polish(self.save)
