"""Screening-programme grading: levels, routing rules and how a final grade is reached.

A screening programme does not trust one grader
(docs/adr/0012-double-grading-levels-routing-final-grade.md).
Every image is graded at the *primary* level; an image the primary grader finds abnormal,
ungradable or referable, and a seeded sample of the normal ones, goes to a *secondary* grader who
sees neither the primary grade nor the model; when the two disagree in a way that changes the
outcome, an *arbiter* who is neither of them sees both grades and decides. The final grade is
derived from those gradings, never stored over them.

Pure functions and frozen values: the services decide *when* to call them, the store keeps the
decisions.
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass

from sall_desktop.domain.grades import REFERABLE_DR_MIN, GraderRole, Grading


class ProgrammeRole(enum.StrEnum):
    """What a grader may do in a programme. QA leads build test sets and read reports."""

    PRIMARY = "primary"
    SECONDARY = "secondary"
    ARBITER = "arbiter"
    QA = "qa"


LEVEL_ROLES: tuple[GraderRole, ...] = (GraderRole.PRIMARY, GraderRole.SECONDARY, GraderRole.ARBITER)
"""The grading levels, in the order an image passes through them."""


class Stage(enum.StrEnum):
    """A routing decision: the image is queued for this level."""

    SECONDARY = "secondary"
    ARBITRATION = "arbitration"


class HowReached(enum.StrEnum):
    """How an image's final grade was reached (exported with it)."""

    SINGLE = "single"
    """Graded once: a normal the sample did not pick."""
    AGREED = "agreed"
    """Primary and secondary agreed on the outcome; the secondary grade stands."""
    ARBITRATED = "arbitrated"
    """The arbiter's grade, after an outcome-changing disagreement."""
    PENDING = "pending"
    """Routed to a level that has not graded yet: no final grade."""


def is_referable(grading: Grading) -> bool:
    """Referable: ICDR >= 2 (moderate NPDR or worse), or exudates within 1 DD of the fovea (M1).

    An ungradable grading is not referable; it is its own outcome (U).
    """
    if not grading.gradable:
        return False
    return (grading.dr_grade or 0) >= REFERABLE_DR_MIN or grading.dme == 2


def has_any_dr(grading: Grading) -> bool:
    """Any DR: a gradable grading with ICDR >= 1."""
    return grading.gradable and (grading.dr_grade or 0) >= 1


def is_abnormal(grading: Grading) -> bool:
    """Anything a primary grader sends on: ungradable, any DR, any DME or any AMD."""
    if not grading.gradable:
        return True
    return any((value or 0) > 0 for value in (grading.dr_grade, grading.dme, grading.amd_grade))


@dataclass(frozen=True, slots=True)
class RoutingRules:
    """When an image goes to a second grader and when a disagreement goes to an arbiter.

    Args:
        normal_fraction: the share of normals sampled for second grading (at least this many:
            a running quota tops up the seeded draw).
        seed: the seed of the normal sample; the same seed picks the same images.
        dr_step: an ICDR difference of at least this many steps goes to arbitration even when
            both grades fall on the same side of referable.
        amd_step: the same for the AMD grade (0 turns it off).
    """

    normal_fraction: float = 0.10
    seed: int = 0
    dr_step: int = 2
    amd_step: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.normal_fraction <= 1.0:
            raise ValueError("normal_fraction must lie between 0 and 1")
        if self.dr_step < 1 or self.amd_step < 0:
            raise ValueError("dr_step must be at least 1 and amd_step at least 0")

    def draw(self, image_sha256: str) -> float:
        """The image's seeded uniform draw in [0, 1): the same image and seed, the same draw."""
        digest = hashlib.sha256(f"{self.seed}:{image_sha256}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    def samples_normal(self, image_sha256: str, *, normals_seen: int, sampled: int) -> bool:
        """Whether a normal image goes to second grading.

        Args:
            image_sha256: the normal image just graded.
            normals_seen: normals graded before it (routing decided).
            sampled: of those, how many were sampled.

        The seeded draw picks about ``normal_fraction``; when the running count falls behind
        ``ceil(normal_fraction * normals)`` the image is taken anyway, so the share sampled is
        never below the fraction (the programme standard is "at least 10 %").
        """
        if self.draw(image_sha256) < self.normal_fraction:
            return True
        return sampled < math.ceil(self.normal_fraction * (normals_seen + 1) - 1e-9)


def secondary_reason(primary: Grading) -> str:
    """Why a primary grading goes to second grading ("" when only the sample could pick it)."""
    if not primary.gradable:
        return "ungradable"
    if is_referable(primary):
        return "referable"
    if is_abnormal(primary):
        return "abnormal"
    return ""


def disagreement(first: Grading, second: Grading, rules: RoutingRules) -> str:
    """Why two gradings of one image must be arbitrated, or "" when they agree on the outcome."""
    if first.gradable != second.gradable:
        return "gradability"
    if not first.gradable:
        return ""
    if is_referable(first) != is_referable(second):
        return "referable"
    if has_any_dr(first) != has_any_dr(second):
        return "any DR"
    dr_a, dr_b = first.dr_grade, second.dr_grade
    if dr_a is not None and dr_b is not None and abs(dr_a - dr_b) >= rules.dr_step:
        return f"DR differs by {abs(dr_a - dr_b)}"
    amd_a, amd_b = first.amd_grade, second.amd_grade
    if rules.amd_step and amd_a is not None and amd_b is not None:
        if abs(amd_a - amd_b) >= rules.amd_step:
            return f"AMD differs by {abs(amd_a - amd_b)}"
    return ""


@dataclass(frozen=True, slots=True)
class Levels:
    """One image's gradings at each level, and where routing sent it.

    Args:
        primary / secondary / arbiter: the current grading at that level, or None.
        to_secondary / to_arbitration: routing decisions recorded for the image.
    """

    primary: Grading | None = None
    secondary: Grading | None = None
    arbiter: Grading | None = None
    to_secondary: bool = False
    to_arbitration: bool = False


@dataclass(frozen=True, slots=True)
class FinalGrade:
    """An image's final grade, derived from its levels (never stored over them).

    Attributes:
        grading: the grading that stands (None while pending or ungraded).
        how: single, agreed, arbitrated or pending.
        primary / secondary / arbiter: who graded at each level ("" for none).
    """

    grading: Grading | None
    how: HowReached
    primary: str = ""
    secondary: str = ""
    arbiter: str = ""


def final_grade(levels: Levels) -> FinalGrade | None:
    """The final grade of one image, or None when nobody has graded it at the primary level."""
    p, s, a = levels.primary, levels.secondary, levels.arbiter
    names = {
        "primary": p.grader if p else "",
        "secondary": s.grader if s else "",
        "arbiter": a.grader if a else "",
    }
    if a is not None:
        return FinalGrade(a, HowReached.ARBITRATED, **names)
    if p is None:
        return None
    if levels.to_arbitration:
        return FinalGrade(None, HowReached.PENDING, **names)
    if s is not None:
        return FinalGrade(s, HowReached.AGREED, **names)
    if levels.to_secondary:
        return FinalGrade(None, HowReached.PENDING, **names)
    return FinalGrade(p, HowReached.SINGLE, **names)
