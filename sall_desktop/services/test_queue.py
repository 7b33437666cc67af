"""Test sets in the signed-in grader's queue, as one workstation serves them (Qt-free).

A QA lead assigns test sets (``store/test_sets_repository.py``); this module reads, on the store
thread, what the workstation needs of them for one grader (:func:`load_tests`): each assigned
set's images and the grader's current answers, and which of the unannounced sets' images the
grader has graded for real. :class:`~services.work_queue.WorkQueue` decides from it which image
is a *test item* now:

- an **announced** set is a queue of its own in the work selector; every image of it shown there
  is a test item;
- an **unannounced** set's images are mixed into the grader's first queue (every image when the
  grader holds no programme role) and look like any other image, except an image the grader
  graded for real or has real programme work on (it is in one of their queues): that one is
  never a test item.

Saving a test item writes a *test answer* (``GradeWrite.test_set``), never a grading: it cannot
be routed, become a final grade, an export or training data. A test measures the grader, not the
model: the model's output is withheld for test items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sall_desktop.domain.grades import Grading
from sall_desktop.services.grading import GradeWrite
from sall_desktop.services.programme import ProgrammeState, load_state, refresh_state
from sall_desktop.store import LabelStore

TEST_PREFIX = "Test: "
"""An announced set's entry in the work selector: "Test: induction — 8 to answer"."""
TEST_BLIND = "Model output hidden: a test measures you, not the model"
UNANNOUNCED_HIDDEN = "Model output hidden for this image"
"""Why an unannounced test item's output is hidden: it says nothing of a test."""
TEST_NOTE = (
    "A test set: your answers are kept apart from your grades and never become an image's "
    "grade; the model's output is hidden."
)


@dataclass(frozen=True, slots=True)
class TestSetChoice:
    """The work selector's key for an announced test set's queue."""

    __test__ = False  # not a pytest test class

    name: str


@dataclass(frozen=True, slots=True)
class AssignedTest:
    """One test set assigned to the grader.

    Attributes:
        name: the set's name.
        unannounced: its images are mixed into the grader's queue, not listed as a test.
        items: the set's images (SHA-256), in the set's order.
        answers: the grader's current answer of each item answered.
    """

    __test__ = False

    name: str
    unannounced: bool
    items: tuple[str, ...]
    answers: Mapping[str, Grading] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TestSetsState:
    """One read of the test sets assigned to ``grader`` (:func:`load_tests`); frozen, so it may
    cross to the GUI thread.

    Attributes:
        grader: whose sets ("" for nobody: no sets).
        sets: the assigned sets, oldest first.
        graded: the unannounced sets' images the grader has a current grading of (never served
            as test items).
    """

    __test__ = False

    grader: str
    sets: tuple[AssignedTest, ...] = ()
    graded: frozenset[str] = frozenset()

    def announced(self) -> list[AssignedTest]:
        """The sets listed in the work selector."""
        return [s for s in self.sets if not s.unannounced]

    def named(self, name: str) -> AssignedTest | None:
        return next((s for s in self.sets if s.name == name), None)

    def announced_items(self) -> frozenset[str]:
        """Every image of an announced set (its model output is withheld in every view)."""
        return frozenset(sha for s in self.sets if not s.unannounced for sha in s.items)

    def unannounced_items(self) -> dict[str, str]:
        """The unannounced sets' images the grader has not graded, each with its (first) set."""
        out: dict[str, str] = {}
        for s in self.sets:
            if s.unannounced:
                for sha in s.items:
                    if sha not in self.graded:
                        out.setdefault(sha, s.name)
        return out

    def answers(self) -> dict[tuple[str, str], Grading]:
        """The grader's current answers by (set name, image)."""
        return {(s.name, sha): g for s in self.sets for sha, g in s.answers.items()}


def load_tests(store: LabelStore, grader: str | None) -> TestSetsState:
    """Read the test sets assigned to ``grader`` and their answers (call on the store thread)."""
    if not grader:
        return TestSetsState("")
    sets: list[AssignedTest] = []
    graded: set[str] = set()
    for row in store.test_sets():
        if grader not in row.graders:
            continue
        items = tuple(store.test_set_answers(row.name))  # the reference answers stay there
        answers = {
            answer.image_sha256: answer
            for _name, answer in store.test_answers(row.name)
            if answer.grader == grader
        }
        sets.append(AssignedTest(row.name, row.unannounced, items, answers))
        if row.unannounced:
            graded.update(sha for sha in items if store.current_grading(sha, grader) is not None)
    return TestSetsState(grader, tuple(sets), frozenset(graded))


def load_work(store: LabelStore, grader: str | None) -> tuple[ProgrammeState, TestSetsState]:
    """The programme and ``grader``'s test sets in one go (call on the store thread)."""
    return load_state(store), load_tests(store, grader)


def refresh_work(
    store: LabelStore, state: ProgrammeState, image_sha256s: Iterable[str], grader: str | None
) -> tuple[ProgrammeState, TestSetsState]:
    """:func:`load_work` after saves of ``image_sha256s`` only: their levels and routing are
    read again (``programme.refresh_state``), the rest of ``state`` is kept."""
    return refresh_state(store, state, image_sha256s), load_tests(store, grader)


def with_pending(
    answers: Mapping[tuple[str, str], Grading], pending: Iterable[GradeWrite], grader: str
) -> dict[tuple[str, str], Grading]:
    """``answers`` as read, with the grader's test-answer writes not committed yet on top (they
    are newer than what the store returned)."""
    out = dict(answers)
    for write in pending:
        if not write.test_set or write.grader != grader:
            continue
        key = (write.test_set, write.sha256)
        if write.grading is None:
            out.pop(key, None)
        else:
            out[key] = write.grading
    return out


__all__ = [
    "TEST_BLIND",
    "TEST_NOTE",
    "TEST_PREFIX",
    "UNANNOUNCED_HIDDEN",
    "AssignedTest",
    "TestSetChoice",
    "TestSetsState",
    "load_tests",
    "load_work",
    "refresh_work",
    "with_pending",
]
