"""Test sets in a grader's queue without a window: what is read for the grader, which images are
test items in which queue (announced: a queue of its own; unannounced: mixed into the first
queue, never an image graded for real or still real work), the counts, what is withheld and why,
and the save path — a test answer goes to the test answers through the grading service's one
queue (undo and redo too), never to the gradings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.blind_first import BlindFirst
from sall_desktop.services.catalogue import DescribedFile, FoundFile
from sall_desktop.services.grading import GradeCommand, GradeWrite, GradingService, SaveState
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.programme import load_state
from sall_desktop.services.test_queue import (
    TEST_BLIND,
    UNANNOUNCED_HIDDEN,
    TestSetChoice,
    TestSetsState,
    load_tests,
    load_work,
    with_pending,
)
from sall_desktop.services.work_queue import ALL_IMAGES, SECONDARY_BLIND, WorkQueue
from sall_desktop.services.workspace import Workspace
from sall_desktop.store import SqliteLabelStore, StoreThread, StoreWriteError, open_store
from tests.unit.services.conftest import HANG_GUARD_S, wait_for

P, T, QA = "Dr P", "Dr T", "QA Lead"
PRIMARY = GraderRole.PRIMARY
INDUCTION, SPOT = "induction", "spot"


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _record(name: str) -> ImageRecord:
    return ImageRecord(sha256=_sha(name), path=f"/study/{name}.jpg", file_format="jpeg")


def _entry(name: str) -> ImageEntry:
    record = _record(name)
    return ImageEntry(record.path, record=record)


def _reference(name: str, dr: int = 0) -> Grading:
    return Grading(_sha(name), "reference", dr_grade=dr, amd_grade=0)


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    """A programme (no normal sampled) where P graded a-f (normal: each is final); T is a primary
    grader who graded e for real; g is ungraded (in every primary grader's queue). T is assigned
    "induction" (announced: a, b, c) and "spot" (unannounced: d, e, g)."""
    path = tmp_path / "labels.sqlite"
    with open_store(path) as s:
        s.set_programme_rules(RoutingRules(normal_fraction=0.0), actor=QA)
        for grader in (P, T):
            s.set_programme_role(grader, ProgrammeRole.PRIMARY, actor=QA)
        s.upsert_images([_record(n) for n in "abcdefg"])
        for name in "abcdef":
            s.add_grading(Grading(_sha(name), P, dr_grade=0, amd_grade=0))
        s.add_grading(Grading(_sha("e"), T, dr_grade=0, amd_grade=0))
        s.create_test_set(INDUCTION, [_reference(n) for n in "abc"], actor=QA, source="finals")
        s.create_test_set(SPOT, [_reference(n) for n in "deg"], actor=QA, source="finals",
                          unannounced=True)  # fmt: skip
        for name in (INDUCTION, SPOT):
            s.assign_test_set(name, T, actor=QA)
    return path


@pytest.fixture()
def store(db: Path) -> Iterator[SqliteLabelStore]:
    with open_store(db) as s:
        yield s


def _work(store: SqliteLabelStore, grader: str) -> WorkQueue:
    work = WorkQueue()
    work.set_grader(grader)
    work.set_state(*load_work(store, grader))
    return work


def test_what_is_read_for_the_grader(store: SqliteLabelStore) -> None:
    tests = load_tests(store, T)
    assert [(s.name, s.unannounced, s.items) for s in tests.sets] == [
        (INDUCTION, False, tuple(_sha(n) for n in "abc")),
        (SPOT, True, tuple(_sha(n) for n in "deg")),
    ]
    assert tests.graded == {_sha("e")}  # graded for real: never served as a test item
    assert tests.unannounced_items() == {_sha("d"): SPOT, _sha("g"): SPOT}
    assert load_tests(store, P) == TestSetsState(P)  # nothing assigned to P
    assert load_tests(store, None) == TestSetsState("")


def test_an_announced_set_is_a_queue_of_its_own(store: SqliteLabelStore) -> None:
    entries = [_entry(n) for n in "abcdefg"]
    work = _work(store, T)
    texts = [c.text for c in work.choices(entries)]
    # d (unannounced, not graded by T) is counted in T's primary queue like any other image;
    # g is still real work (nobody graded it), e was graded by T for real.
    assert texts == [ALL_IMAGES, "Primary — 2 to grade", "Test: induction — 3 to answer"]
    assert work.selector_shown
    work.choose(TestSetChoice(INDUCTION))
    assert work.key == TestSetChoice(INDUCTION) and work.level is None
    shown = work.work_filter()
    assert shown is not None and [e for e in entries if shown(e)] == entries[:3]
    assert [work.test_set_for(e) for e in entries] == [INDUCTION] * 3 + [SPOT, "", "", ""]
    assert work.note().startswith("A test set")
    with pytest.raises(ValueError, match="no test set"):
        work.choose(TestSetChoice(SPOT))  # an unannounced set is never listed
    # Answers count: one answered in the store.
    store.add_test_answer(INDUCTION, Grading(_sha("a"), T, dr_grade=1, amd_grade=0))
    work.set_state(*load_work(store, T))
    assert work.choices(entries)[-1].text == "Test: induction — 2 to answer"


def test_unannounced_items_are_mixed_into_the_first_queue(store: SqliteLabelStore) -> None:
    entries = {n: _entry(n) for n in "abcdefg"}
    work = _work(store, T)
    work.choose(PRIMARY)
    shown = work.work_filter()
    assert shown is not None
    assert [n for n, e in entries.items() if shown(e)] == ["d", "g"]
    assert work.test_set_for(entries["d"]) == SPOT
    assert work.test_set_for(entries["g"]) == ""  # real work: graded for real, and routed
    assert work.test_set_for(entries["e"]) == ""  # graded by T for real
    assert work.level_for(entries["d"]) is PRIMARY and work.beside(entries["d"]) == ""
    # Every image: still a test item (it looks like any other image everywhere).
    work.choose(None)
    assert work.test_set_for(entries["d"]) == SPOT
    # Answered: counted as done in the primary queue.
    store.add_test_answer(SPOT, Grading(_sha("d"), T, dr_grade=0, amd_grade=0))
    work.set_state(*load_work(store, T))
    assert work.choices(list(entries.values()))[1].text == "Primary — 1 to grade"


def test_without_a_programme_role_unannounced_items_are_in_every_image(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path / "labels.sqlite") as s:
        s.upsert_images([_record(n) for n in "xy"])
        s.create_test_set(SPOT, [_reference("x")], actor=QA, source="csv", unannounced=True)
        s.assign_test_set(SPOT, T, actor=QA)
        work = _work(s, T)
    x, y = _entry("x"), _entry("y")
    assert not work.active and not work.selector_shown  # nothing to choose: every image
    assert [c.text for c in work.choices([x, y])] == [ALL_IMAGES]
    assert work.work_filter() is None
    assert work.test_set_for(x) == SPOT and work.test_set_for(y) == ""
    assert work.withheld([x, y]) == {x.sha256}
    assert work.reasons([x, y]) == {x.sha256: UNANNOUNCED_HIDDEN}  # says nothing of a test


def test_in_a_blind_queue_an_unannounced_item_is_hidden_as_its_neighbours(
    store: SqliteLabelStore,
) -> None:
    store.set_programme_role(T, ProgrammeRole.PRIMARY, actor=QA, granted=False)
    store.set_programme_role(T, ProgrammeRole.SECONDARY, actor=QA)
    work = _work(store, T)
    d = _entry("d")
    work.choose(GraderRole.SECONDARY)
    shown = work.work_filter()
    assert shown is not None and shown(d) and work.test_set_for(d) == SPOT
    assert work.reasons([d]) == {d.sha256: SECONDARY_BLIND}


def test_test_items_withhold_the_model_and_say_why(store: SqliteLabelStore) -> None:
    entries = [_entry(n) for n in "abcdefg"]
    work = _work(store, T)
    sha = {n: _sha(n) for n in "abcdefg"}
    # The announced set's images in every view (no peeking before the test); d as any image.
    expected = {sha[n]: TEST_BLIND for n in "abc"} | {sha["d"]: UNANNOUNCED_HIDDEN}
    assert work.reasons(entries, every=True) == expected
    assert work.withheld(entries) == set(expected)
    work.choose(TestSetChoice(INDUCTION))
    assert work.reasons(entries) == expected
    assert all(not work.visibility(e).model for e in entries[:3])
    assert SECONDARY_BLIND not in work.reasons(entries, every=True).values()


def test_each_withheld_image_has_its_reason() -> None:
    rule = BlindFirst(on=True)
    assert rule.withhold({"a", "b"}, SECONDARY_BLIND, {"b": TEST_BLIND})
    assert rule.hidden_reason("a") == SECONDARY_BLIND and rule.hidden_reason("b") == TEST_BLIND
    assert not rule.withhold({"a", "b"}, SECONDARY_BLIND, {"b": TEST_BLIND})  # unchanged
    assert rule.withhold({"a", "b"}, SECONDARY_BLIND, {"b": UNANNOUNCED_HIDDEN})  # why changed
    assert rule.hidden_reason("c") == "" and not rule.shows("b", graded=True)


def test_nothing_is_known_until_the_new_graders_tests_are_read(store: SqliteLabelStore) -> None:
    work = _work(store, P)
    assert work.known
    work.set_grader(T)
    assert not work.known and work.withheld([_entry("a")]) is None
    work.set_state(load_state(store), load_tests(store, P))  # a read for the last grader
    assert not work.known
    work.set_state(*load_work(store, T))
    assert work.known and work.test_set_for(_entry("d")) == SPOT
    work.choose(TestSetChoice(INDUCTION))
    work.set_grader(P)
    work.set_grader(T)
    assert work.key == TestSetChoice(INDUCTION)  # each grader's choice comes back


def test_a_test_answer_is_shown_in_place_of_the_grading() -> None:
    ws = Workspace()
    a, b = _record("a"), _record("b")
    found = [FoundFile(Path(r.path), 1, 0) for r in (a, b)]
    ws.add_found(found)
    ws.add_described([DescribedFile(f, r) for f, r in zip(found, (a, b), strict=True)])
    ea, eb = ws.entries()
    real = Grading(a.sha256, T, dr_grade=4, amd_grade=0)
    answer = Grading(a.sha256, T, dr_grade=1, amd_grade=0)
    ws.set_gradings({a.sha256: real})
    ws.set_test_answers({(INDUCTION, a.sha256): answer})
    assert ea.grading is real
    serving = {a.sha256: INDUCTION}
    ws.test_of = lambda e: serving.get(e.sha256, "")
    assert ws.show_gradings() == [ea] and ea.grading is answer
    assert ea.save_state is SaveState.SAVED
    # A new answer, pending then committed; the real grading is untouched.
    newer = Grading(a.sha256, T, dr_grade=2, amd_grade=0)
    ws.set_grading(a.sha256, newer, SaveState.PENDING, INDUCTION)
    assert ea.grading is newer and ea.save_state is SaveState.PENDING
    ws.set_save_state(a.sha256, SaveState.SAVED)
    assert ea.save_state is SaveState.SAVED
    # The undo of a first answer leaves nothing to call saved; b unchanged throughout.
    ws.set_grading(b.sha256, None, SaveState.PENDING, INDUCTION)
    serving[b.sha256] = INDUCTION
    ws.set_save_state(b.sha256, SaveState.SAVED)
    assert eb.grading is None and eb.save_state is None
    serving.clear()
    ws.show_gradings()
    assert ea.grading is real


def test_pending_answers_are_newer_than_the_read() -> None:
    read = {(INDUCTION, _sha("a")): Grading(_sha("a"), T, dr_grade=1, amd_grade=0)}
    newer = Grading(_sha("b"), T, dr_grade=2, amd_grade=0)
    pending = [
        GradeWrite(_sha("a"), T, None, "undo", test_set=INDUCTION),
        GradeWrite(_sha("b"), T, newer, test_set=INDUCTION),
        GradeWrite(_sha("c"), T, Grading(_sha("c"), T, dr_grade=0, amd_grade=0)),  # a grading
        GradeWrite(_sha("d"), P, Grading(_sha("d"), P, dr_grade=0, amd_grade=0), test_set=SPOT),
    ]
    assert with_pending(read, pending, T) == {(INDUCTION, _sha("b")): newer}


def test_a_test_answer_is_never_a_grading(db: Path) -> None:
    with open_store(db) as store:
        before_gradings = store.current_gradings()
        before_finals = load_state(store).finals()
        before_routing = store.routing_decisions()
    thread = StoreThread(db)
    service = GradingService(thread, retry_delays=(3600.0,))

    def answers() -> list[tuple[str, int | None]]:
        rows = thread.submit(lambda s: s.test_answers(INDUCTION)).result(timeout=HANG_GUARD_S)
        return [(g.grader, g.dr_grade) for _n, g in rows]

    try:
        first = Grading(_sha("a"), T, dr_grade=3, amd_grade=1)
        command = GradeCommand(_sha("a"), T, None, first, record=_record("a"), test_set=INDUCTION)
        service.apply(command).result(timeout=HANG_GUARD_S)
        assert answers() == [(T, 3)]
        service.revert(command).result(timeout=HANG_GUARD_S)  # undo of a first answer
        assert answers() == []  # "no answer" appended
        service.apply(command, again=True).result(timeout=HANG_GUARD_S)  # redo
        assert answers() == [(T, 3)]
        # An image not in a set assigned to the grader is refused, not saved as a grading.
        stray = GradeWrite(_sha("a"), P, Grading(_sha("a"), P, dr_grade=1, amd_grade=0),
                           test_set=INDUCTION)  # fmt: skip
        future = service.write(stray)
        wait_for(lambda: service.failing, "the refused test answer")
        assert "not in a test set assigned" in service.last_error
        service.discard_failed()
        with pytest.raises(StoreWriteError):
            future.result(timeout=HANG_GUARD_S)
    finally:
        service.close()
        thread.close()
    with open_store(db) as store:
        assert store.current_gradings() == before_gradings
        assert load_state(store).finals() == before_finals
        assert store.routing_decisions() == before_routing  # nothing routed
        assert [(g.grader, g.dr_grade) for _n, g in store.test_answers()] == [(T, 3)]


def test_a_retraction_is_appended_and_audited(store: SqliteLabelStore) -> None:
    store.add_test_answer(INDUCTION, Grading(_sha("b"), T, dr_grade=1, amd_grade=0))
    store.retract_test_answer(INDUCTION, _sha("b"), T)
    assert store.test_answers(INDUCTION) == []
    with pytest.raises(StoreWriteError, match="not in a test set assigned"):
        store.retract_test_answer(INDUCTION, _sha("b"), P)
    store.add_test_answer(INDUCTION, Grading(_sha("b"), T, dr_grade=2, amd_grade=0))
    assert [g.dr_grade for _n, g in store.test_answers(INDUCTION)] == [2]
    fields = [row.field for row in store.audit_log()]
    assert fields.count("programme.test_answer") == 2
    assert fields.count("programme.test_answer_retracted") == 1
