"""The team store under concurrent load, reduced from ``benchmarks/bench_team_store.py``: a few
client processes grading through leases at once lose nothing, store nothing twice, keep the
audit chain whole and never hold one image at once. No timing is asserted (the benchmark
measures); the hang guard only turns a deadlock into a failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.team_load import (
    LoadPlan,
    chain_breaks,
    check_load,
    run_load,
    span_overlaps,
)

CLIENTS = 4
GRADINGS = 50
HANG_GUARD_S = 300.0


@pytest.mark.slow
def test_clients_grading_through_leases_at_once_lose_and_double_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    # 40 images, 4 of them drawn half the time: claims collide and images are graded often.
    plan = LoadPlan(
        url=pg_url,
        clients=CLIENTS,
        gradings=GRADINGS,
        images=40,
        hot=CLIENTS,
        seed=7,
        hang_guard_s=HANG_GUARD_S,
    )
    run = run_load(plan, tmp_path)
    assert not run.errors, run.errors
    checks = check_load(run)
    report = "\n".join(checks.lines())
    assert checks.finished, report
    assert checks.acknowledged == checks.stored == CLIENTS * GRADINGS, report
    assert checks.lost == [] and checks.duplicated == [], report
    assert checks.wrong_ids == [] and checks.unexpected == [], report
    assert checks.verify_ok and checks.verify_gradings == CLIENTS * GRADINGS, report
    assert checks.span_overlaps == [] and checks.chain_breaks == [], report
    assert checks.leases_left == 0, report
    assert checks.ok


def _report(index: int, spans: list[list[Any]], acks: list[list[Any]]) -> dict[str, Any]:
    return {"index": index, "spans": spans, "acks": acks}


def test_the_lease_checks_catch_two_clients_inside_one_image() -> None:
    """The checks themselves: sound runs pass, an overlap and a stale "last row seen" fail."""
    a, b = "a" * 64, "b" * 64
    clean = [  # a: rows 1 then 2; b: rows 3 then 4; each grader in turn, each seeing the last
        _report(0, [[a, 10, 20], [b, 36, 40]], [["u1", 1, a, 0], ["u4", 4, b, 3]]),
        _report(1, [[a, 21, 29], [b, 30, 35]], [["u2", 2, a, 1], ["u3", 3, b, 0]]),
    ]
    assert span_overlaps(clean) == []
    assert chain_breaks(clean) == []

    overlapping = [
        _report(0, [[a, 10, 20]], [["u1", 1, a, 0]]),
        _report(1, [[a, 15, 25]], [["u2", 2, a, 0]]),  # inside a while client 0 was
    ]
    assert len(span_overlaps(overlapping)) == 1
    assert chain_breaks(overlapping) == ["aaaaaaaa: row 2 (client 1) saw 0, not 1"]
