"""The open folder's state without Qt: entries found then described, grades and save states, model
outputs behind blind-first, filter and sort, and the other eye of a patient."""

from __future__ import annotations

from pathlib import Path

from sall_desktop.domain.grades import FieldSource, Grading, ImageRecord, Laterality
from sall_desktop.services.catalogue import DescribedFile, FoundFile
from sall_desktop.services.grading import SaveState
from sall_desktop.services.image_entry import ImageFilter, SortKey, StatusFilter
from sall_desktop.services.workspace import Workspace


def _found(name: str) -> FoundFile:
    return FoundFile(Path("/study") / name, 1000, 0)


def _described(name: str, sha: str, patient: str, eye: Laterality) -> DescribedFile:
    record = ImageRecord(
        sha256=sha, path=f"/study/{name}", file_format="jpeg", width=64, height=64,
        patient_id=patient, laterality=eye, laterality_source=FieldSource.FILENAME_RULE,
    )  # fmt: skip
    return DescribedFile(_found(name), record)


def test_found_then_described_entries_are_indexed_once() -> None:
    ws = Workspace()
    added = ws.add_found([_found("p1_right.jpg"), _found("p1_left.jpg"), _found("p1_right.jpg")])
    assert [e.name for e in added] == ["p1_right.jpg", "p1_left.jpg"]
    updated, recorded = ws.add_described(
        [
            _described("p1_right.jpg", "a" * 64, "p1", Laterality.RIGHT),
            _described("p1_left.jpg", "b" * 64, "p1", Laterality.LEFT),
        ]
    )
    assert len(updated) == 2 and recorded == ["a" * 64, "b" * 64]
    right, left = ws.entries()
    assert ws.partner_of(right) is left and ws.partner_of(left) is right
    assert ws.entry_for_path("/study/p1_left.jpg") is left
    assert [ws.position_of(e) for e in (right, left)] == [0, 1]


def test_grades_states_and_the_undo_of_a_first_grade() -> None:
    ws = Workspace()
    ws.add_found([_found("p1_right.jpg")])
    ws.add_described([_described("p1_right.jpg", "a" * 64, "p1", Laterality.RIGHT)])
    [entry] = ws.entries()
    grading = Grading(image_sha256="a" * 64, grader="Dr A", dr_grade=2, amd_grade=0)
    assert ws.set_grading("a" * 64, grading, SaveState.PENDING) == [entry]
    assert ws.set_save_state("a" * 64, SaveState.SAVED) == [entry]
    assert entry.save_state is SaveState.SAVED
    ws.set_grading("a" * 64, None, SaveState.PENDING)  # undo of the first grade
    ws.set_save_state("a" * 64, SaveState.SAVED)
    assert entry.grading is None and entry.save_state is None  # nothing to call saved


def test_blind_first_and_the_view() -> None:
    ws = Workspace()
    ws.add_found([_found("p1_right.jpg"), _found("p2_left.jpg")])
    ws.add_described(
        [
            _described("p1_right.jpg", "a" * 64, "p1", Laterality.RIGHT),
            _described("p2_left.jpg", "b" * 64, "p2", Laterality.LEFT),
        ]
    )
    first, second = ws.entries()
    assert first.sha256 == "a" * 64
    ws.set_grading("a" * 64, Grading(image_sha256="a" * 64, grader="Dr A", dr_grade=1,
                                     amd_grade=0), SaveState.SAVED)  # fmt: skip
    from sall_desktop.domain.predictions import Prediction
    from sall_desktop.services.inference import summarize

    probs = {"dr": (0.1, 0.2, 0.4, 0.2, 0.1), "amd": (0.7, 0.1, 0.1, 0.1)}
    ws.set_predictions(
        {sha: summarize(Prediction(sha, "m", probs)) for sha in ("a" * 64, "b" * 64)}
    )
    assert ws.shown_prediction(second) is not None  # blind-first off: shown
    assert ws.set_blind(True) and not ws.set_blind(True)
    assert ws.shown_prediction(second) is None  # ungraded: hidden
    assert ws.shown_prediction(first) is not None  # graded: shown
    ws.set_view(ImageFilter(status=StatusFilter.UNGRADED), SortKey.PATH)
    assert ws.order == [second] and ws.position_of(first) == -1
