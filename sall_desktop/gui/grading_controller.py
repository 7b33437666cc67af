"""Grading by keyboard: the draft of the current image, commits, undo/redo, auto-advance.

Keys edit a :class:`Draft`. When DR and AMD are both set, or the image is marked ungradable with
a reason, the draft is complete and is committed at once as one append-only grading (and, with
auto-advance on, the next image follows). Optional fields (DME, notes) are committed with Enter,
with the next completing key, or when the grader leaves the image: typed input is never dropped.

Every commit is a ``QUndoCommand`` around a :class:`GradeCommand`; undo appends the previous
grading again (or a retraction), redo appends the new one again, so the store stays append-only.
A test item's grade (the ``test_set_for`` hook, set by the work controller) is the same command
carrying its test set: saved, undone and redone as the grader's test answer, never a grading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from sall_desktop.domain.draft import Draft, Prefix, SetDme, SetDr, SetReason, read_digit
from sall_desktop.domain.grades import GraderRole, Grading, Laterality, UngradableReason
from sall_desktop.gui.bridges import Failure, GradingBridge, Reply, TaskBridge
from sall_desktop.gui.grading_panel import GradingPanel
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.settings import AppSettings
from sall_desktop.services.grading import (
    GradeCommand,
    GradeWrite,
    GradingEvent,
    GradingService,
    ReadOnlyError,
    SaveState,
)
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.work_queue import nhs_label

STATE_TEXT = {
    SaveState.SAVED: "✓ Saved",
    SaveState.PENDING: "Saving…",
    SaveState.FAILED: "Not saved yet — will retry",
    SaveState.OUTBOX: "Kept here — sent when the team store is back",
}


@dataclass(frozen=True, slots=True)
class ReasonedGradeCommand(GradeCommand):
    """A grading change whose audit reason is not the plain "grade" (e.g. a change of mind
    after the model's output was revealed, R10)."""

    reason: str = "grade"

    def redo_write(self, *, again: bool = False) -> GradeWrite:
        write = GradeCommand.redo_write(self, again=again)
        return write if again else replace(write, reason=self.reason)


Annotator = Callable[[Grading, Grading | None], tuple[Grading, str]]
"""(new grading, previous) -> (grading to save, audit reason); set by the model controller."""


class GradeUndoCommand(QUndoCommand):
    """A grading change on the undo stack; each redo/undo appends one row."""

    def __init__(self, controller: GradingController, command: GradeCommand) -> None:
        name = controller.model.entries_with_sha(command.sha256)
        super().__init__(f"grade {name[0].name if name else command.sha256[:8]}")
        self.controller = controller
        self.command = command
        self._first = True

    def redo(self) -> None:
        self.controller.apply_command(self.command, again=not self._first, reveal=not self._first)
        self._first = False

    def undo(self) -> None:
        self.controller.revert_command(self.command)


class GradingController(QObject):
    """Owns the grader, the draft and the undo stack; writes through the grading service."""

    grader_changed = Signal(object)  # str | None
    error = Signal(str)
    grading_written = Signal(str)  # sha256 whose current grading changed (commit, undo, redo)

    def __init__(
        self,
        service: GradingService,
        bridge: GradingBridge,
        tasks: TaskBridge,
        model: ImageListModel,
        navigator: Navigator,
        panel: GradingPanel,
        settings: AppSettings,
    ) -> None:
        super().__init__(panel)
        self.service = service
        self.tasks = tasks
        self.model = model
        self.navigator = navigator
        self.panel = panel
        self.settings = settings
        self.undo_stack = QUndoStack(self)
        self.grader: str | None = None
        self.read_only = service.read_only
        self.entry: ImageEntry | None = None
        self.draft = Draft()
        self._base: Grading | None = None  # what the draft was started from
        self.prefix: Prefix = ""
        self._load_request = 0
        self._loading = False  # grading waits until the grader's gradings are loaded
        self.annotate: Annotator | None = None
        # A screening programme (set by the work controller): the level a save is made at,
        # the other levels' gradings shown beside the draft, and whether it has been read.
        self.role_for: Callable[[ImageEntry], GraderRole] = lambda _entry: GraderRole.PRIMARY
        self.beside: Callable[[ImageEntry], str] = lambda _entry: ""
        self.work_ready: Callable[[], bool] = lambda: True
        # The test set an image is a test item of now ("": none); its grade is a test answer.
        self.test_set_for: Callable[[ImageEntry], str] = lambda _entry: ""
        bridge.changed.connect(self._on_event)
        tasks.finished.connect(self._on_task_finished)
        tasks.failed.connect(self._on_task_failed)
        navigator.current_changed.connect(self.set_entry)
        panel.dr_clicked.connect(self.set_dr)
        panel.amd_clicked.connect(self.set_amd)
        panel.ungradable_clicked.connect(self.begin_ungradable)
        panel.reason_clicked.connect(self.set_reason)
        panel.dme_clicked.connect(self.set_dme)
        panel.notes_edited.connect(self.set_notes)
        panel.commit_clicked.connect(self.commit)
        panel.next_ungraded_clicked.connect(self._next_ungraded)
        panel.sign_in.connect(self.set_grader)
        panel.switch_grader.connect(lambda: self.set_grader(None))
        panel.show_grader(None, read_only=self.read_only)

    # ------------------------------------------------------------------ grader
    @property
    def loading(self) -> bool:
        """Grading waits: the grader's gradings (or the screening programme) are being read."""
        return self._loading or not self.work_ready()

    @property
    def can_grade(self) -> bool:
        return self.grader is not None and not self.read_only

    def set_grader(self, name: str | None) -> None:
        """Sign a grader in (None signs out). Grades are never anonymous (R9)."""
        name = name.strip() if name else None
        if name == self.grader:
            return
        self._leave_image()
        self.grader = name or None
        self.undo_stack.clear()  # commands belong to the grader who made them
        self.model.set_gradings({})  # the last grader's grades are not this one's to see
        self.panel.show_grader(self.grader, read_only=self.read_only)
        if self.grader is not None:
            self.settings.grader = self.grader
            if not self.read_only:
                self.tasks.track(self.service.add_grader(self.grader), "add_grader")
        self.reload_gradings()
        self.grader_changed.emit(self.grader)
        self.set_entry(self.entry)

    def reload_gradings(self) -> None:
        """Fetch the grader's current gradings (after sign-in or opening a folder)."""
        if self.grader is None:
            self.model.set_gradings({})
            return
        self._loading = True
        self._load_request = self.tasks.track(
            self.service.current_gradings(self.grader), "gradings"
        )

    # ------------------------------------------------------------------ image
    def set_entry(self, entry: ImageEntry | None) -> None:
        if entry is not self.entry:
            self._leave_image()
        self.entry = entry
        self.prefix = ""
        self._draft_from(entry)
        if entry is None:
            self.panel.show_image("No image", "")
        else:
            self.panel.show_image(entry.name, _image_meta(entry))
        self._show()

    def flush_draft(self) -> None:
        """Save a changed draft now (before quitting)."""
        self._leave_image()

    def _leave_image(self) -> None:
        # Typed input is never dropped: a changed draft is saved when the grader moves on.
        if self._ready() and self.draft.valid and self._draft_changed():
            self._commit(advance=False)

    # ------------------------------------------------------------------ keys
    def digit(self, value: int) -> None:
        """A digit key: DR grade, or the answer to a pending prefix (reason 1-6, DME 0-2)."""
        match read_digit(self.prefix, value):
            case SetReason(reason):
                self.set_reason(reason)
            case SetDme(grade):
                self.set_dme(grade)
            case SetDr(grade):
                self.set_dr(grade)
            case None:
                pass

    def set_dr(self, grade: int) -> None:
        self._edit(replace(self.draft, dr_grade=grade, gradable=True, reason=None), completing=True)

    def set_amd(self, grade: int) -> None:
        self.prefix = ""
        self._edit(
            replace(self.draft, amd_grade=grade, gradable=True, reason=None), completing=True
        )

    def begin_ungradable(self) -> None:
        if not self._ready():
            return
        self.prefix = "" if self.prefix == "reason" else "reason"
        self._show()

    def set_reason(self, reason: UngradableReason) -> None:
        self.prefix = ""
        draft = Draft(gradable=False, reason=reason, notes=self.draft.notes)
        self._edit(draft, completing=True)

    def begin_dme(self) -> None:
        if not self._ready() or not self.draft.gradable:
            return
        self.prefix = "" if self.prefix == "dme" else "dme"
        self._show()

    def set_dme(self, value: int | None) -> None:
        self.prefix = ""
        if self.draft.gradable:
            self._edit(replace(self.draft, dme=value), completing=False)

    def set_notes(self, text: str) -> None:
        if self.can_grade and self.entry is not None and text != self.draft.notes:
            self.draft = replace(self.draft, notes=text)
            self._show(update_notes=False)

    def commit(self) -> None:
        """Enter: save the draft now (auto-advance applies when it is complete)."""
        if self._ready() and self.draft.valid and self._draft_changed():
            self._commit(advance=self.draft.complete and self.settings.auto_advance)

    def discard(self) -> None:
        """Escape: cancel a prefix, else drop the unsaved draft."""
        if self.prefix:
            self.prefix = ""
        elif self.entry is not None:
            self._draft_from(self.entry)
        self._show()

    def _next_ungraded(self) -> None:
        self.navigator.next_ungraded()

    # ------------------------------------------------------------------ commands
    def apply_command(self, command: GradeCommand, *, again: bool, reveal: bool) -> None:
        self._write(
            command, command.after, lambda: self.service.apply(command, again=again), reveal
        )

    def revert_command(self, command: GradeCommand) -> None:
        self._write(command, command.before, lambda: self.service.revert(command), True)

    def _write(
        self, command: GradeCommand, grading: Grading | None, submit: object, reveal: bool
    ) -> None:
        sha256 = command.sha256
        try:
            submit()  # type: ignore[operator]
        except ReadOnlyError as exc:
            self.error.emit(str(exc))
            return
        state = self.service.state_of(sha256)
        self.model.set_grading(sha256, grading, state, command.test_set)
        self.grading_written.emit(sha256)
        targets = self.model.entries_with_sha(sha256)
        if reveal and targets and self.entry not in targets:
            # Undo/redo of another image: show it, so the grader sees what changed.
            self.navigator.go_to(targets[0])
        if self.entry is not None and self.entry.sha256 == sha256:
            # What the entry shows: a test answer undone in another queue is not its grading.
            self._draft_from(self.entry)
            self.prefix = ""
            self._show()

    def _commit(self, *, advance: bool) -> None:
        entry, grader = self.entry, self.grader
        assert entry is not None and entry.record is not None and grader is not None
        d = self.draft
        after = Grading(
            image_sha256=entry.sha256,
            grader=grader,
            dr_grade=d.dr_grade if d.gradable else None,
            amd_grade=d.amd_grade if d.gradable else None,
            gradable=d.gradable,
            ungradable_reason=None if d.gradable else d.reason,
            dme=d.dme if d.gradable else None,
            notes=d.notes,
            role=self.role_for(entry),
        )
        reason = "grade"
        if self.annotate is not None:
            after, reason = self.annotate(after, entry.grading)
        command = ReasonedGradeCommand(
            entry.sha256, grader, entry.grading, after, record=entry.record,
            test_set=self.test_set_for(entry), reason=reason,
        )  # fmt: skip
        self.undo_stack.push(GradeUndoCommand(self, command))
        if advance:
            self.navigator.step(+1)

    # ------------------------------------------------------------------ internals
    def _ready(self) -> bool:
        entry = self.entry
        return (
            self.can_grade
            and not self.loading
            and entry is not None
            and entry.record is not None
            and not entry.error
        )

    def _draft_changed(self) -> bool:
        return self.entry is not None and self.draft != Draft.of(self.entry.grading)

    def _edit(self, draft: Draft, *, completing: bool) -> None:
        if not self._ready():
            return
        self.draft = draft
        if completing and draft.complete and self._draft_changed():
            self._commit(advance=self.settings.auto_advance)
            return
        self._show()

    def refresh(self) -> None:
        """Show the current image's draft again (the programme was read again, or the queue
        changed). A draft the grader has not changed follows what the image shows now: a test
        answer in place of a grading, or back; it is never saved across."""
        entry = self.entry
        if entry is not None and entry.grading is not self._base:
            if self.draft == Draft.of(self._base):
                self.draft = Draft.of(entry.grading)
            self._base = entry.grading
        self._show()

    def _draft_from(self, entry: ImageEntry | None) -> None:
        """Start the draft from what ``entry`` shows (its grading, or its test answer)."""
        self._base = entry.grading if entry is not None else None
        self.draft = Draft.of(self._base)

    def _show(self, *, update_notes: bool = True) -> None:
        self.panel.show_draft(
            self.draft, reason_prompt=self.prefix == "reason", dme_prompt=self.prefix == "dme"
        )
        self.panel.show_nhs(*nhs_label(self.draft))
        entry = self.entry
        self.panel.show_beside(self.beside(entry) if entry is not None and self.grader else "")
        if entry is None or self.grader is None:
            self.panel.show_save_state("", "")
        elif self._draft_changed():
            self.panel.show_save_state(
                "draft", "Draft — Enter saves" if self.draft.valid else "Choose a reason (1–6)"
            )
        elif entry.save_state is not None:
            self.panel.show_save_state(str(entry.save_state), STATE_TEXT[entry.save_state])
        else:
            self.panel.show_save_state("", "Not graded")
        if self.prefix == "reason":
            self.panel.show_save_state("draft", "Ungradable: press 1–6 for the reason, Esc cancels")
        elif self.prefix == "dme":
            self.panel.show_save_state("draft", "DME: press 0, 1 or 2, Esc cancels")
        graded = sum(1 for e in self.model.entries() if e.grading is not None)
        self.panel.show_progress(graded, len(self.model.entries()))

    def _on_event(self, event: GradingEvent) -> None:
        if event.sha256:
            self.model.set_save_state(event.sha256, event.state)
            if self.entry is not None and self.entry.sha256 == event.sha256:
                self._show()

    def _on_task_finished(self, reply: Reply) -> None:
        if reply.context == "gradings" and reply.request_id == self._load_request:
            self._loading = False
            gradings = dict(reply.value)
            # Writes not committed yet are newer than what the store returned: keep them (test
            # answers are the work controller's, read with the test sets).
            pending = [
                w
                for w in self.service.pending_writes()
                if w.grader == self.grader and not w.test_set
            ]
            for write in pending:
                if write.grading is None:
                    gradings.pop(write.sha256, None)
                else:
                    gradings[write.sha256] = write.grading
            self.model.set_gradings(gradings)
            for write in pending:
                self.model.set_save_state(write.sha256, self.service.state_of(write.sha256))
            if self.entry is not None:
                self._draft_from(self.entry)
            self._show()

    def _on_task_failed(self, failure: Failure) -> None:
        if failure.context == "gradings" and failure.request_id == self._load_request:
            self._loading = False
            self.error.emit(f"Could not load your grades: {failure.message}")
        elif failure.context == "add_grader":
            self.error.emit(failure.message)


def _image_meta(entry: ImageEntry) -> str:
    record = entry.record
    if entry.error:
        return f"Cannot be read: {entry.error}"
    if record is None:
        return "Reading…"
    parts = []
    if record.patient_id:
        parts.append(f"Patient {record.patient_id}")
    if record.laterality in (Laterality.RIGHT, Laterality.LEFT):
        parts.append("Right eye (OD)" if record.laterality is Laterality.RIGHT else "Left eye (OS)")
    if record.study_date:
        parts.append(record.study_date)
    parts.append(f"{record.width}×{record.height}")
    return " · ".join(parts)
