"""The programme tables: off by default, routing in the grading's transaction, append-only."""

from __future__ import annotations

import hashlib

import pytest

from sall_desktop.domain.grades import GraderRole, Grading, GradingSource
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.programme import load_state
from sall_desktop.store import SqliteLabelStore, grading_fields, replay_audit
from tests.unit.store.conftest import Refused

SHA = [hashlib.sha256(f"p{i}".encode()).hexdigest() for i in range(6)]


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on the team store (tests/unit/store/conftest.py)."""
    return any_store


def test_without_a_programme_nothing_is_routed_and_the_trail_is_unchanged(
    store: SqliteLabelStore,
) -> None:
    store.add_grading(Grading(SHA[0], "Dr P", dr_grade=3, amd_grade=0))
    assert store.routing_decisions() == []
    assert {e.field for e in store.audit_log()} <= {
        "role", "source", "gradable", "ungradable_reason", "dr_grade", "amd_grade", "dme",
        "notes", "model_version",
    }  # fmt: skip
    assert not load_state(store).active
    # Without a programme a grader may keep grading at another role, as before.
    store.add_grading(Grading(SHA[0], "Dr P", dr_grade=2, amd_grade=0, role=GraderRole.SECONDARY))


def test_roles_are_granted_revoked_and_audited_once(store: SqliteLabelStore) -> None:
    store.set_programme_rules(RoutingRules(), actor="QA")
    store.set_programme_role("Dr S", ProgrammeRole.SECONDARY, actor="QA", scope="/clinic/a")
    store.set_programme_role("Dr S", ProgrammeRole.SECONDARY, actor="QA", scope="/clinic/a")
    state = load_state(store)
    assert state.holds("Dr S", ProgrammeRole.SECONDARY, "/clinic/a/x.jpg")
    assert not state.holds("Dr S", ProgrammeRole.SECONDARY, "/clinic/b/x.jpg")
    store.set_programme_role(
        "Dr S", ProgrammeRole.SECONDARY, actor="QA", scope="/clinic/a", granted=False
    )
    assert store.programme_roles() == []
    role_rows = [e for e in store.audit_log() if e.field == "programme.role"]
    assert [e.action for e in role_rows] == ["create", "delete"]
    assert store.verify_chain().ok


def test_an_import_never_stands_in_for_a_level(store: SqliteLabelStore) -> None:
    store.set_programme_rules(RoutingRules(), actor="QA")
    store.add_grading(Grading(SHA[1], "Dr P", dr_grade=3, amd_grade=0))
    store.add_grading(Grading(SHA[1], "Dr S", dr_grade=0, amd_grade=0, role=GraderRole.SECONDARY))
    assert load_state(store).final(SHA[1]).how.value == "pending"  # type: ignore[union-attr]
    imported = Grading(
        SHA[1], "Dr Arb", dr_grade=0, amd_grade=0, role=GraderRole.ARBITER,
        source=GradingSource.IMPORT,
    )  # fmt: skip
    store.add_grading(imported)
    final = load_state(store).final(SHA[1])
    assert final is not None and final.how.value == "pending" and final.arbiter == ""


def test_programme_rows_leave_the_replay_of_gradings_intact(store: SqliteLabelStore) -> None:
    store.set_programme_rules(RoutingRules(normal_fraction=1.0), actor="QA")
    store.set_programme_role("Dr P", ProgrammeRole.PRIMARY, actor="QA")
    for sha in SHA:
        store.add_grading(Grading(sha, "Dr P", dr_grade=0, amd_grade=0))
    store.add_grading(Grading(SHA[0], "Dr S", dr_grade=4, amd_grade=0, role=GraderRole.SECONDARY))
    assert {d.stage for d in store.routing_decisions()} == {"secondary", "arbitration"}
    replayed = replay_audit(store.audit_log())
    current = {(g.image_sha256, g.grader): grading_fields(g) for g in store.current_gradings()}
    assert replayed == current


def test_programme_tables_are_append_only(store: SqliteLabelStore, raw_execute) -> None:
    store.set_programme_rules(RoutingRules(normal_fraction=1.0), actor="QA")
    store.set_programme_role("Dr P", ProgrammeRole.PRIMARY, actor="QA")
    store.add_grading(Grading(SHA[2], "Dr P", dr_grade=0, amd_grade=0))
    for sql in (
        "UPDATE routing_decisions SET reason = 'x'",
        "DELETE FROM routing_decisions",
        "UPDATE programme_roles SET granted = 0",
        "DELETE FROM programme_roles",
    ):
        with pytest.raises(Refused, match="append-only"):
            raw_execute(sql)


def test_a_refresh_of_saved_images_equals_a_whole_read(store: SqliteLabelStore) -> None:
    from sall_desktop.services.programme import refresh_state

    store.set_programme_rules(RoutingRules(normal_fraction=0.5, seed=3), actor="QA")
    store.set_programme_role("Dr P", ProgrammeRole.PRIMARY, actor="QA")
    for sha in SHA[:4]:
        store.add_grading(Grading(sha, "Dr P", dr_grade=0, amd_grade=0))
    before = load_state(store)
    store.add_grading(Grading(SHA[4], "Dr P", dr_grade=2, amd_grade=0))
    store.add_grading(Grading(SHA[4], "Dr S", dr_grade=0, amd_grade=0, role=GraderRole.SECONDARY))
    store.add_grading(Grading(SHA[1], "Dr P", dr_grade=3, amd_grade=0))
    refreshed = refresh_state(store, before, [SHA[4], SHA[1]])
    whole = load_state(store)
    assert refreshed.levels == whole.levels
    assert sorted(refreshed.decisions, key=str) == sorted(whole.decisions, key=str)
    assert refreshed.finals() == whole.finals()
