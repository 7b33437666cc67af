"""The signed-in grader's work in a screening programme, as one workstation shows it (Qt-free).

:mod:`services.programme` says what the programme holds (queues, who may see what); this module
keeps what the grader at this workstation chose and answers what the views ask:

- the work selector's choices: every image, or one level's queue with its count (:meth:`choices`);
- which images of the open folder the grid shows (:meth:`in_work`): only the chosen queue's, so
  "next ungraded" stays in it, less the images another grader holds a lease of at that level
  (:meth:`set_leased`: on a team store, two graders are not handed one image at once);
- the level a save is made at (:meth:`level_for`): the level the grader already graded the image
  at (the store refuses a second level), else the chosen queue's, else the first of the grader's
  queues that holds the image, else primary (as without a programme);
- what may be shown while grading the image at that level (:meth:`withheld`, :meth:`beside`):
  second grading is blind — the model's output is withheld (``services.blind_first``) and no
  other grade is shown; an arbiter sees the primary and secondary gradings beside the draft;
- the grader's test sets (``services.test_queue``): an announced set is a queue of its own, an
  unannounced set's images are mixed into the grader's first queue; :meth:`test_set_for` says
  which images are test items now — saved as test answers, never as gradings, with the model's
  output withheld and no other grade shown.

Until the programme and the grader's test sets have been read (:attr:`known` False) every model
output is withheld and the workstation does not grade: a grade saved then could be saved at the
wrong level, or as a grading when it is a test answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sall_desktop.domain.draft import Draft
from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord, UngradableReason
from sall_desktop.domain.nhs import LOSSY_DME, LOSSY_DR, nhs_code
from sall_desktop.domain.programme import LEVEL_ROLES, Stage
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.programme import LEVEL_OF_ROLE, ProgrammeState, Visibility
from sall_desktop.services.test_queue import (
    TEST_BLIND,
    TEST_NOTE,
    TEST_PREFIX,
    UNANNOUNCED_HIDDEN,
    TestSetChoice,
    TestSetsState,
)

LEVEL_NAMES: dict[GraderRole, str] = {
    GraderRole.PRIMARY: "Primary",
    GraderRole.SECONDARY: "Second grading",
    GraderRole.ARBITER: "Arbitration",
}
"""The queues' names in the work selector."""
LEVEL_TITLES: dict[GraderRole, str] = {
    GraderRole.PRIMARY: "Primary",
    GraderRole.SECONDARY: "Secondary",
    GraderRole.ARBITER: "Arbiter",
}
"""Whose grading it is, beside the arbiter's draft."""
ALL_IMAGES = "All images"
SECONDARY_BLIND = "Model output hidden: second grading is blind"
NOT_READ_YET = "Model output hidden until the screening programme is read"
NOTES: dict[GraderRole | None, str] = {
    None: "Each image is graded at the level of the queue that holds it.",
    GraderRole.PRIMARY: "Every image is graded here first.",
    GraderRole.SECONDARY: "Blind: you see neither the model nor the primary grade.",
    GraderRole.ARBITER: "You see the primary and secondary grades; yours is final.",
}
NHS_TIP = "NHS diabetic eye screening code, derived from the ICDR grade and DME."
LOSSY_DR_TIP = (
    "* ICDR 2 (moderate NPDR) spans NHS R1 and R2: the NHS feature form decides, and it is not "
    "recorded here."
)
LOSSY_DME_TIP = (
    "* DME 1 (exudates farther than 1 disc diameter from the fovea) is shown as M0: a circinate "
    "or a group of exudates within the macula would be M1."
)
_DRAFT_IMAGE = "0" * 64
"""A placeholder image for turning a draft into a grading (only its grades are read)."""


WorkKey = GraderRole | TestSetChoice | None
"""What the work selector chose: a level's queue, an announced test set, or every image."""


@dataclass(frozen=True, slots=True)
class WorkChoice:
    """One entry of the work selector: every image (``level`` None), one level's queue, or an
    announced test set (``test_set``)."""

    level: GraderRole | None
    text: str
    tooltip: str = ""
    test_set: str = ""

    @property
    def key(self) -> WorkKey:
        return TestSetChoice(self.test_set) if self.test_set else self.level


class WorkQueue:
    """The programme as last read, the signed-in grader and the queue they chose."""

    def __init__(self) -> None:
        self.state: ProgrammeState | None = None
        self.grader: str | None = None
        self.level: GraderRole | None = None
        """The chosen level's queue (None: every image, or a test set)."""
        self.test_set = ""
        """The chosen announced test set ("" for none)."""
        self.tests: TestSetsState | None = None
        """The signed-in grader's test sets as last read (None: not read since they signed in)."""
        self._chosen: dict[str, WorkKey] = {}  # each grader's last choice
        self._levels: list[GraderRole] = []
        # The programme's answer to "is this image in the grader's queue at this level?", kept
        # while the programme and the grader stay the same: the views ask it for every image
        # of the folder several times a second, and a new read changes few images.
        self._memo: dict[tuple[GraderRole, str, str], bool] = {}
        self._graded: dict[str, GraderRole | None] = {}  # the level the grader graded each at
        self._item_sets: dict[str, frozenset[str]] = {}  # each test set's images
        self._served: dict[str, str] | None = None  # unannounced images not graded, by set
        self._leased: dict[GraderRole, frozenset[str]] = {}  # others' leases, by level

    # ------------------------------------------------------------------ what is known
    @property
    def known(self) -> bool:
        """The programme and the grader's test sets have been read (a read that failed counts,
        as no programme and no test set)."""
        return self.state is not None and self.tests is not None

    def levels(self) -> list[GraderRole]:
        """The levels the grader holds a role at, in the order an image passes them."""
        return list(self._levels)

    @property
    def active(self) -> bool:
        """A programme is set up and the grader grades in it."""
        return bool(self._levels)

    @property
    def selector_shown(self) -> bool:
        """The work selector has more than every image to offer: queues or announced tests."""
        return self.active or bool(self.tests is not None and self.tests.announced())

    @property
    def key(self) -> WorkKey:
        """The chosen entry of the work selector."""
        return TestSetChoice(self.test_set) if self.test_set else self.level

    # ------------------------------------------------------------------ changes
    def set_state(self, state: ProgrammeState, tests: TestSetsState | None = None) -> None:
        """A new read of the programme (on the store's thread: :func:`programme.load_state`)
        and of the grader's test sets (:func:`test_queue.load_tests`; None: the grader has
        none). A read of another grader's test sets is ignored (they are still unknown)."""
        if tests is None:
            tests = TestSetsState(self.grader or "")
        if tests.grader == (self.grader or ""):
            self.tests = tests
            self._item_sets.clear()
            self._served = None
        old, self.state = self.state, state
        if old is None or (old.rules, old.roles) != (state.rules, state.roles):
            self._forget()
        else:  # only the images whose gradings or routing changed are asked again
            changed = {
                sha
                for sha in old.levels.keys() | state.levels.keys()
                if old.levels.get(sha) != state.levels.get(sha)
            }
            if changed:
                self._memo = {k: v for k, v in self._memo.items() if k[1] not in changed}
                for sha in changed:
                    self._graded.pop(sha, None)
        self._update()

    def set_grader(self, grader: str | None) -> None:
        """Another grader signed in: their last choice at this workstation comes back."""
        self.grader = grader
        self.tests = None  # theirs are read with the programme
        self._leased = {}  # "others" were the others of the previous grader
        self._set_key(self._chosen.get(grader) if grader else None)
        self._forget()
        self._update()

    def set_leased(self, level: GraderRole, leased: frozenset[str]) -> None:
        """The images other graders hold a lease of at ``level`` now (``services.leases``:
        ``LeaseKeeper.skip_set``). They leave the grader's queue at that level — the grid and
        its count — until the lease ends and a new set comes; an image the grader graded at
        that level stays (it is their work, done). Every image and test items are unchanged."""
        self._leased[level] = leased

    def _taken(self, level: GraderRole, sha256: str) -> bool:
        """Another grader is on the image at ``level`` and it is not the grader's own work."""
        return sha256 in self._leased.get(level, ()) and self._graded_at(sha256) is not level

    def _forget(self) -> None:
        self._memo.clear()
        self._graded.clear()
        self._item_sets.clear()
        self._served = None

    def _update(self) -> None:
        state, grader = self.state, self.grader
        self._levels = []
        if state is not None and state.active and grader is not None:
            roles = state.roles_of(grader)
            self._levels = [level for role, level in LEVEL_OF_ROLE.items() if role in roles]
        self._keep_choice()

    def choose(self, key: WorkKey) -> None:
        """Show one level's queue or an announced test set's images (None: every image)."""
        if isinstance(key, TestSetChoice):
            if key.name not in self._announced():
                raise ValueError(f"{self.grader} has no test set called {key.name!r}")
        elif key is not None and key not in self.levels():
            raise ValueError(f"{self.grader} holds no {key.value} role")
        self._set_key(key)
        if self.grader:
            self._chosen[self.grader] = key

    def _set_key(self, key: WorkKey) -> None:
        self.level = None if isinstance(key, TestSetChoice) else key
        self.test_set = key.name if isinstance(key, TestSetChoice) else ""

    def _announced(self) -> list[str]:
        return [s.name for s in self.tests.announced()] if self.tests is not None else []

    def _keep_choice(self) -> None:
        if self.known and self.level is not None and self.level not in self.levels():
            self.level = None  # the role was revoked (or the programme ended)
        if self.known and self.test_set and self.test_set not in self._announced():
            self.test_set = ""  # the set is no longer assigned

    # ------------------------------------------------------------------ one image
    def level_for(self, entry: ImageEntry) -> GraderRole:
        """The level a grading of ``entry`` by the grader is saved at (see the module)."""
        state, grader, record = self.state, self.grader, entry.record
        if state is None or grader is None or record is None or not self.active:
            return GraderRole.PRIMARY
        if self.test_set_for(entry):
            return GraderRole.PRIMARY  # a test answer has no level (it is never a grading)
        own = entry.grading
        if own is not None and own.role in LEVEL_ROLES:
            return own.role
        if self.level is not None and self._in_queue(self.level, record):
            return self.level
        for level in self._levels:
            if self._in_queue(level, record):
                return level
        return GraderRole.PRIMARY

    def _graded_at(self, sha256: str) -> GraderRole | None:
        if sha256 not in self._graded:
            assert self.state is not None and self.grader is not None
            self._graded[sha256] = self.state.graded_by(self.grader, sha256)
        return self._graded[sha256]

    def _in_queue(self, level: GraderRole, record: ImageRecord) -> bool:
        key = (level, record.sha256, record.path)
        found = self._memo.get(key)
        if found is None:
            assert self.state is not None and self.grader is not None
            found = self._memo[key] = self.state.in_queue(self.grader, level, record)
        return found

    def visibility(self, entry: ImageEntry) -> Visibility:
        """What the grader may see of ``entry`` at the level they would grade it at (nothing
        of a test item: neither the model nor another grade)."""
        if self.test_set_for(entry):
            return Visibility(model=False)
        if self.state is None or self.grader is None or entry.record is None or not self.active:
            return Visibility(model=True)
        return self.state.visibility(self.grader, self.level_for(entry), entry.sha256)

    def in_work(self, entry: ImageEntry) -> bool:
        """The grid shows ``entry``: the chosen queue holds it (every image when none is); an
        announced test set holds its images, the grader's first queue the unannounced ones."""
        level, record = self.level, entry.record
        if level is None and not self.test_set:
            return True
        if self.state is None or self.grader is None or record is None:
            return False
        if level is None:
            return self._in_set(self.test_set, record.sha256)
        if self._in_queue(level, record):
            return not self._taken(level, record.sha256)
        return level is self._host() and bool(self._unannounced(record))

    def work_filter(self) -> Callable[[ImageEntry], bool] | None:
        """The grid's queue filter (None: every image)."""
        return None if self.level is None and not self.test_set else self.in_work

    # ------------------------------------------------------------------ test items
    def test_set_for(self, entry: ImageEntry) -> str:
        """The test set ``entry`` is a test item of now ("" for none): an image of the chosen
        announced set, else of an unannounced set that is served to the grader; its grade is
        saved as a test answer in that set."""
        if self.tests is None or entry.record is None:
            return ""
        if self.test_set and self._in_set(self.test_set, entry.sha256):
            return self.test_set
        return self._unannounced(entry.record)

    def _in_set(self, name: str, sha256: str) -> bool:
        return sha256 in self._items(name)

    def _items(self, name: str) -> frozenset[str]:
        items = self._item_sets.get(name)
        if items is None:
            found = self.tests.named(name) if self.tests is not None else None
            items = self._item_sets[name] = frozenset(found.items if found else ())
        return items

    def _unannounced(self, record: ImageRecord) -> str:
        """The unannounced set the image is served from ("" for none): never an image the
        grader graded for real or has real programme work on (in one of their queues)."""
        if self.tests is None:
            return ""
        if self._served is None:
            self._served = self.tests.unannounced_items()
        name = self._served.get(record.sha256, "")
        if name and any(self._in_queue(level, record) for level in self._levels):
            return ""
        return name

    def _host(self) -> GraderRole | None:
        """The queue unannounced test items are mixed into (None: every image)."""
        return self._levels[0] if self._levels else None

    def _answered(self, name: str, sha256: str) -> bool:
        found = self.tests.named(name) if self.tests is not None else None
        return found is not None and sha256 in found.answers

    def beside(self, entry: ImageEntry) -> str:
        """The other levels' gradings shown beside the draft, one line each ("" for none: only
        an arbiter sees them), and why the image was sent to arbitration."""
        others = self.visibility(entry).others
        if not others:
            return ""
        lines = [f"{LEVEL_TITLES[g.role]} ({g.grader}): {grading_text(g)}" for g in others]
        reason = self.routed_reason(entry.sha256, Stage.ARBITRATION)
        if reason:
            lines.append(f"Sent to arbitration: {reason}")
        return "\n".join(lines)

    def routed_reason(self, sha256: str, stage: Stage) -> str:
        """Why the image was routed to ``stage`` ("" when it was not)."""
        if self.state is None:
            return ""
        for decision in self.state.decisions:
            if decision.image_sha256 == sha256 and decision.stage == stage:
                return decision.reason
        return ""

    # ------------------------------------------------------------------ the folder
    def withheld(self, entries: Iterable[ImageEntry]) -> frozenset[str] | None:
        """The images of ``entries`` whose model output is withheld (second grading is blind;
        test items, and an announced set's images in every view); None — every image — until
        the programme and the test sets are read."""
        if not self.known:
            return None
        return frozenset(self.reasons(entries, every=True))

    def reasons(self, entries: Iterable[ImageEntry], *, every: bool = False) -> dict[str, str]:
        """Why the withheld test images of ``entries`` are withheld, each in words a grader
        reads: a test (announced), or nothing about a test (unannounced: as any image of the
        queue it is mixed into); with ``every``, the other withheld images too (second grading
        is blind)."""
        out: dict[str, str] = {}
        if self.tests is None:
            return out
        announced = self.tests.announced_items()
        # In a blind queue an unannounced item is hidden for the same reason as its neighbours.
        mixed = SECONDARY_BLIND if self._host() is GraderRole.SECONDARY else UNANNOUNCED_HIDDEN
        for e in entries:
            if e.record is None:
                continue
            test_set = self.test_set_for(e)
            if e.sha256 in announced or (test_set and test_set == self.test_set):
                out[e.sha256] = TEST_BLIND
            elif test_set:
                out[e.sha256] = mixed
            elif every and self.active and not self.visibility(e).model:
                out[e.sha256] = SECONDARY_BLIND
        return out

    def choices(self, entries: Iterable[ImageEntry]) -> list[WorkChoice]:
        """The work selector: every image, then each of the grader's levels with its count of
        the open folder's images (an image under two paths counts once; unannounced test items
        count in the first queue as any other image), then each announced test set with its
        count of images left to answer."""
        state, grader = self.state, self.grader
        out = [WorkChoice(None, ALL_IMAGES, NOTES[None])]
        if state is None or grader is None:
            return out
        records: dict[str, ImageRecord] = {}
        for entry in entries:
            if entry.record is not None:
                records.setdefault(entry.sha256, entry.record)
        for level in self._levels:  # ProgrammeState.counts, through the memo
            queued = [
                sha
                for sha, record in records.items()
                if self._in_queue(level, record) and not self._taken(level, sha)
            ]
            done = sum(1 for sha in queued if self._graded_at(sha) is level)
            if level is self._host():  # the unannounced test items served here
                served = [(sha, self._unannounced(record)) for sha, record in records.items()]
                tests = [(sha, name) for sha, name in served if name]
                queued += [sha for sha, _name in tests]
                done += sum(1 for sha, name in tests if self._answered(name, sha))
            todo = len(queued) - done
            tip = f"{todo} to grade and {done} graded by you in this folder"
            out.append(WorkChoice(level, f"{LEVEL_NAMES[level]} — {todo} to grade", tip))
        for test in self.tests.announced() if self.tests is not None else ():
            here = [sha for sha in records if sha in self._items(test.name)]
            done = sum(1 for sha in here if sha in test.answers)
            todo = len(here) - done
            tip = (
                f"{todo} to answer and {done} answered by you; {len(here)} of the set's "
                f"{len(test.items)} images are in this folder"
            )
            text = f"{TEST_PREFIX}{test.name} — {todo} to answer"
            out.append(WorkChoice(None, text, tip, test_set=test.name))
        return out

    def note(self) -> str:
        """A line under the selector about the chosen queue."""
        return TEST_NOTE if self.test_set else NOTES[self.level]


def grading_text(grading: Grading) -> str:
    """A grading in one line with its NHS code: "DR 1 · AMD 0 — R1M0", "Ungradable (blur) — U"."""
    code = nhs_code(grading).text
    if not grading.gradable:
        reason = str(grading.ungradable_reason or "").replace("_", " ")
        return f"Ungradable ({reason}) — {code}" if reason else f"Ungradable — {code}"
    parts = []
    if grading.dr_grade is not None:
        parts.append(f"DR {grading.dr_grade}")
    if grading.amd_grade is not None:
        parts.append(f"AMD {grading.amd_grade}")
    if grading.dme is not None:
        parts.append(f"DME {grading.dme}")
    text = " · ".join(parts) or "no grade"
    return f"{text} — {code}" if code else text


def nhs_label(draft: Draft) -> tuple[str, str]:
    """The NHS code of a draft or saved grade ("NHS R1M0", "NHS U", "NHS R1/R2M0*") and its
    tooltip, which says why a code marked "*" is not exact; ("", "") before a DR grade."""
    if draft.gradable and draft.dr_grade is None:
        return "", ""
    if not draft.gradable and draft.reason is None:
        return "", ""  # waiting for the reason
    grading = Grading(
        _DRAFT_IMAGE,
        "draft",
        dr_grade=draft.dr_grade if draft.gradable else None,
        gradable=draft.gradable,
        ungradable_reason=None if draft.gradable else (draft.reason or UngradableReason.OTHER),
        dme=draft.dme if draft.gradable else None,
    )
    code = nhs_code(grading)
    tips = [NHS_TIP]
    if code.lossy and draft.dr_grade in LOSSY_DR:
        tips.append(LOSSY_DR_TIP)
    if code.lossy and draft.dme in LOSSY_DME:
        tips.append(LOSSY_DME_TIP)
    return f"NHS {code.text}", "\n".join(tips)


__all__ = [
    "ALL_IMAGES",
    "LEVEL_NAMES",
    "NOT_READ_YET",
    "SECONDARY_BLIND",
    "WorkChoice",
    "WorkKey",
    "WorkQueue",
    "grading_text",
    "nhs_label",
]
