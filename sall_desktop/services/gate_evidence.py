"""The promotion gate's evidence in words: table rows, statuses and why a candidate is refused.

The trainer decides the gate (``training.engine.gate``) and stores it in ``report.json``; the
app re-derives it (``services.training_jobs``). This module only says what the verdict means to
the person deciding: one row per check (set, metric, parent -> candidate, difference with its
confidence interval, margin, verdict), the status in words, and the one line that explains a
disabled Promote button. Reports written before the interval gate (no intervals,
``resamples == 0``) read as well, with "—" where they have no figure. Qt-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from sall_desktop.store import LabelStore
from training.protocol.gate_rules import is_interval_verdict, recheck_verdict
from training.protocol.report import (
    GateCheck,
    GateVerdict,
    ReportError,
    report_from_json,
)

STATUS_WORDS: dict[str, str] = {
    "passed": "passed",
    "failed": "failed",
    "insufficient": "not enough evidence",
}
"""A gate status as the GUI says it."""
SET_WORDS: dict[str, str] = {"holdout": "hold-out", "reference": "reference set"}
"""A check's ``domain`` as the GUI says it."""
GATE_FAILED = "Gate failed — cannot be promoted"
NOT_ENOUGH = "Not enough evidence — cannot be promoted"
_MINUS = "\u2212"


def _signed(x: float) -> str:
    text = f"{x:+.3f}"
    return text.replace("-", _MINUS) if float(text) != 0 else text.replace("-", "+")


def _value(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def metric_name(check: GateCheck) -> str:
    """``DR QWK``, ``referable DR sensitivity``, or ``—`` for a missing set."""
    if check.name in ("qwk", "qwk_drop"):
        return f"{check.task.upper()} QWK"
    if check.name == "referable_sensitivity":
        return "referable DR sensitivity"
    return "—"


def missing_evidence(check: GateCheck) -> str:
    """What an insufficient check lacks, e.g. "the hold-out needs at least 60 graded images
    (it has 14)"."""
    where = SET_WORDS.get(check.domain, check.domain)
    if check.name.endswith("_set"):
        if check.domain == "reference":
            return "the active model carries no reference set, so forgetting cannot be checked"
        return "there is no hold-out to judge the candidate on"
    if check.n < check.needed:
        what = "referable DR images" if check.name == "referable_sensitivity" else "graded images"
        return f"the {where} needs at least {check.needed} {what} (it has {check.n})"
    # Enough images, but the metric could not be measured (one grade only, undefined QWK...).
    why = check.message.split(" \u2014 ", 1)[-1].removesuffix(": insufficient").strip()
    return f"{where}, {metric_name(check)}: {why}" if why else f"{where}: cannot be decided"


def check_verdict(check: GateCheck) -> str:
    """``pass``, ``fail`` or ``not enough evidence``."""
    if check.insufficient:
        return "not enough evidence"
    return "pass" if check.passed else "fail"


@dataclass(frozen=True)
class CheckRow:
    """One gate check as the report view's table shows it (every field is display text).

    Attributes:
        set: ``hold-out`` or ``reference set``.
        metric: e.g. ``DR QWK``.
        images: images the metric was computed on (referable positives for sensitivity).
        values: ``parent → candidate``.
        difference: candidate - parent with its confidence interval, when there is one.
        margin: the largest drop still called non-inferior (negative, e.g. ``−0.100``).
        verdict: ``pass``, ``fail`` or ``not enough evidence (...)``.
        message: the trainer's one-line explanation (a tooltip).
        passed: the check passed; insufficient: it could not be decided.
    """

    set: str
    metric: str
    images: str
    values: str
    difference: str
    margin: str
    verdict: str
    message: str
    passed: bool
    insufficient: bool


def check_row(check: GateCheck, confidence: float) -> CheckRow:
    """The table row of one check (``confidence`` of the verdict's intervals)."""
    diff = check.difference
    if diff is None and check.parent is not None and check.candidate is not None:
        diff = check.candidate - check.parent  # a report from before the interval gate
    difference = "—" if diff is None else _signed(diff)
    if check.ci_low is not None and check.ci_high is not None:
        difference += (
            f" ({confidence * 100:g} % CI {_signed(check.ci_low)} to {_signed(check.ci_high)})"
        )
    values = "—"
    if check.parent is not None or check.candidate is not None:
        values = f"{_value(check.parent)} → {_value(check.candidate)}"
    # A missing set has no images; a report before the interval gate recorded no count.
    no_count = check.name.endswith("_set") or (check.n == 0 and not check.insufficient)
    verdict = check_verdict(check)
    if check.insufficient:
        verdict += f": {missing_evidence(check)}"
    return CheckRow(
        set=SET_WORDS.get(check.domain, check.domain),
        metric=metric_name(check),
        images="—" if no_count else str(check.n),
        values=values,
        difference=difference,
        margin="—" if check.name.endswith("_set") else _signed(-check.allowed_drop),
        verdict=verdict,
        message=check.message,
        passed=check.passed,
        insufficient=check.insufficient,
    )


def check_rows(verdict: GateVerdict | None) -> list[CheckRow]:
    """One row per check, hold-out first, then the reference set (the trainer's order)."""
    if verdict is None:
        return []
    order = {"holdout": 0, "reference": 1}
    checks = sorted(verdict.checks, key=lambda c: order.get(c.domain, 2))  # stable
    return [check_row(c, verdict.confidence) for c in checks]


def refusal(status: str | None, verdict: GateVerdict | None = None) -> str:
    """Why a candidate with this gate ``status`` cannot be promoted; ``""`` when it can.

    Args:
        status: ``passed``, ``failed``, ``insufficient``, or None (not gated).
        verdict: the checks, to say which evidence is missing (optional).
    """
    if status == "passed":
        return ""
    if status == "insufficient":
        lacking = [c for c in (verdict.checks if verdict else ()) if c.insufficient]
        return f"{NOT_ENOUGH}: {missing_evidence(lacking[0])}" if lacking else NOT_ENOUGH
    if status == "failed":
        return GATE_FAILED
    return "Not gated — cannot be promoted"


def promotion_refusal(
    status: str | None, *, model_active: bool, verdict: GateVerdict | None = None
) -> str:
    """Why a version with gate ``status`` cannot be promoted now, in one line; ``""`` if it can.

    Only a passed gate allows a promotion; there is no override. A version that was never
    gated (``status`` None: imported or bundled) may become the active model only while no
    model is active: there is then nothing to judge it against.
    """
    if status is None and not model_active:
        return ""
    if status is None:
        return (
            "Not gated — cannot be promoted: only a fine-tune that passed the gate against the "
            "active model can replace it"
        )
    return refusal(status, verdict)


def stored_verdict(store: LabelStore, run_id: str) -> GateVerdict | None:
    """The gate verdict in the stored report of training run ``run_id`` (None without one).

    An interval verdict is re-derived from its own intervals and margins, as when the run
    ended; an older one is returned as stored (for its wording only: whether a version may be
    promoted is the gate result stored with the version).
    """
    run = store.get_training_run(run_id) if run_id else None
    if run is None or not run.report_json:
        return None
    try:
        gate = report_from_json(run.report_json).gate
    except ReportError:
        return None
    return recheck_verdict(gate) if is_interval_verdict(gate) else gate


__all__ = [
    "GATE_FAILED",
    "NOT_ENOUGH",
    "SET_WORDS",
    "STATUS_WORDS",
    "CheckRow",
    "check_row",
    "check_rows",
    "check_verdict",
    "metric_name",
    "missing_evidence",
    "promotion_refusal",
    "refusal",
    "stored_verdict",
]
