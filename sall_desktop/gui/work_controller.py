"""The work controller: a screening programme's queues at this workstation.

It reads the programme (``services.programme.load_state``) on the store thread — at start, after
each committed grading, when a folder opens and when another grader signs in — dropping stale
reads by request id, and hands it to the Qt-free ``services.work_queue.WorkQueue``, which
decides; this object only shows and forwards:

- the work panel's choices and counts, and the grid's queue filter;
- the level each save is made at, and the other levels' gradings beside an arbiter's draft
  (hooks on the grading controller);
- which images' model output is withheld (second grading is blind, test items): the one
  blind-first rule (``services.blind_first``) that every model view asks, and the status bar
  says why;
- the grader's test sets, read with the programme (``services.test_queue.load_tests``): which
  images are test items now (their grade is saved as a test answer) and the grader's answers,
  shown in place of their gradings.
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import QObject, QTimer, Signal

from sall_desktop.domain.grades import GraderRole
from sall_desktop.gui.bridges import Failure, GradingBridge, Reply, TaskBridge
from sall_desktop.gui.grading_controller import GradingController
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.status import StatusController
from sall_desktop.gui.work_panel import WorkPanel
from sall_desktop.services.grading import GradingEvent, GradingService
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.outbox import is_unreachable
from sall_desktop.services.programme import ProgrammeState
from sall_desktop.services.test_queue import (
    TEST_BLIND,
    TestSetChoice,
    load_work,
    refresh_work,
    with_pending,
)
from sall_desktop.services.work_queue import NOT_READ_YET, SECONDARY_BLIND, WorkQueue

RELOAD_MS = 100
"""Commits within this long are followed by one read of the programme (auto-advance is fast)."""
REFRESH_MS = 300
"""Changes of the folder (images described, grades loaded) within this long are counted once
(a recount of 10,000 images in a programme takes some 50 ms of the GUI thread)."""


class WorkController(QObject):
    """Connects the work panel, the grid, the grading controller and the model views to the
    programme as last read."""

    error = Signal(str)
    rule_changed = Signal()
    """The images whose model output is withheld changed: the model views show again."""

    def __init__(
        self,
        panel: WorkPanel,
        service: GradingService,
        bridge: GradingBridge,
        model: ImageListModel,
        navigator: Navigator,
        grading: GradingController,
        status: StatusController,
    ) -> None:
        super().__init__(panel)
        self.panel, self.service, self.model = panel, service, model
        self.navigator, self.grading, self.status = navigator, grading, status
        self.work = WorkQueue()
        self.tasks = TaskBridge(self)
        self._request = 0  # the read of the programme still wanted
        self._reload = QTimer(self, singleShot=True, interval=RELOAD_MS)
        self._reload.timeout.connect(self._reload_saved)
        self._saved: set[str] = set()  # images committed since the last read was asked for
        self._whole_wanted = False  # a whole read is out: a refresh must not replace it
        self._missed = False  # a read failed while the team store was away
        self._refresh = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._refresh.timeout.connect(self.refresh)
        self.tasks.finished.connect(self._finished)
        self.tasks.failed.connect(self._failed)
        grading.role_for = self.work.level_for
        grading.beside = self.work.beside
        grading.work_ready = lambda: self.work.known
        grading.test_set_for = self.work.test_set_for
        model.set_test_items(self.work.test_set_for)
        grading.grader_changed.connect(self._grader_changed)
        bridge.changed.connect(self._on_event)
        model.records_added.connect(self._records_added)
        model.entries_changed.connect(self._schedule_refresh)
        navigator.current_changed.connect(lambda _entry: self._show_current())
        panel.chosen.connect(self.choose)
        # Nothing of the model is shown until the programme is read: it may be second grading.
        model.set_withheld(None, NOT_READ_YET)

    # ------------------------------------------------------------------ reading
    def start(self) -> None:
        """Read the programme (before the grader's gradings and the model's outputs are asked
        for: the store thread answers in order, so it is known before they are shown)."""
        self.work.set_grader(self.grading.grader)
        self.reload()

    def reload(self) -> None:
        """Read the programme and the grader's test sets again on the store thread; an earlier
        read still out is dropped."""
        self._reload.stop()
        self._saved.clear()
        self._whole_wanted = True
        read = partial(load_work, grader=self.work.grader)
        self._request = self.tasks.track(self.service.submit(read), "programme")

    def _reload_saved(self) -> None:
        """After commits: read again only the images saved (a whole read grows with the store),
        unless a whole read is still out (then that one is asked for again)."""
        saved, self._saved = frozenset(self._saved), set()
        state = self.work.state
        if state is None or self._whole_wanted or not saved:
            self.reload()
            return
        read = partial(refresh_work, state=state, image_sha256s=saved, grader=self.work.grader)
        self._request = self.tasks.track(self.service.submit(read), "programme")

    def _finished(self, reply: Reply) -> None:
        if reply.context != "programme" or reply.request_id != self._request:
            return  # a stale read
        self._whole_wanted = False
        first = not self.work.known
        state, read = reply.value
        self.work.set_state(state, read)
        tests = self.work.tests
        if tests is not None and tests is read:  # the answers, with those not committed yet
            pending = self.service.pending_writes()
            self.model.set_test_answers(with_pending(tests.answers(), pending, tests.grader))
        self.refresh()
        if first:
            self.grading.refresh()  # grading may start

    def _failed(self, failure: Failure) -> None:
        if failure.context != "programme" or failure.request_id != self._request:
            return
        self._whole_wanted = False
        if not self.work.known:
            self.work.set_state(ProgrammeState(None))  # grade as without a programme
            self.refresh()
            self.grading.refresh()
        if is_unreachable(failure.message):
            # A team store away: the status bar says so once grades wait in the outbox; the
            # queues keep their last read and are read whole again at the next commit.
            self._missed = True
            return
        self.error.emit(f"The screening programme could not be read: {failure.message}")

    # ------------------------------------------------------------------ showing
    def refresh(self) -> None:
        """Show the queues, filter the grid and withhold what the programme hides, from the
        programme as last read and the folder as it is."""
        self._refresh.stop()
        work, entries = self.work, self.model.entries()
        if work.selector_shown:
            self.panel.show_choices(work.choices(entries), work.key)
            self.panel.show_note(work.note())
        self.panel.setVisible(work.selector_shown)
        self.model.show_gradings()  # test answers in place of gradings where the queue says
        self.model.set_work(work.work_filter())
        self._withhold(entries)
        self._show_current()

    def _withhold(self, entries: list[ImageEntry]) -> None:
        reasons = self.work.reasons(entries, every=True) if self.work.known else None
        withheld = None if reasons is None else frozenset(reasons)
        reason = SECONDARY_BLIND if withheld is not None else NOT_READ_YET
        if self.model.set_withheld(withheld, reason, reasons):
            self.rule_changed.emit()

    def choose(self, key: object) -> None:
        """The grader chose a queue or an announced test set (None: every image)."""
        chosen: GraderRole | TestSetChoice | None
        if key is None or isinstance(key, TestSetChoice):
            chosen = key
        else:
            chosen = GraderRole(str(key))
        if chosen == self.work.key:
            return
        self.grading.flush_draft()  # typed input is saved where it was typed (a test or not)
        self.work.choose(chosen)
        self.refresh()
        current = self.navigator.current
        if current is None or self.model.position_of(current) < 0:
            self.navigator.go_to(self.model.entry_at(0))  # the queue's first image

    def _show_current(self) -> None:
        entry = self.navigator.current
        rule = self.model.blind_rule
        text = rule.hidden_reason(entry.sha256) if entry is not None and entry.sha256 else ""
        if not text and self.work.level is GraderRole.SECONDARY:
            text = SECONDARY_BLIND
        elif not text and self.work.test_set:
            text = TEST_BLIND
        self.status.set_withheld(text)
        self.grading.refresh()

    # ------------------------------------------------------------------ reactions
    def _grader_changed(self, name: str | None) -> None:
        self.work.set_grader(name)
        self.model.set_test_answers({})  # the last grader's answers are not this one's to see
        self.refresh()  # at once: the new grader's levels decide what the model may show
        self.reload()

    def _on_event(self, event: GradingEvent) -> None:
        if event.row_id is not None and self._missed:  # the team store is back
            self._missed = False
            self.reload()
            return
        if event.row_id is not None:  # a grading committed: the routing it caused is read
            if event.sha256:
                self._saved.add(event.sha256)
            if not self._reload.isActive():
                self._reload.start()

    def others_saved(self, sha256s: frozenset[str]) -> None:
        """Grades of these images were saved at other workstations of a team store: read their
        routing and levels again, as after this workstation's own saves."""
        self._saved.update(sha256s)
        if not self._reload.isActive():
            self._reload.start()

    def _records_added(self, sha256s: list[str]) -> None:
        # At once for the new images (their model output may be shown before the recount).
        rule = self.model.blind_rule
        withheld = rule.withheld
        if withheld is not None and self.work.known:
            new: list[ImageEntry] = []
            for sha in sha256s:
                new.extend(self.model.entries_with_sha(sha))
            more = self.work.reasons(new, every=True)
            if more.keys() - withheld:
                reasons = {sha: rule.hidden_reason(sha) for sha in withheld} | more
                if self.model.set_withheld(withheld | more.keys(), SECONDARY_BLIND, reasons):
                    self.rule_changed.emit()
        self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if not self._refresh.isActive():
            self._refresh.start()
