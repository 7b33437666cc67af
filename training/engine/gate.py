"""The promotion gate: paired bootstrap non-inferiority of a candidate against its parent.

A point comparison of two QWKs on one hold-out cannot tell an improvement from noise, and it
says nothing about the domain the parent was trained on. So parent and candidate are scored on
the same images of each set (the clinic's locked hold-out and the parent's reference set, which
shows forgetting); per head, the difference candidate - parent gets a paired percentile
bootstrap interval (the same resampled images for both models, so the image-to-image variation
they share cancels). A check passes when the interval's lower bound is at or above minus its
margin: the candidate is shown to be not much worse. Sets too small to decide are
``insufficient``, never a pass. Metrics: QWK of the argmax grade per head, and for ``dr`` the
referable-DR sensitivity at calibrated P(ICDR >= 2) >= 0.5, as the app and
:func:`training.engine.evaluate.head_report` compute it. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from training.engine.calibration import softmax
from training.protocol.config import TaskConfig
from training.protocol.gate_rules import combine_checks
from training.protocol.report import (
    REFERABLE_DR_MIN,
    GateCheck,
    GateDomain,
    GateVerdict,
)

_DOMAINS: tuple[GateDomain, ...] = ("holdout", "reference")
_SHOWN = {"holdout": "hold-out", "reference": "reference"}
_MISSING = {
    "holdout": "no hold-out set, so there are no images to judge the candidate on",
    "reference": (
        "no reference set recorded with the parent model, so forgetting cannot be ruled out"
    ),
}


@dataclass(frozen=True)
class PairedSet:
    """Parent and candidate outputs on the same images of one set, row for row.

    Attributes:
        domain: ``holdout`` (the clinic's locked hold-out) or ``reference`` (the parent's domain).
        tasks: the heads, in the column order of ``labels``.
        labels: ``[N, K]`` int64 ground truth, -1 = no ground truth for that head.
        parent_logits: head -> ``[N, C]`` raw logits of the parent.
        candidate_logits: head -> ``[N, C]`` raw logits of the candidate on the same rows.
        parent_temperatures: head -> the parent's calibration temperature (1.0 if absent).
        candidate_temperatures: head -> the candidate's calibration temperature (1.0 if absent).
    """

    domain: GateDomain
    tasks: Sequence[TaskConfig]
    labels: NDArray[np.int64]
    parent_logits: dict[str, NDArray[np.float64]]
    candidate_logits: dict[str, NDArray[np.float64]]
    parent_temperatures: dict[str, float]
    candidate_temperatures: dict[str, float]

    def __post_init__(self) -> None:
        if self.domain not in _DOMAINS:
            raise ValueError(f"unknown gate domain {self.domain!r}")
        labels = np.asarray(self.labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError("labels must be integers")
        if labels.ndim != 2 or labels.shape[1] != len(self.tasks):
            raise ValueError(f"labels must be [N, {len(self.tasks)}], got {labels.shape}")
        n = labels.shape[0]
        for k, task in enumerate(self.tasks):
            c = task.num_classes
            if labels[:, k].min(initial=-1) < -1 or labels[:, k].max(initial=-1) >= c:
                raise ValueError(f"{task.name} labels must lie in -1..{c - 1}")
            for who, logits in (
                ("parent", self.parent_logits),
                ("candidate", self.candidate_logits),
            ):
                z = logits.get(task.name)
                if z is None or np.shape(z) != (n, c):
                    got = None if z is None else np.shape(z)
                    raise ValueError(f"{who} {task.name} logits must be [{n}, {c}], got {got}")
                if not np.isfinite(z).all():
                    raise ValueError(f"{who} {task.name} logits are not all finite")


@dataclass(frozen=True)
class GateRule:
    """Margins, minimum evidence and bootstrap settings of the gate.

    Attributes:
        qwk_margin: largest QWK loss per head still called non-inferior.
        sensitivity_margin: largest referable-DR sensitivity loss still called non-inferior.
        min_images: images with a label for a head below which its check is not decided.
        min_referable: referable DR positives (ICDR >= 2) below which sensitivity is not decided.
        resamples: bootstrap resamples per set.
        confidence: two-sided confidence level of the intervals.
        seed: bootstrap seed (the verdict is reproducible).
    """

    qwk_margin: float = 0.10
    sensitivity_margin: float = 0.10
    min_images: int = 60
    min_referable: int = 15
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.qwk_margin >= 0 and self.sensitivity_margin >= 0):
            raise ValueError("gate margins must be >= 0")
        if min(self.min_images, self.min_referable, self.resamples) < 1 or self.seed < 0:
            raise ValueError("min_images, min_referable and resamples must be >= 1, seed >= 0")
        if not 0 < self.confidence < 1:
            raise ValueError("confidence must lie in (0, 1)")


def qwk(confusion: NDArray[np.float64]) -> NDArray[np.float64]:
    """Quadratic weighted kappa of ``[..., C, C]`` confusion matrices (rows = truth).

    Vectorised over leading axes so that all bootstrap resamples are scored at once; counts may
    be weighted. ``NaN`` where undefined (no row, or no expected disagreement). Agrees with
    ``sklearn.metrics.cohen_kappa_score(weights="quadratic")`` and ``model_zoo.metrics``.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    idx = np.arange(cm.shape[-1], dtype=np.float64)
    w = (idx[:, None] - idx[None, :]) ** 2  # the (C - 1)^2 normalisation cancels
    rows, cols, n = cm.sum(axis=-1), cm.sum(axis=-2), cm.sum(axis=(-2, -1))
    observed = np.einsum("...ij,ij->...", cm, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.einsum("...i,ij,...j->...", rows, w, cols) / n
        out: NDArray[np.float64] = np.where(expected > 0, 1.0 - observed / expected, np.nan)
    return out


def _resample_counts(n: int, rule: GateRule, domain: GateDomain) -> NDArray[np.float64]:
    """``[B, n]``: how often each image is drawn in each resample (same draws for both models).

    Seeded per domain, so the hold-out's intervals do not depend on whether a reference exists.
    """
    rng = np.random.default_rng([rule.seed, _DOMAINS.index(domain)])
    draws = rng.integers(0, n, size=(rule.resamples, n))
    draws += np.arange(rule.resamples)[:, None] * n
    counts = np.bincount(draws.ravel(), minlength=rule.resamples * n)
    return counts.reshape(rule.resamples, n).astype(np.float64)


def _signed(x: float, digits: int) -> str:
    text = f"{x:+.{digits}f}"
    return text.replace("-", "\u2212") if float(text) != 0 else text.replace("-", "+")


def _decided(
    what: str,
    values: tuple[float, float],
    diffs: NDArray[np.float64],
    margin: float,
    rule: GateRule,
) -> tuple[bool, float, float, float, str]:
    """Difference, percentile interval and the one-line verdict of a decidable check."""
    p, c = values
    alpha = 1.0 - rule.confidence
    finite = diffs[np.isfinite(diffs)]
    low, high = (float(v) for v in np.quantile(finite, [alpha / 2, 1 - alpha / 2]))
    ok = low >= -margin
    d = 3 if round(low, 2) == round(-margin, 2) else 2  # never print "CI -0.10, margin -0.10: fail"
    msg = (
        f"{what} {p:.2f} \u2192 {c:.2f}, difference {_signed(c - p, 2)} "
        f"({rule.confidence * 100:g} % CI {_signed(low, d)} to {_signed(high, d)}), "
        f"margin {_signed(-margin, d)}: {'pass' if ok else 'fail'}"
    )
    return ok, c - p, low, high, msg


def _check(
    name: str,
    task: str,
    domain: GateDomain,
    n: int,
    values: tuple[float, float],
    margin: float,
    diffs: NDArray[np.float64] | None,
    why_not: str,
    needed: int,
    rule: GateRule,
) -> GateCheck:
    """One check: decided from ``diffs``, or insufficient with ``why_not`` said to the reader."""
    what = f"{_SHOWN[domain]} \u00b7 " + (
        f"{task.upper()} QWK" if name == "qwk" else "referable DR sensitivity"
    )
    p, c = (v if math.isfinite(v) else None for v in values)
    if not why_not and diffs is not None and p is not None and c is not None:
        if np.isfinite(diffs).any():
            ok, diff, low, high, msg = _decided(what, (p, c), diffs, margin, rule)
            return GateCheck(
                name, task, p, c, margin, ok, msg, domain, n, diff, low, high, False, needed
            )
        why_not = "no bootstrap resample could be scored"
    gap = c - p if p is not None and c is not None else None
    msg = f"{what} \u2014 {why_not}: insufficient"
    return GateCheck(name, task, p, c, margin, False, msg, domain, n, gap, None, None, True, needed)


def _judge_set(data: PairedSet, rule: GateRule) -> list[GateCheck]:
    """The checks of one set: QWK per head, and referable sensitivity for ``dr``."""
    labels = np.asarray(data.labels, dtype=np.int64)
    counts = _resample_counts(labels.shape[0], rule, data.domain) if labels.shape[0] else None
    checks: list[GateCheck] = []
    for k, task in enumerate(data.tasks):
        c, name = task.num_classes, task.name
        known = labels[:, k] >= 0
        y = labels[known, k]
        n = int(known.sum())
        weights = counts[:, known] if counts is not None else None
        z_p, z_c = data.parent_logits[name][known], data.candidate_logits[name][known]
        # QWK of the argmax grade (the temperature does not change an argmax).
        cells = [np.eye(c * c)[y * c + z.argmax(axis=1)] for z in (z_p, z_c)]
        point = tuple(float(qwk(cell.sum(axis=0).reshape(c, c))) for cell in cells)
        why_not = ""
        if n < rule.min_images:
            why_not = f"{n} graded images, at least {rule.min_images} needed to decide"
        elif np.unique(y).size < 2:
            why_not = f"all {n} graded images share one grade, so agreement cannot be measured"
        elif not all(math.isfinite(v) for v in point):
            why_not = "QWK is undefined on these images"
        diffs = None
        if not why_not and weights is not None:
            boot = [qwk((weights @ cell).reshape(-1, c, c)) for cell in cells]
            diffs = boot[1] - boot[0]
        checks.append(
            _check("qwk", name, data.domain, n, (point[0], point[1]), rule.qwk_margin, diffs,
                   why_not, rule.min_images, rule)
        )  # fmt: skip
        if name != "dr" or c <= REFERABLE_DR_MIN:
            continue
        positive = y >= REFERABLE_DR_MIN
        pos = int(positive.sum())
        hits = [
            (softmax(z[positive], temps.get(name, 1.0))[:, REFERABLE_DR_MIN:].sum(axis=1) >= 0.5)
            for z, temps in ((z_p, data.parent_temperatures), (z_c, data.candidate_temperatures))
        ]
        sens = tuple(float(h.mean()) if pos else math.nan for h in hits)
        why_not = ""
        if pos < rule.min_referable:
            why_not = (
                f"{pos} referable images (ICDR \u2265 {REFERABLE_DR_MIN}), "
                f"at least {rule.min_referable} needed to decide"
            )
        diffs = None
        if not why_not and weights is not None:
            w_pos = weights[:, positive]
            with np.errstate(divide="ignore", invalid="ignore"):
                boot = [(w_pos @ h.astype(np.float64)) / w_pos.sum(axis=1) for h in hits]
            diffs = boot[1] - boot[0]
        checks.append(
            _check("referable_sensitivity", "dr", data.domain, pos, (sens[0], sens[1]),
                   rule.sensitivity_margin, diffs, why_not, rule.min_referable, rule)
        )  # fmt: skip
    return checks


def judge(sets: Sequence[PairedSet], rule: GateRule) -> GateVerdict:
    """Decide whether the candidate is non-inferior to its parent on every set and head.

    Args:
        sets: at most one set per domain; a missing hold-out or reference set is itself an
            insufficient check (``holdout_set`` / ``reference_set``), never silently skipped.
        rule: margins, minimum evidence and bootstrap settings.

    Returns:
        ``failed`` if any check's interval crosses its margin; else ``insufficient`` if any
        check could not be decided; else ``passed``.
    """
    by_domain: Mapping[str, PairedSet] = {s.domain: s for s in sets}
    if len(by_domain) != len(sets):
        raise ValueError("judge takes at most one set per domain")
    checks: list[GateCheck] = []
    for domain in _DOMAINS:
        if domain in by_domain:
            checks.extend(_judge_set(by_domain[domain], rule))
        else:
            msg = f"{_SHOWN[domain]} \u00b7 {_MISSING[domain]}: insufficient"
            checks.append(
                GateCheck(f"{domain}_set", "all", None, None, 0.0, False, msg, domain,
                          insufficient=True, needed=rule.min_images)
            )  # fmt: skip
    return combine_checks(tuple(checks), confidence=rule.confidence, resamples=rule.resamples)


__all__ = ["GateRule", "PairedSet", "judge", "qwk"]
