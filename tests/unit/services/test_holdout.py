"""The locked hold-out: designated or sampled by patient, append-only."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import Grading, ImageRecord
from sall_desktop.services import holdout
from sall_desktop.services.holdout import HoldoutError
from sall_desktop.store import open_store
from sall_desktop.store.sqlite_repository import SqliteLabelStore


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLabelStore]:
    s = open_store(tmp_path / "db.sqlite")
    # 10 patients, two eyes each; all graded by a human.
    for i in range(20):
        s.upsert_image(ImageRecord(sha256=sha(i), path=f"/x/{i}.jpg", patient_id=f"p{i // 2}"))
        s.add_grading(Grading(image_sha256=sha(i), grader="Dr A", dr_grade=i % 5, amd_grade=0))
    yield s
    s.close()


def test_sampled_holdout_is_patient_grouped_and_locked(store: SqliteLabelStore) -> None:
    chosen = holdout.sample_holdout(store, actor="Dr A", fraction=0.3, seed=1)
    held = holdout.load_holdout(store)
    assert 6 <= len(chosen) <= 8 and set(chosen) == held.images
    patients = {f"p{i // 2}" for i in range(20) if sha(i) in held.images}
    assert patients == held.patients
    # Both eyes of every held-out patient are held out.
    assert all(sha(2 * int(p[1:])) in held.images for p in patients)
    assert all(sha(2 * int(p[1:]) + 1) in held.images for p in patients)
    with pytest.raises(HoldoutError, match="locked"):
        holdout.sample_holdout(store, actor="Dr A")
    assert held.excludes("0" * 64, next(iter(patients)))
    assert not held.excludes("0" * 64, "someone else")


def test_designated_holdout_adds_and_never_removes(store: SqliteLabelStore) -> None:
    assert holdout.designate_holdout(store, [sha(0), sha(3)], actor="Dr A") == 2
    assert holdout.designate_holdout(store, [sha(0)], actor="Dr B") == 0
    rows = holdout.holdout_rows(store)
    assert {(r.sha256, r.patient_id, r.source) for r in rows} == {
        (sha(0), "p0", "designated"),
        (sha(3), "p1", "designated"),
    }
    with pytest.raises(HoldoutError):
        holdout.designate_holdout(store, [], actor="Dr A")


def test_sampling_needs_two_patient_groups(tmp_path: Path) -> None:
    with open_store(tmp_path / "one.sqlite") as s:
        s.upsert_image(ImageRecord(sha256=sha(1), path="/a.jpg", patient_id="p"))
        s.add_grading(Grading(image_sha256=sha(1), grader="Dr A", dr_grade=0, amd_grade=0))
        with pytest.raises(HoldoutError, match="two patients"):
            holdout.sample_holdout(s, actor="Dr A")


def test_split_by_patient_keeps_patients_together() -> None:
    items = [(sha(i), f"p{i // 3}") for i in range(30)]
    train, val = holdout.split_by_patient(items, 0.2, seed=4)
    assert train.isdisjoint(val) and len(train | val) == 30 and 5 <= len(val) <= 9
    by_patient = {p: {s in val for s, q in items if q == p} for _, p in items}
    assert all(len(flags) == 1 for flags in by_patient.values())
