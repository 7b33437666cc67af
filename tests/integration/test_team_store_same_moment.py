"""Two graders save the same image at the same level at the same moment on a team store: both
grades are kept, nothing is overwritten or merged, and their disagreement goes to arbitration."""

from __future__ import annotations

import hashlib
import threading

from sall_desktop.domain.grades import GraderRole, Grading
from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.programme import load_state
from sall_desktop.store import open_team_store

SHA = hashlib.sha256(b"same moment").hexdigest()
HANG_GUARD_S = 120.0
"""A hang guard on the joins only; never a measure of speed."""


def test_both_keep_their_grade_and_the_disagreement_is_arbitrated(pg_url: str) -> None:
    with open_team_store(pg_url, app_version="test") as store:
        store.set_programme_rules(RoutingRules(normal_fraction=0.0, seed=1), actor="QA Lead")
        store.set_programme_role("Dr P", ProgrammeRole.PRIMARY, actor="QA Lead")
        for grader in ("Dr S1", "Dr S2"):
            store.set_programme_role(grader, ProgrammeRole.SECONDARY, actor="QA Lead")
        store.add_grading(Grading(SHA, "Dr P", dr_grade=3, amd_grade=0))  # routed: referable
    desks = [open_team_store(pg_url, app_version="test") for _ in range(2)]
    grades = {"Dr S1": 3, "Dr S2": 0}  # S1 agrees with P; S2 does not, nor with S1
    start = threading.Barrier(2)
    ids: dict[str, int] = {}

    def save(desk: object, grader: str) -> None:
        start.wait(HANG_GUARD_S)
        grading = Grading(
            SHA, grader, dr_grade=grades[grader], amd_grade=0, role=GraderRole.SECONDARY
        )
        ids[grader] = desk.add_grading(grading)  # type: ignore[attr-defined]

    threads = [
        threading.Thread(target=save, args=(desk, grader))
        for desk, grader in zip(desks, grades, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_S)
    assert len(ids) == 2 and ids["Dr S1"] != ids["Dr S2"]
    store = desks[0]
    kept = {
        g.grader: g.dr_grade for g in store.current_gradings() if g.role is GraderRole.SECONDARY
    }
    assert kept == grades  # nothing overwritten, nothing merged
    stages = [d.stage for d in store.routing_decisions()]
    assert sorted(stages) == ["arbitration", "secondary"]
    store.set_programme_role("Dr A", ProgrammeRole.ARBITER, actor="QA Lead")
    image = store.get_image(SHA)
    assert image is not None
    state = load_state(store)
    assert state.queue("Dr A", GraderRole.ARBITER, [image]) == [SHA]
    final = state.final(SHA)
    assert final is not None and final.grading is None  # pending: nobody's grade stands yet
    report = store.verify()
    assert report.ok and report.gradings == 3
    for desk in desks:
        desk.close()
