"""R8: audit rows are complete, written with the change, chained, and replayable."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime

import pytest

from sall_desktop.domain.grades import GraderRole, UngradableReason
from sall_desktop.store import (
    AUDITED_FIELDS,
    StoreWriteError,
    grading_fields,
    open_store,
    replay_audit,
    verify_entries,
)
from sall_desktop.store import audit as audit_mod
from sall_desktop.store.audit import GENESIS_HASH, AuditEntry


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on the team store (tests/unit/store/conftest.py)."""
    return any_store


def test_first_grading_audits_every_field_with_its_context(store, grading, sha) -> None:
    g = grading(1, "Dr A", dr_grade=2, model_version="model-x")
    grading_id = store.add_grading(g, reason="first look")
    rows = store.audit_log()
    assert [r.field for r in rows] == list(AUDITED_FIELDS)
    for row in rows:
        assert row.action == "create" and row.old_value is None
        assert row.grader == "Dr A" and row.image_sha256 == sha(1)
        assert row.reason == "first look" and row.app_version == "9.9.9-test"
        assert row.model_version == "model-x" and row.grading_id == grading_id
        assert datetime.fromisoformat(row.at_utc).utcoffset().total_seconds() == 0
        assert re.fullmatch(r"[+-]\d\d:\d\d", row.local_offset)
    assert {r.field: r.new_value for r in rows} == grading_fields(g)
    assert {r.field: r.new_value for r in rows}["dr_grade"] == "2"


def test_an_edit_audits_only_the_changed_fields_with_old_and_new(store, grading) -> None:
    store.add_grading(grading(1, dr_grade=2, amd_grade=0))
    before = len(store.audit_log())
    edit_id = store.add_grading(grading(1, dr_grade=3, amd_grade=0), reason="second look")
    new_rows = store.audit_log()[before:]
    assert [(r.action, r.field, r.old_value, r.new_value) for r in new_rows] == [
        ("modify", "dr_grade", "2", "3")
    ]
    assert new_rows[0].grading_id == edit_id and new_rows[0].reason == "second look"
    store.add_grading(grading(1, dr_grade=3, amd_grade=0))  # saved again unchanged
    assert [(r.action, r.field) for r in store.audit_log()[before + 1 :]] == [("confirm", "")]


def test_ungradable_and_retraction_are_audited(store, grading, sha) -> None:
    store.add_grading(grading(1, dr_grade=2))
    store.add_grading(grading(1, gradable=False, ungradable_reason=UngradableReason.EXPOSURE))
    changed = {
        r.field: (r.old_value, r.new_value) for r in store.audit_log() if r.action == "modify"
    }
    assert changed["gradable"] == ("true", "false")
    assert changed["dr_grade"] == ("2", None)  # blank, never 0
    assert changed["ungradable_reason"] == (None, "exposure")
    store.retract_grading(sha(1), "Dr A", reason="wrong patient")
    deletes = [r for r in store.audit_log() if r.action == "delete"]
    assert [r.field for r in deletes] == list(AUDITED_FIELDS)
    assert all(r.new_value is None and r.reason == "wrong patient" for r in deletes)
    assert {r.field: r.old_value for r in deletes}["gradable"] == "false"


def test_chain_links_every_row_to_the_previous_one(store, grading) -> None:
    store.add_grading(grading(1))
    store.add_grading(grading(2, "Dr B"))
    rows = store.audit_log()
    assert rows[0].prev_hash == GENESIS_HASH
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row.prev_hash == prev.row_hash and row.id == prev.id + 1
    report = store.verify_chain()
    assert report.ok and report.checked == len(rows) and report.first_bad_id is None


def _altered(entry: AuditEntry, **changes: object) -> AuditEntry:
    return AuditEntry(
        **{**entry.content(), "prev_hash": entry.prev_hash, "row_hash": entry.row_hash, **changes}
    )


def test_verify_entries_names_the_first_bad_row(store, grading) -> None:
    for i in range(3):
        store.add_grading(grading(i))
    rows = store.audit_log()
    edited = [*rows[:5], _altered(rows[5], new_value="4"), *rows[6:]]
    report = verify_entries(edited)
    assert not report.ok and report.first_bad_id == rows[5].id and "edited" in report.message
    removed = rows[:7] + rows[8:]
    report = verify_entries(removed)
    assert not report.ok and report.first_bad_id == rows[8].id and "removed" in report.message
    assert verify_entries(rows).ok


def test_replay_rebuilds_the_current_gradings(store, grading, sha) -> None:
    store.add_grading(grading(1, "Dr A", dr_grade=1))
    store.add_grading(grading(1, "Dr A", dr_grade=2, notes="n"))
    store.add_grading(grading(1, "Dr B", dr_grade=3, role=GraderRole.SECONDARY))
    store.add_grading(grading(2, "Dr A"))
    store.retract_grading(sha(2), "Dr A")
    store.add_grading(grading(1, "Dr C", dr_grade=2, role=GraderRole.ARBITER))
    rebuilt = replay_audit(store.audit_log())
    expected = {(g.image_sha256, g.grader): grading_fields(g) for g in store.current_gradings()}
    assert rebuilt == expected and len(expected) == 3


def test_replay_refuses_a_trail_that_edits_a_grading_never_created(store, grading) -> None:
    store.add_grading(grading(1))
    store.add_grading(grading(1, dr_grade=4))
    rows = store.audit_log()
    with pytest.raises(ValueError, match="does not exist"):
        replay_audit([r for r in rows if r.action != "create"])


def test_audit_rows_commit_with_the_grading_or_not_at_all(
    sqlite_store, grading, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    store.add_grading(grading(1))
    real = audit_mod.append_audit_rows

    def half_then_fail(conn, changes, **kwargs):
        real(conn, changes[:1], **kwargs)  # some audit rows are written ...
        raise sqlite3.OperationalError("disk I/O error")  # ... then the disk fails

    monkeypatch.setattr(audit_mod, "append_audit_rows", half_then_fail)
    with pytest.raises(StoreWriteError, match="input/output"):
        store.add_grading(grading(2))
    assert len(store.audit_log()) == len(AUDITED_FIELDS)
    assert len(store.current_gradings()) == 1


def test_open_reports_a_broken_chain_as_a_warning(db_path, grading) -> None:
    with open_store(db_path) as s:
        s.add_grading(grading(1))
    import sqlite3

    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET reason = 'forged' WHERE id = 3")
    conn.close()
    with open_store(db_path) as s:
        assert s.chain_report is not None and s.chain_report.first_bad_id == 3
        assert any("row 3" in w for w in s.warnings)
