"""A grader's work in a screening programme without a window: the queues and their counts, the
level a save is made at, what is withheld from a secondary grader and what an arbiter sees, read
from a real store that routed real gradings; and the NHS code of a draft."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.draft import Draft
from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord, UngradableReason
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules, Stage
from sall_desktop.services.blind_first import BlindFirst
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.programme import ProgrammeState, load_state
from sall_desktop.services.work_queue import (
    ALL_IMAGES,
    WorkQueue,
    grading_text,
    nhs_label,
)
from sall_desktop.store import SqliteLabelStore, open_store

P, S, A = "Dr P", "Dr S", "Dr A"
PRIMARY, SECONDARY, ARBITER = GraderRole.PRIMARY, GraderRole.SECONDARY, GraderRole.ARBITER


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _entry(name: str, grading: Grading | None = None) -> ImageEntry:
    record = ImageRecord(sha256=_sha(name), path=f"/study/{name}.jpg", file_format="jpeg")
    return ImageEntry(record.path, record=record, grading=grading)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SqliteLabelStore]:
    """A programme (no normal sampled) where P graded a (DR 1: abnormal), b (normal) and c
    (DR 3: referable), S graded c as DR 0 (an outcome-changing disagreement), d is ungraded."""
    with open_store(tmp_path / "labels.sqlite") as s:
        s.set_programme_rules(RoutingRules(normal_fraction=0.0), actor="QA")
        for grader, role in ((P, ProgrammeRole.PRIMARY), (S, ProgrammeRole.SECONDARY),
                             (A, ProgrammeRole.ARBITER)):  # fmt: skip
            s.set_programme_role(grader, role, actor="QA")
        s.add_grading(Grading(_sha("a"), P, dr_grade=1, amd_grade=0))
        s.add_grading(Grading(_sha("b"), P, dr_grade=0, amd_grade=0))
        s.add_grading(Grading(_sha("c"), P, dr_grade=3, amd_grade=0, dme=0))
        s.add_grading(Grading(_sha("c"), S, dr_grade=0, amd_grade=0, role=SECONDARY))
        yield s


def _work(store: SqliteLabelStore, grader: str) -> WorkQueue:
    work = WorkQueue()
    work.set_grader(grader)
    work.set_state(load_state(store))
    return work


def test_before_the_programme_is_read_everything_is_withheld() -> None:
    work = WorkQueue()
    work.set_grader(S)
    assert not work.known and work.withheld([_entry("a")]) is None
    work.set_state(ProgrammeState(None))  # read: no programme (or the read failed)
    assert work.known and not work.active
    assert work.withheld([_entry("a")]) == frozenset()
    assert work.level_for(_entry("a")) is PRIMARY and work.work_filter() is None
    assert [c.text for c in work.choices([_entry("a")])] == [ALL_IMAGES]
    assert work.beside(_entry("a")) == ""


def test_each_grader_sees_their_queues_with_counts(store: SqliteLabelStore) -> None:
    entries = [_entry(n) for n in "abcd"]
    texts = {g: [c.text for c in _work(store, g).choices(entries)] for g in (P, S, A)}
    # P graded a, b and c; d is still to grade. S: a is routed and not graded, c is graded.
    assert texts[P] == [ALL_IMAGES, "Primary — 1 to grade"]
    assert texts[S] == [ALL_IMAGES, "Second grading — 1 to grade"]
    assert texts[A] == [ALL_IMAGES, "Arbitration — 1 to grade"]
    assert _work(store, "Dr Nobody").levels() == []


def test_a_queue_filters_the_images_and_sets_the_level_of_a_save(store: SqliteLabelStore) -> None:
    a, b, c, d = (_entry(n) for n in "abcd")
    work = _work(store, S)
    assert work.work_filter() is None  # every image until a queue is chosen
    work.choose(SECONDARY)
    queue = work.work_filter()
    assert queue is not None and [e for e in (a, b, c, d) if queue(e)] == [a, c]
    assert [e.sha256 for e in (a, c)] == load_state(store).queue(S, SECONDARY, [
        e.record for e in (a, b, c, d) if e.record is not None
    ])  # fmt: skip
    assert work.level_for(a) is SECONDARY
    assert work.level_for(b) is PRIMARY  # no queue of S's holds it: as without a programme
    with pytest.raises(ValueError, match="arbiter"):
        work.choose(ARBITER)
    # The choice is each grader's own and comes back when they sign in again.
    work.set_grader(P)
    assert work.level is None
    work.set_grader(S)
    assert work.level is SECONDARY


def test_the_level_already_graded_at_wins(store: SqliteLabelStore) -> None:
    work = _work(store, S)
    own = Grading(_sha("b"), S, dr_grade=0, amd_grade=0, role=SECONDARY)
    assert work.level_for(_entry("b", own)) is SECONDARY  # the store refuses another level


def test_second_grading_withholds_the_model_and_shows_no_other_grade(
    store: SqliteLabelStore,
) -> None:
    entries = [_entry(n) for n in "abcd"]
    work = _work(store, S)
    # Withheld before and after S's grade (c), in the queue chosen or not.
    assert work.withheld(entries) == {_sha("a"), _sha("c")}
    work.choose(SECONDARY)
    assert work.withheld(entries) == {_sha("a"), _sha("c")}
    assert all(work.beside(e) == "" for e in entries)
    assert _work(store, P).withheld(entries) == frozenset()
    assert _work(store, A).withheld(entries) == frozenset()  # an arbiter may see the model


def test_the_one_blind_first_rule_withholds_after_a_save_too() -> None:
    rule = BlindFirst(on=False)
    assert rule.withhold({"a"}, "second grading is blind")
    assert not rule.withhold({"a"}, "second grading is blind")  # unchanged
    assert not rule.shows("a", graded=True) and rule.shows("b", graded=False)
    rule.graded("a")
    assert not rule.shows("a", graded=True)  # a save reveals nothing withheld
    assert rule.hidden_reason("a") == "second grading is blind" and rule.hidden_reason("b") == ""
    assert rule.audit_reason(changed=True, revealed=rule.shows("a", graded=True)) == "grade"
    rule.withhold(None, "not read yet")
    assert rule.withheld is None and not rule.shows("b", graded=True)
    rule.withhold((), "")
    assert rule.shows("a", graded=True) and rule.withheld == frozenset()


def test_blind_first_forgets_what_the_last_grader_saw() -> None:
    rule = BlindFirst(on=True)
    rule.graded("a")
    assert rule.shows("a", graded=False)
    rule.forget()
    assert not rule.shows("a", graded=False)


def test_an_arbiter_sees_both_gradings_and_why(store: SqliteLabelStore) -> None:
    work = _work(store, A)
    c = _entry("c")
    assert work.level_for(c) is ARBITER
    assert work.beside(c) == (
        "Primary (Dr P): DR 3 · AMD 0 · DME 0 — R2M0\nSecondary (Dr S): DR 0 · AMD 0 — R0\n"
        "Sent to arbitration: referable"
    )
    assert work.routed_reason(c.sha256, Stage.SECONDARY) == "referable"
    assert work.beside(_entry("a")) == ""  # not in arbitration


def test_a_revoked_role_drops_its_queue(store: SqliteLabelStore) -> None:
    work = _work(store, S)
    work.choose(SECONDARY)
    store.set_programme_role(S, ProgrammeRole.SECONDARY, actor="QA", granted=False)
    work.set_state(load_state(store))
    assert work.level is None and not work.active


@pytest.mark.parametrize(
    ("draft", "text", "lossy"),
    [
        (Draft(), "", ""),
        (Draft(dme=0), "", ""),  # no DR grade yet
        (Draft(dr_grade=1, dme=0), "NHS R1M0", ""),
        (Draft(dr_grade=3), "NHS R2", ""),
        (Draft(dr_grade=2, dme=0), "NHS R1/R2M0*", "R1 and R2"),
        (Draft(dr_grade=0, dme=1), "NHS R0M0*", "DME 1"),
        (Draft(gradable=False, reason=UngradableReason.BLUR), "NHS U", ""),
        (Draft(gradable=False), "", ""),  # waiting for the reason
    ],
)
def test_the_nhs_code_of_a_draft(draft: Draft, text: str, lossy: str) -> None:
    shown, tip = nhs_label(draft)
    assert shown == text
    assert (lossy in tip) if lossy else ("*" not in tip)


def test_a_grading_in_one_line() -> None:
    sha = _sha("x")
    assert grading_text(Grading(sha, P, dr_grade=1, amd_grade=0)) == "DR 1 · AMD 0 — R1"
    blur = Grading(sha, P, gradable=False, ungradable_reason=UngradableReason.BLUR)
    assert grading_text(blur) == "Ungradable (blur) — U"


def test_the_counts_are_the_programmes_and_follow_each_read(store: SqliteLabelStore) -> None:
    entries = [_entry(n) for n in "abcde"]
    records = [e.record for e in entries if e.record is not None]

    def counted(work: WorkQueue) -> list[str]:
        return [c.text for c in work.choices(entries)[1:]]

    def expected(grader: str) -> list[str]:
        names = {PRIMARY: "Primary", SECONDARY: "Second grading", ARBITER: "Arbitration"}
        counts = load_state(store).counts(grader, records)
        return [f"{names[c.level]} — {c.todo} to grade" for c in counts]

    works = {g: _work(store, g) for g in (P, S, A)}
    for grader, work in works.items():
        assert counted(work) == expected(grader)
    # Gradings saved elsewhere: each work queue reads the programme again.
    store.add_grading(
        Grading(_sha("d"), P, gradable=False, ungradable_reason=UngradableReason.BLUR)
    )
    store.add_grading(Grading(_sha("a"), S, dr_grade=3, amd_grade=0, role=SECONDARY))
    for grader, work in works.items():
        work.set_state(load_state(store))
        assert counted(work) == expected(grader)
    assert counted(works[S]) == ["Second grading — 1 to grade"]  # d (ungradable) came in
    assert counted(works[A]) == ["Arbitration — 2 to grade"]  # a (DR 1 against DR 3) too
