"""R8: the audit trail is complete (replay rebuilds the current grades), append-only and
tamper-evident.

A Hypothesis state machine grades, edits, arbitrates and retracts at random with several
graders. After every step, replaying the audit trail from empty must give exactly the current
gradings the store reports, and those must equal an independent model of what was done.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource, UngradableReason
from sall_desktop.store import (
    StoreWriteError,
    grading_fields,
    open_store,
    replay_audit,
)

IMAGES = [hashlib.sha256(f"fuzz-{i}".encode()).hexdigest() for i in range(4)]
GRADERS = ["Dr A", "Dr B", "Dr Ç"]
Key = tuple[str, str]


@st.composite
def gradings(draw: st.DrawFn, image: str, grader: str, role: GraderRole | None = None) -> Grading:
    gradable = draw(st.booleans())
    return Grading(
        image_sha256=image,
        grader=grader,
        gradable=gradable,
        dr_grade=draw(st.sampled_from([None, 0, 1, 2, 3, 4])) if gradable else None,
        amd_grade=draw(st.sampled_from([None, 0, 1, 2, 3])) if gradable else None,
        dme=draw(st.sampled_from([None, 0, 1, 2])) if gradable else None,
        ungradable_reason=None if gradable else draw(st.sampled_from(list(UngradableReason))),
        notes=draw(st.text(max_size=12)),
        model_version=draw(st.sampled_from([None, "model-1", "model-2"])),
        role=role or draw(st.sampled_from([GraderRole.PRIMARY, GraderRole.SECONDARY])),
        source=draw(st.sampled_from(list(GradingSource))),
    )


class AuditMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.store = open_store(Path(self._tmp.name) / "fuzz.sqlite3", startup_check="none")
        self.model: dict[Key, dict[str, str | None]] = {}

    @initialize()
    def register_graders(self) -> None:
        for grader in GRADERS:
            self.store.add_grader(grader)

    def _save(self, grading: Grading, reason: str) -> None:
        self.store.add_grading(grading, reason=reason)
        self.model[(grading.image_sha256, grading.grader)] = grading_fields(grading)

    @rule(
        data=st.data(),
        image=st.sampled_from(IMAGES),
        grader=st.sampled_from(GRADERS),
        reason=st.text(max_size=8),
    )
    def grade(self, data: st.DataObject, image: str, grader: str, reason: str) -> None:
        self._save(data.draw(gradings(image, grader)), reason)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), reason=st.text(max_size=8))
    def edit_one_field(self, data: st.DataObject, reason: str) -> None:
        image, grader = data.draw(st.sampled_from(sorted(self.model)))
        current = self.store.current_grading(image, grader)
        assert current is not None
        new = data.draw(st.sampled_from(["dr", "notes", "ungradable"]))
        if new == "dr" and current.gradable:
            edited = Grading(**{**_as_kwargs(current), "dr_grade": data.draw(st.integers(0, 4))})
        elif new == "notes":
            edited = Grading(**{**_as_kwargs(current), "notes": data.draw(st.text(max_size=12))})
        else:
            edited = Grading(
                **{
                    **_as_kwargs(current),
                    "gradable": False,
                    "dr_grade": None,
                    "amd_grade": None,
                    "dme": None,
                    "ungradable_reason": UngradableReason.OTHER,
                }
            )
        self._save(edited, reason)

    @rule(data=st.data(), image=st.sampled_from(IMAGES))
    def arbitrate(self, data: st.DataObject, image: str) -> None:
        self._save(data.draw(gradings(image, "Arbiter", GraderRole.ARBITER)), "disagreement")

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), reason=st.text(max_size=8))
    def retract(self, data: st.DataObject, reason: str) -> None:
        image, grader = data.draw(st.sampled_from(sorted(self.model)))
        self.store.retract_grading(image, grader, reason=reason)
        del self.model[(image, grader)]

    @rule(image=st.sampled_from(IMAGES), grader=st.sampled_from(GRADERS))
    def retract_nothing_writes_nothing(self, image: str, grader: str) -> None:
        if (image, grader) in self.model:
            return
        before = len(self.store.audit_log())
        with pytest.raises(StoreWriteError):
            self.store.retract_grading(image, grader)
        assert len(self.store.audit_log()) == before

    @invariant()
    def replay_rebuilds_current_gradings(self) -> None:
        current = {
            (g.image_sha256, g.grader): grading_fields(g) for g in self.store.current_gradings()
        }
        assert replay_audit(self.store.audit_log()) == current
        assert current == self.model

    @invariant()
    def chain_is_intact(self) -> None:
        assert self.store.verify_chain().ok

    def teardown(self) -> None:
        self.store.close()
        self._tmp.cleanup()


def _as_kwargs(g: Grading) -> dict[str, object]:
    return {name: getattr(g, name) for name in Grading.__slots__}


TestAuditStateMachine = AuditMachine.TestCase
TestAuditStateMachine.pytestmark = [pytest.mark.slow]  # ~2-10 s depending on machine load
TestAuditStateMachine.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ---------------------------------------------------------------------- append-only, tamper


@pytest.fixture
def graded_db(tmp_path: Path) -> Path:
    path = tmp_path / "labels.sqlite3"
    with open_store(path) as store:
        for i, image in enumerate(IMAGES):
            store.add_grading(Grading(image_sha256=image, grader="Dr A", dr_grade=i % 5))
        store.add_grading(Grading(image_sha256=IMAGES[0], grader="Dr A", dr_grade=4))
    return path


@pytest.mark.parametrize(
    "sql",
    ["UPDATE audit_log SET new_value = '0' WHERE id = 2", "DELETE FROM audit_log WHERE id = 2"],
)
def test_direct_update_or_delete_on_the_audit_log_raises(graded_db: Path, sql: str) -> None:
    conn = sqlite3.connect(graded_db, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(sql)
    conn.close()
    with open_store(graded_db) as store:
        assert store.verify_chain().ok


def test_tampering_in_a_copy_is_reported_at_the_first_bad_row(graded_db: Path, tmp_path) -> None:
    copy = tmp_path / "copy.sqlite3"
    with open_store(graded_db) as store:
        store.backup_to(copy)  # a copy through Connection.backup(), never a file copy
        rows = store.audit_log()
    victim = rows[len(rows) // 2]
    conn = sqlite3.connect(copy, isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET new_value = '4' WHERE id = ?", (victim.id,))
    conn.close()
    with open_store(copy) as tampered:
        report = tampered.verify_chain()
        assert not report.ok and report.first_bad_id == victim.id
        assert report.checked == victim.id and f"row {victim.id}" in report.message
        assert tampered.chain_report == report  # the start-up check found it too
        assert any(f"row {victim.id}" in w for w in tampered.warnings)
    with open_store(graded_db) as original:
        assert original.verify_chain().ok
