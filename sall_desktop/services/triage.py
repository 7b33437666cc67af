"""Triage queue: which images should a grader look at next (pure functions, no I/O).

Three orderings, each "most informative first":

- **uncertainty**: the model's total predictive entropy over its heads (nats), high first;
- **disagreement**: the ordinal distance ``|E[DR grade] - grader's DR grade|`` between the
  model's expected ICDR grade and the grader's, large first (needs a grader grade);
- **referable**: the probability mass straddling the referable threshold,
  ``min(P(ICDR >= 2), P(ICDR < 2))`` in ``[0, 0.5]``, high first (0.5 = a coin toss);
- **sample**: the images nobody has graded yet, in a fixed pseudo-random order drawn from their
  SHA-256 (no model needed, so blind-first shows it too).

The first three are for *review*: they find images worth a second look. To teach the model,
grade the *sample*: on the loop benchmark (``docs/loop-benchmark.md``) corrections chosen by
uncertainty or by the referable threshold taught the one-click fine-tune less than the same
number chosen at random, because they crowd into a few hard, skewed cases.

Images the grader marked ungradable, or whose model quality gate fails, are kept out of the
queue: they need a better photograph, not a second opinion on a grade.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from sall_desktop.services.inference import REFERABLE_DR_MIN_GRADE, PredictionSummary


class TriageOrder(enum.StrEnum):
    UNCERTAINTY = "uncertainty"
    DISAGREEMENT = "disagreement"
    REFERABLE = "referable"
    SAMPLE = "sample"


ORDER_LABELS = {
    TriageOrder.UNCERTAINTY: "Review: most uncertain",
    TriageOrder.DISAGREEMENT: "Review: model vs you",
    TriageOrder.REFERABLE: "Review: near referable",
    TriageOrder.SAMPLE: "Teach: random sample",
}
"""Short enough for the triage column; :data:`ORDER_HINTS` says each in full."""

ORDER_HINTS = {
    TriageOrder.UNCERTAINTY: "Images whose model output is most uncertain (highest entropy) first",
    TriageOrder.DISAGREEMENT: "Images where the model's grade differs most from yours first",
    TriageOrder.REFERABLE: "Images whose P(referable DR) is nearest the referral threshold first",
    TriageOrder.SAMPLE: (
        "A random sample of ungraded images: grading these teaches the next fine-tune most "
        "(the review orderings pick images the model already finds hard)"
    ),
}


@dataclass(frozen=True, slots=True)
class TriageItem:
    """One image as the triage queue sees it.

    Attributes:
        sha256: the image; path: its file (for display).
        prediction: the active model's output, None when not graded by the model yet.
        grader_dr: the grader's ICDR grade, None when not graded (or no DR grade).
        grader_ungradable: the grader marked the image ungradable.
        graded: the grader has saved a grading of the image (any answer).
    """

    sha256: str
    path: str
    prediction: PredictionSummary | None
    grader_dr: int | None = None
    grader_ungradable: bool = False
    graded: bool = False


@dataclass(frozen=True, slots=True)
class Ranked:
    """An item with its score under one ordering (higher = more informative)."""

    item: TriageItem
    score: float


def uncertainty(prediction: PredictionSummary) -> float:
    """Total entropy of the heads' calibrated distributions, nats (0 = certain)."""
    return math.fsum(head.entropy for head in prediction.heads.values())


def disagreement(prediction: PredictionSummary, grader_dr: int | None) -> float | None:
    """``|E[DR] - grader DR|`` in ICDR steps, or None without a DR head or a grader grade."""
    dr = prediction.heads.get("dr")
    if dr is None or grader_dr is None:
        return None
    return abs(dr.expected_grade - grader_dr)


def referable_straddle(prediction: PredictionSummary) -> float | None:
    """``min(P(ICDR >= 2), P(ICDR < 2))``, or None without a 5-class DR head."""
    dr = prediction.heads.get("dr")
    if dr is None or len(dr.probabilities) != 5:
        return None
    referable = math.fsum(dr.probabilities[REFERABLE_DR_MIN_GRADE:])
    return min(referable, 1.0 - referable)


def sample_position(sha256: str) -> float:
    """The image's place in the random sample, in ``[0, 1)``: fixed by its bytes, so the
    sample does not reshuffle between sessions or workstations."""
    return int(sha256[:12], 16) / float(16**12)


def excluded(item: TriageItem) -> bool:
    """Ungradable by the grader or by the model's gate: kept out of the queue."""
    return item.grader_ungradable or (item.prediction is not None and item.prediction.gate_failed)


def score(item: TriageItem, order: TriageOrder) -> float | None:
    """The item's score under ``order``; None when it cannot be ranked by it."""
    if order is TriageOrder.SAMPLE:
        # Highest first: one minus the position keeps "most informative first" sorting.
        return None if item.graded or excluded(item) else 1.0 - sample_position(item.sha256)
    prediction = item.prediction
    if prediction is None or excluded(item):
        return None
    if order is TriageOrder.UNCERTAINTY:
        return uncertainty(prediction)
    if order is TriageOrder.DISAGREEMENT:
        return disagreement(prediction, item.grader_dr)
    return referable_straddle(prediction)


RankKey = tuple[float, str, str, TriageItem]
"""A scored item as it sorts: most informative first, ties by path, then SHA-256."""


def rank_key(item: TriageItem, value: float) -> RankKey:
    """The sort key of an item whose score under some ordering is ``value``."""
    return -value, item.path, item.sha256, item


def top(keys: Iterable[RankKey], limit: int | None = None) -> list[Ranked]:
    """The ``limit`` first of ``keys`` (all without a limit), ranked.

    With a limit only the top is sorted: the GUI re-ranks a folder while it is batch-graded,
    and a partial sort of the top is several times cheaper than a full sort of a big folder
    (see docs/benchmarks.md, "Figures formerly in docstrings").
    """
    chosen = sorted(keys) if limit is None else heapq.nsmallest(limit, keys)
    return [Ranked(key[3], -key[0]) for key in chosen]


def rank(
    items: Iterable[TriageItem], order: TriageOrder, *, limit: int | None = None
) -> list[Ranked]:
    """Rank ``items`` most informative first (ties by path, so the order is stable).

    Items without a model prediction, without the needed grader grade (disagreement), or
    excluded as ungradable are left out.
    """
    return rank_top(items, order, limit=limit)[0]


def rank_top(
    items: Iterable[TriageItem], order: TriageOrder, *, limit: int | None = None
) -> tuple[list[Ranked], int]:
    """The ``limit`` most informative items (all without a limit) and how many can be ranked."""
    keys = []
    for item in items:
        value = score(item, order)
        if value is not None:
            keys.append(rank_key(item, value))
    return top(keys, limit), len(keys)
