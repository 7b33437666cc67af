"""Programme → Set up double grading…, the service: who may change the programme, and every
change audited under the signed-in grader's name (over a real store)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import GraderRole, Grading, ImageRecord
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.programme_admin import (
    NOT_SET_UP,
    NOT_SIGNED_IN,
    READ_ONLY,
    ProgrammeAdminError,
    RoleChange,
    apply_rules,
    apply_setup,
    assign_test_set,
    create_test_set,
    read_setup,
    set_role,
)
from sall_desktop.store import SqliteLabelStore, StoreWriteError, open_store

LEAD, OTHER, NEWCOMER = "Dr Lead", "Dr Other", "Dr New"
QA, SECONDARY = ProgrammeRole.QA, ProgrammeRole.SECONDARY


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SqliteLabelStore]:
    s = open_store(tmp_path / "labels.sqlite", app_version="test")
    for name in (LEAD, OTHER, "reference:eyepacs"):
        s.add_grader(name, GraderRole.REFERENCE if ":" in name else GraderRole.PRIMARY)
    yield s
    s.close()


def _audited(store: SqliteLabelStore, field: str) -> list[tuple[str, str, dict[str, object]]]:
    return [
        (e.grader, e.action, json.loads(e.new_value or "{}"))
        for e in store.audit_log()
        if e.field == field
    ]


def _finals(store: SqliteLabelStore, n: int) -> None:
    """``n`` images graded once as normal: with a 0 % sample their primary grade is final."""
    images = [ImageRecord(hashlib.sha256(f"a{i}".encode()).hexdigest(), f"/a/{i}.png")
              for i in range(n)]  # fmt: skip
    store.upsert_images(images)
    for image in images:
        store.add_grading(Grading(image.sha256, OTHER, dr_grade=0, amd_grade=0, dme=0))


def test_before_setup_any_signed_in_grader_may_set_it_up_and_becomes_qa_lead(
    store: SqliteLabelStore,
) -> None:
    before = read_setup(store, OTHER)
    assert before.rules is None and not before.active
    assert before.may_change and before.reason == ""
    assert [g.name for g in before.graders] == [LEAD, OTHER]  # reference sources left out
    assert read_setup(store, None).reason == NOT_SIGNED_IN
    assert not read_setup(store, "  ").may_change

    rules = RoutingRules(normal_fraction=0.25, seed=4, dr_step=3, amd_step=0)
    after = apply_setup(store, rules, [RoleChange(LEAD, SECONDARY)], actor=OTHER)
    assert store.programme_rules() == rules == after.rules
    assert after.roles_of(OTHER) == {QA} and after.qa_leads == (OTHER,)
    assert after.roles_of(LEAD) == {SECONDARY}
    assert _audited(store, "programme.rules")[0][0] == OTHER
    assert [(who, what, v["grader"], v["role"]) for who, what, v in
            _audited(store, "programme.role")] == [
        (OTHER, "create", OTHER, "qa"), (OTHER, "create", LEAD, "secondary")]  # fmt: skip


def test_after_setup_only_a_qa_lead_may_change_anything(store: SqliteLabelStore) -> None:
    apply_rules(store, RoutingRules(), actor=LEAD)
    setup = read_setup(store, OTHER)
    assert not setup.may_change
    assert setup.reason == f"Only a QA lead may change the programme; ask {LEAD} to make you one."
    audit_rows = len(store.audit_log())
    with pytest.raises(ProgrammeAdminError, match="Only a QA lead"):
        apply_rules(store, RoutingRules(normal_fraction=0.5), actor=OTHER)
    with pytest.raises(ProgrammeAdminError, match="Only a QA lead"):
        set_role(store, RoleChange(OTHER, QA), actor=OTHER)
    with pytest.raises(ProgrammeAdminError, match="Only a QA lead"):
        create_test_set(store, "t", actor=OTHER)
    with pytest.raises(ProgrammeAdminError, match="Only a QA lead"):
        assign_test_set(store, "t", OTHER, actor=OTHER)
    assert len(store.audit_log()) == audit_rows
    assert store.programme_rules() == RoutingRules()

    set_role(store, RoleChange(OTHER, QA), actor=LEAD)  # a QA lead makes another
    assert read_setup(store, OTHER).may_change
    assert read_setup(store, LEAD).qa_leads == (LEAD, OTHER)


def test_unchanged_rules_write_nothing(store: SqliteLabelStore) -> None:
    assert apply_rules(store, RoutingRules(seed=1), actor=LEAD)
    rows = len(store.audit_log())
    assert not apply_rules(store, RoutingRules(seed=1), actor=LEAD)
    assert len(store.audit_log()) == rows


def test_a_programme_set_up_on_the_command_line_without_a_qa_lead_says_how(
    store: SqliteLabelStore,
) -> None:
    store.set_programme_rules(RoutingRules(), actor="Jo Lead")
    setup = read_setup(store, LEAD)
    assert not setup.may_change
    assert "nobody holds the QA role" in setup.reason
    assert "programme role NAME qa" in setup.reason


def test_a_folder_only_qa_role_is_shown_but_does_not_make_a_qa_lead(
    store: SqliteLabelStore,
) -> None:
    apply_rules(store, RoutingRules(), actor=LEAD)
    store.set_programme_role(OTHER, QA, actor=LEAD, scope="/data/clinic-b")
    store.set_programme_role(OTHER, ProgrammeRole.ARBITER, actor=LEAD, scope="/data/clinic-a")
    setup = read_setup(store, OTHER)
    other = next(g for g in setup.graders if g.name == OTHER)
    assert other.roles == frozenset()
    assert other.scoped_text() == "Arbiter in /data/clinic-a; QA lead in /data/clinic-b"
    assert not setup.may_change


def test_the_last_qa_lead_may_not_give_the_role_up(store: SqliteLabelStore) -> None:
    apply_rules(store, RoutingRules(), actor=LEAD)
    with pytest.raises(ProgrammeAdminError, match="only QA lead"):
        set_role(store, RoleChange(LEAD, QA, granted=False), actor=LEAD)
    assert read_setup(store, LEAD).qa_leads == (LEAD,)
    rows = len(store.audit_log())
    with pytest.raises(ProgrammeAdminError, match="only QA lead"):  # refused before any write
        apply_setup(
            store, RoutingRules(seed=5),
            [RoleChange(OTHER, SECONDARY), RoleChange(LEAD, QA, granted=False)], actor=LEAD,
        )  # fmt: skip
    assert len(store.audit_log()) == rows and store.programme_rules() == RoutingRules()
    # Handing it over in one step: the grant goes first, then the revocation.
    after = apply_setup(
        store, RoutingRules(),
        [RoleChange(LEAD, QA, granted=False), RoleChange(OTHER, QA)], actor=LEAD,
    )  # fmt: skip
    assert after.qa_leads == (OTHER,)
    assert not after.may_change and LEAD == after.user


def test_roles_need_a_programme_and_a_grader_name(store: SqliteLabelStore) -> None:
    with pytest.raises(ProgrammeAdminError, match=NOT_SET_UP):
        set_role(store, RoleChange(OTHER, SECONDARY), actor=LEAD)
    with pytest.raises(ProgrammeAdminError, match=NOT_SET_UP):
        create_test_set(store, "t", actor=LEAD)
    apply_rules(store, RoutingRules(), actor=LEAD)
    with pytest.raises(ProgrammeAdminError, match="needs a name"):
        set_role(store, RoleChange("  ", SECONDARY), actor=LEAD)
    with pytest.raises(ProgrammeAdminError, match="reference source"):
        set_role(store, RoleChange("reference:eyepacs", SECONDARY), actor=LEAD)
    set_role(store, RoleChange(f" {NEWCOMER} ", SECONDARY), actor=LEAD)  # a grader not yet known
    assert read_setup(store, LEAD).roles_of(NEWCOMER) == {SECONDARY}
    set_role(store, RoleChange(NEWCOMER, SECONDARY, granted=False), actor=LEAD)
    assert read_setup(store, LEAD).roles_of(NEWCOMER) == frozenset()
    assert _audited(store, "programme.role")[-1][1] == "delete"


def test_a_test_set_from_final_grades_and_its_assignment(store: SqliteLabelStore) -> None:
    apply_rules(store, RoutingRules(normal_fraction=0.0), actor=LEAD)
    with pytest.raises(StoreWriteError, match="No image has a final grade"):
        create_test_set(store, "induction", actor=LEAD)
    _finals(store, 6)
    with pytest.raises(ProgrammeAdminError, match="needs a name"):
        create_test_set(store, " ", actor=LEAD)
    with pytest.raises(ProgrammeAdminError, match="at least one image"):
        create_test_set(store, "induction", actor=LEAD, size=0)
    assert create_test_set(store, "induction", actor=LEAD, size=4, seed=2, unannounced=True) == 4
    with pytest.raises(StoreWriteError, match="already a test set"):
        create_test_set(store, "induction", actor=LEAD)
    assign_test_set(store, "induction", NEWCOMER, actor=LEAD)
    with pytest.raises(StoreWriteError, match="no test set"):
        assign_test_set(store, "nope", OTHER, actor=LEAD)
    (listed,) = read_setup(store, LEAD).test_sets
    assert (listed.name, listed.size, listed.graders, listed.unannounced) == (
        "induction", 4, (NEWCOMER,), True)  # fmt: skip
    assert [who for who, _, _ in _audited(store, "programme.test_set")] == [LEAD]
    assert _audited(store, "programme.test_assignment") == [
        (LEAD, "create", {"grader": NEWCOMER, "name": "induction"})
    ]


def test_a_read_only_store_is_read_only_here(tmp_path: Path, store: SqliteLabelStore) -> None:
    apply_rules(store, RoutingRules(), actor=LEAD)
    store.close()
    with open_store(tmp_path / "labels.sqlite", read_only=True, app_version="test") as ro:
        setup = read_setup(ro, LEAD)
        assert (setup.may_change, setup.reason) == (False, READ_ONLY)
        assert setup.rules == RoutingRules()
        with pytest.raises(ProgrammeAdminError, match="read-only"):
            apply_rules(ro, RoutingRules(seed=9), actor=LEAD)
