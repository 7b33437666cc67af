"""Triage orderings against hand-computed scores; ungradable images stay out of the queue."""

from __future__ import annotations

import math

import pytest

from sall_desktop.domain.predictions import Prediction
from sall_desktop.services.inference import PredictionSummary, summarize
from sall_desktop.services.triage import (
    TriageItem,
    TriageOrder,
    disagreement,
    rank,
    rank_top,
    referable_straddle,
    uncertainty,
)

AMD = (1.0, 0.0, 0.0, 0.0)


def _summary(sha: str, dr: tuple[float, ...], gradable: float | None = None) -> PredictionSummary:
    return summarize(Prediction(sha, "m", {"dr": dr, "amd": AMD}, gradable_probability=gradable))


CERTAIN_0 = (1.0, 0.0, 0.0, 0.0, 0.0)  # entropy 0, E=0, P(ref)=0
SPLIT_1_2 = (0.0, 0.5, 0.5, 0.0, 0.0)  # entropy ln2, E=1.5, P(ref)=0.5
SPREAD = (0.2, 0.2, 0.2, 0.2, 0.2)  # entropy ln5, E=2.0, P(ref)=0.6
MOSTLY_4 = (0.0, 0.0, 0.0, 0.1, 0.9)  # entropy H(0.1,0.9), E=3.9, P(ref)=1.0


def _items() -> list[TriageItem]:
    return [
        TriageItem("a", "a.jpg", _summary("a", CERTAIN_0), grader_dr=4, graded=True),
        TriageItem("b", "b.jpg", _summary("b", SPLIT_1_2), grader_dr=1, graded=True),
        TriageItem("c", "c.jpg", _summary("c", SPREAD), grader_dr=None),
        TriageItem("d", "d.jpg", _summary("d", MOSTLY_4), grader_dr=4, graded=True),
        TriageItem("e", "e.jpg", None, grader_dr=2, graded=True),  # not graded by the model yet
        TriageItem("f", "f.jpg", _summary("f", SPREAD), grader_ungradable=True, graded=True),
        TriageItem(
            "g", "g.jpg", _summary("g", SPREAD, gradable=0.1), grader_dr=0, graded=True
        ),  # gate fails
    ]


def test_scores_are_hand_computed() -> None:
    h = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9))
    assert uncertainty(_summary("d", MOSTLY_4)) == pytest.approx(h)
    assert uncertainty(_summary("b", SPLIT_1_2)) == pytest.approx(math.log(2))
    assert disagreement(_summary("a", CERTAIN_0), 4) == pytest.approx(4.0)
    assert disagreement(_summary("d", MOSTLY_4), 4) == pytest.approx(0.1)
    assert disagreement(_summary("b", SPLIT_1_2), None) is None
    assert referable_straddle(_summary("c", SPREAD)) == pytest.approx(0.4)
    assert referable_straddle(_summary("b", SPLIT_1_2)) == pytest.approx(0.5)
    assert referable_straddle(_summary("a", CERTAIN_0)) == pytest.approx(0.0)


def test_uncertainty_order() -> None:
    ranked = rank(_items(), TriageOrder.UNCERTAINTY)
    # ln5 = 1.609 > ln2 = 0.693 > H(0.1, 0.9) = 0.325 > 0
    assert [r.item.sha256 for r in ranked] == ["c", "b", "d", "a"]
    assert ranked[0].score == pytest.approx(math.log(5))


def test_disagreement_order_needs_a_grader_grade() -> None:
    ranked = rank(_items(), TriageOrder.DISAGREEMENT)
    # a: |0 - 4| = 4; b: |1.5 - 1| = 0.5; d: |3.9 - 4| = 0.1; c has no grader grade
    assert [(r.item.sha256, round(r.score, 6)) for r in ranked] == [
        ("a", 4.0),
        ("b", 0.5),
        ("d", 0.1),
    ]


def test_referable_order_and_limit() -> None:
    ranked = rank(_items(), TriageOrder.REFERABLE)
    # b: min(0.5, 0.5) = 0.5; c: min(0.6, 0.4) = 0.4; d: min(1, 0) = 0; a: 0 (tie by path)
    assert [r.item.sha256 for r in ranked] == ["b", "c", "a", "d"]
    assert [r.item.sha256 for r in rank(_items(), TriageOrder.REFERABLE, limit=2)] == ["b", "c"]


def test_ungradable_images_never_enter_the_queue() -> None:
    for order in TriageOrder:
        shas = {r.item.sha256 for r in rank(_items(), order)}
        assert not shas & {"e", "f", "g"}


def test_the_top_of_a_big_queue_is_the_head_of_the_full_ranking() -> None:
    spreads = [(0.5 + i % 7 / 20, 0.5 - i % 7 / 20, 0.0, 0.0, 0.0) for i in range(300)]
    items = [
        TriageItem(f"{i:03d}", f"{i:03d}.jpg", _summary(f"{i:03d}", p), grader_dr=i % 5)
        for i, p in enumerate(spreads)
    ] + _items()
    for order in TriageOrder:
        full = rank(items, order)
        top, size = rank_top(items, order, limit=25)
        assert size == len(full) > 25  # the whole queue is counted, ungradable ones left out
        assert top == full[:25]  # same scores, same ties broken by path
    assert rank_top(items, TriageOrder.UNCERTAINTY, limit=0) == ([], len(items) - 3)


def test_the_sample_holds_only_ungraded_images_in_a_fixed_order_without_a_model() -> None:
    shas = [f"{n:02x}" * 32 for n in (200, 7, 91, 150)]
    items = [
        TriageItem(shas[0], "a.jpg", None),
        TriageItem(shas[1], "b.jpg", None, graded=True, grader_dr=0),  # already graded
        TriageItem(shas[2], "c.jpg", _summary(shas[2], SPREAD)),
        TriageItem(shas[3], "d.jpg", None, graded=True, grader_ungradable=True),
    ]
    ranked = rank(items, TriageOrder.SAMPLE)
    # No prediction is needed (blind-first can show it); graded images are left out.
    assert [r.item.path for r in ranked] == ["c.jpg", "a.jpg"]  # 0x5b... before 0xc8...
    assert rank(list(reversed(items)), TriageOrder.SAMPLE) == ranked


def test_heads_are_listed_dr_first_whatever_order_they_were_stored_in() -> None:
    stored = Prediction("s", "m", {"amd": AMD, "dr": CERTAIN_0, "arter": (0.5, 0.5)})
    assert list(summarize(stored).heads) == ["dr", "amd", "arter"]
