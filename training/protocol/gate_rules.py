"""The promotion gate's rules over stored reports: how checks combine into a verdict, how a
stored interval verdict is re-derived, and the pre-interval rule old reports were judged by.

Standard library only, so the app re-reads verdicts without numpy or torch; the intervals
themselves are computed by :mod:`training.engine.gate`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TypeGuard

from training.protocol.report import (
    SENSITIVITY_TOLERANCE,
    GateCheck,
    GateStatus,
    GateVerdict,
    ModelEvaluation,
    ReportError,
)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def combine_checks(
    checks: tuple[GateCheck, ...], *, confidence: float, resamples: int
) -> GateVerdict:
    """The verdict of a set of checks: the one place the gate's status rule lives.

    ``failed`` if any decided check failed (evidence against the candidate outweighs missing
    evidence elsewhere); else ``insufficient`` if any check could not be decided, or there is
    no check at all; else ``passed``. Only ``passed`` sets ``passed``.
    """
    if any(not c.passed and not c.insufficient for c in checks):
        status: GateStatus = "failed"
    elif not checks or any(c.insufficient for c in checks):
        status = "insufficient"
    else:
        status = "passed"
    return GateVerdict(
        passed=status == "passed",
        checks=checks,
        status=status,
        confidence=confidence,
        resamples=resamples,
    )


def recheck_verdict(stored: GateVerdict) -> GateVerdict:
    """Re-derive a stored confidence-interval verdict from its own figures.

    Each check passes only if it was decidable and its interval's lower bound lies at or above
    minus its margin; the status then follows :func:`combine_checks`. A ``report.json`` whose
    stored flags disagree with its numbers (edited by hand, or written by a faulty trainer)
    therefore cannot show a pass that its intervals do not support.

    Args:
        stored: a verdict written by the interval gate (``resamples > 0``).
    """
    checks = tuple(
        dataclasses.replace(
            c,
            passed=not c.insufficient
            and c.ci_low is not None
            and math.isfinite(c.ci_low)
            and c.ci_low >= -c.allowed_drop,
        )
        for c in stored.checks
    )
    return combine_checks(checks, confidence=stored.confidence, resamples=stored.resamples)


def is_interval_verdict(verdict: GateVerdict | None) -> TypeGuard[GateVerdict]:
    """Whether ``verdict`` was written by the interval gate (it has bootstrap resamples)."""
    return verdict is not None and verdict.resamples > 0


def decide_gate(
    parent: ModelEvaluation, candidate: ModelEvaluation, *, max_qwk_drop: float = 0.01
) -> GateVerdict:
    """Apply the pre-CI promotion gate (issue 4, R12), kept for reports written before the CI gate.

    It compares point estimates on one hold-out, ignores its size and the reference domain, so
    it cannot tell a real improvement from noise; new runs use ``training.engine.gate.judge``.

    The candidate passes only if, on the same hold-out, no head's QWK is lower than the parent's
    by more than ``max_qwk_drop`` and the referable-DR sensitivity is not lower at all. A metric
    the candidate cannot be scored on while the parent could (``None``) fails its check.

    Args:
        parent: the active model's evaluation.
        candidate: the fine-tuned model's evaluation on the same split.
        max_qwk_drop: delta, the tolerated QWK decrease per head (>= 0).

    Returns:
        The verdict with one check per head plus the sensitivity check when a ``dr`` head exists.
    """
    if parent.split != candidate.split:
        raise ReportError(f"gate compares different splits: {parent.split} vs {candidate.split}")
    checks: list[GateCheck] = []
    for head in candidate.heads:
        before = parent.head(head.task)
        p = _finite(before.qwk) if before else None
        c = _finite(head.qwk)
        if p is None:
            ok, msg = True, f"{head.task}: parent QWK undefined on the hold-out; not compared"
        elif c is None:
            ok, msg = False, f"{head.task}: candidate QWK undefined, parent {p:.4f}"
        else:
            ok = c >= p - max_qwk_drop
            msg = f"{head.task}: QWK {p:.4f} -> {c:.4f} (allowed drop {max_qwk_drop:g})"
        checks.append(GateCheck("qwk_drop", head.task, p, c, max_qwk_drop, ok, msg))
    dr = candidate.head("dr")
    dr_parent = parent.head("dr")
    if dr is not None and dr_parent is not None:
        p = _finite(dr_parent.referable.sensitivity) if dr_parent.referable else None
        c = _finite(dr.referable.sensitivity) if dr.referable else None
        if p is None:
            ok, msg = True, "referable DR: no referable image in the hold-out; not compared"
        elif c is None:
            ok, msg = False, f"referable DR: candidate sensitivity undefined, parent {p:.4f}"
        else:
            ok = c >= p - SENSITIVITY_TOLERANCE
            msg = f"referable DR: sensitivity {p:.4f} -> {c:.4f} (must not drop)"
        checks.append(GateCheck("referable_sensitivity", "dr", p, c, 0.0, ok, msg))
    passed = all(c.passed for c in checks)
    return GateVerdict(passed=passed, checks=tuple(checks), status="passed" if passed else "failed")


__all__ = ["combine_checks", "decide_gate", "is_interval_verdict", "recheck_verdict"]
