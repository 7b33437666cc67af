"""The paired bootstrap non-inferiority gate on synthetic logits (numpy only, deterministic)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.metrics import cohen_kappa_score

from model_zoo.metrics import head_metrics, quadratic_weighted_kappa
from training.engine.calibration import softmax
from training.engine.gate import GateRule, PairedSet, judge, qwk
from training.protocol.config import DEFAULT_TASKS
from training.protocol.gate_rules import recheck_verdict
from training.protocol.report import (
    GateDomain,
    ModelEvaluation,
    Report,
    report_from_json,
    report_to_json,
)

RULE = GateRule(resamples=200)


def _labels(n: int, seed: int) -> NDArray[np.int64]:
    """DR and AMD grades, every grade present, about a third of DR referable."""
    rng = np.random.default_rng(seed)
    dr = rng.choice(5, size=n, p=[0.4, 0.25, 0.15, 0.1, 0.1])
    amd = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    return np.stack([dr, amd], axis=1).astype(np.int64)


def _logits(labels: NDArray[np.int64], error: float, seed: int) -> dict[str, NDArray[np.float64]]:
    """One-hot logits of the true grade (a random grade with probability ``error``), plus noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, task in enumerate(DEFAULT_TASKS):
        c = task.num_classes
        grade = np.where(labels[:, k] < 0, 0, labels[:, k])
        wrong = rng.random(len(grade)) < error
        grade = np.where(wrong, rng.integers(0, c, len(grade)), grade)
        out[task.name] = 4.0 * np.eye(c)[grade] + rng.normal(0, 0.5, (len(grade), c))
    return out


def _set(
    domain: GateDomain, n: int, parent_error: float, candidate_error: float, seed: int
) -> PairedSet:
    labels = _labels(n, seed)
    parent = _logits(labels, parent_error, seed + 1)
    candidate = parent if candidate_error == parent_error else _logits(labels, candidate_error, 7)
    temps = {"dr": 1.0, "amd": 1.0}
    return PairedSet(domain, DEFAULT_TASKS, labels, parent, candidate, temps, dict(temps))


def test_qwk_agrees_with_scikit_learn_and_model_zoo() -> None:
    rng = np.random.default_rng(0)
    for c in (2, 4, 5):
        y, p = rng.integers(0, c, 80), rng.integers(0, c, 80)
        p[:40] = y[:40]  # some agreement
        cm = np.zeros((c, c))
        np.add.at(cm, (y, p), 1)
        expected = cohen_kappa_score(y, p, weights="quadratic")
        assert float(qwk(cm)) == pytest.approx(expected, abs=1e-12)
        assert float(qwk(cm)) == pytest.approx(quadratic_weighted_kappa(y, p, c), abs=1e-12)
    stacked = qwk(np.stack([cm, 2 * cm, np.zeros((c, c))]))  # vectorised, weights, empty
    assert stacked[0] == pytest.approx(stacked[1]) and np.isnan(stacked[2])


def test_check_values_match_the_evaluation_report() -> None:
    data = _set("holdout", 120, 0.3, 0.2, seed=1)
    temps = {"dr": 2.5, "amd": 1.0}  # a temperature that moves referable decisions
    data = dataclasses.replace(data, parent_temperatures=temps)
    checks = {(c.name, c.task): c for c in judge([data], RULE).checks}
    y, z = data.labels[:, 0], data.parent_logits["dr"]
    assert checks["qwk", "dr"].parent == pytest.approx(
        cohen_kappa_score(y, z.argmax(1), weights="quadratic")
    )
    ref = head_metrics(y, softmax(z, 2.5), 5, referable_from=2)
    assert checks["referable_sensitivity", "dr"].parent == pytest.approx(
        ref["referable_sensitivity"]
    )
    assert checks["referable_sensitivity", "dr"].n == int((y >= 2).sum())


def test_identical_models_pass_with_a_zero_width_paired_interval() -> None:
    sets = [_set("holdout", 300, 0.3, 0.3, seed=1), _set("reference", 300, 0.2, 0.2, seed=2)]
    verdict = judge(sets, GateRule())
    assert verdict.status == "passed" and verdict.passed and verdict.promotable
    assert verdict.resamples == 1000 and verdict.confidence == 0.95
    assert len(verdict.checks) == 6  # 2 sets x (DR QWK, AMD QWK, referable sensitivity)
    for check in verdict.checks:
        assert (check.difference, check.ci_low, check.ci_high) == (0.0, 0.0, 0.0)
        assert check.passed and not check.insufficient and check.message.endswith(": pass")


def test_the_interval_is_paired_and_seeded() -> None:
    holdout = _set("holdout", 200, 0.4, 0.4, seed=3)
    y, z = holdout.labels[:, 0], holdout.parent_logits["dr"]
    fixed = np.flatnonzero(z.argmax(1) != y)[:8]  # the candidate corrects 8 of the parent's errors
    z_c = z.copy()
    z_c[fixed] = 4.0 * np.eye(5)[y[fixed]]
    holdout = dataclasses.replace(holdout, candidate_logits={**holdout.parent_logits, "dr": z_c})
    sets = [holdout, _set("reference", 200, 0.2, 0.2, seed=4)]
    first = judge(sets, RULE)
    assert first == judge(sets, RULE)  # seeded
    dr = first.checks[0]
    assert dr.difference is not None and dr.ci_low is not None and dr.ci_high is not None
    assert dr.ci_low <= dr.difference <= dr.ci_high
    # Unpaired resampling (independent images per model) would leave each model's own spread in
    # the interval; paired, the shared image-to-image variation cancels.
    rng = np.random.default_rng(0)
    cells = [np.eye(25)[y * 5 + m.argmax(1)] for m in (z, z_c)]
    unpaired = [
        qwk(np.stack([cell[rng.integers(0, 200, 200)].sum(0).reshape(5, 5) for _ in range(200)]))
        for cell in cells
    ]
    spread = np.quantile(unpaired[1] - unpaired[0], [0.025, 0.975])
    assert dr.ci_high - dr.ci_low < (spread[1] - spread[0]) / 3
    assert dr.message.startswith("hold-out \u00b7 DR QWK ")
    assert "(95 % CI +" in dr.message and "margin \u22120.10: pass" in dr.message


def test_a_tiny_holdout_is_insufficient_never_a_pass() -> None:
    sets = [_set("holdout", 2, 0.0, 0.0, seed=5), _set("reference", 300, 0.2, 0.2, seed=6)]
    verdict = judge(sets, RULE)
    assert verdict.status == "insufficient" and not verdict.passed and not verdict.promotable
    holdout = [c for c in verdict.checks if c.domain == "holdout"]
    assert all(c.insufficient and not c.passed and c.ci_low is None for c in holdout)
    dr = next(c for c in holdout if c.name == "qwk" and c.task == "dr")
    assert dr.n == 2 and dr.needed == 60
    assert dr.message == (
        "hold-out \u00b7 DR QWK \u2014 2 graded images, at least 60 needed to decide: insufficient"
    )
    sens = next(c for c in holdout if c.name == "referable_sensitivity")
    assert sens.needed == 15 and "at least 15 needed" in sens.message


def test_losing_the_reference_domain_fails_despite_a_holdout_gain() -> None:
    sets = [_set("holdout", 300, 0.5, 0.1, seed=7), _set("reference", 300, 0.1, 0.8, seed=8)]
    verdict = judge(sets, RULE)
    assert verdict.status == "failed" and not verdict.passed
    gains = [c for c in verdict.checks if c.domain == "holdout"]
    assert all(c.passed and c.ci_low is not None and c.ci_low > 0 for c in gains)
    lost = [c for c in verdict.checks if c.domain == "reference"]
    assert lost and all(not c.passed and not c.insufficient for c in lost)
    assert all(c.message.endswith(": fail") for c in lost)


def test_a_missing_reference_set_is_insufficient() -> None:
    verdict = judge([_set("holdout", 300, 0.3, 0.3, seed=9)], RULE)
    assert verdict.status == "insufficient" and not verdict.passed
    missing = [c for c in verdict.checks if c.domain == "reference"]
    assert [(c.name, c.insufficient, c.passed) for c in missing] == [("reference_set", True, False)]
    assert "no reference set recorded with the parent model" in missing[0].message
    with pytest.raises(ValueError, match="one set per domain"):
        judge([_set("holdout", 10, 0.3, 0.3, 1), _set("holdout", 10, 0.3, 0.3, 2)], RULE)


def test_single_grade_labels_are_insufficient_not_a_crash() -> None:
    data = _set("reference", 100, 0.3, 0.3, seed=10)
    labels = data.labels.copy()
    labels[:, 1] = 0  # every AMD label the same grade: QWK is not measurable
    labels[:, 0] = np.where(labels[:, 0] >= 2, -1, labels[:, 0])  # no referable DR
    verdict = judge(
        [_set("holdout", 100, 0.3, 0.3, 11), dataclasses.replace(data, labels=labels)], RULE
    )
    checks = {(c.name, c.task): c for c in verdict.checks if c.domain == "reference"}
    assert checks["qwk", "amd"].insufficient and "share one grade" in checks["qwk", "amd"].message
    assert checks["referable_sensitivity", "dr"].insufficient
    assert checks["referable_sensitivity", "dr"].parent is None
    assert verdict.status == "insufficient"


def test_a_verdict_with_intervals_round_trips_through_report_json() -> None:
    sets = [_set("holdout", 80, 0.3, 0.2, seed=12), _set("reference", 20, 0.2, 0.2, seed=13)]
    verdict = judge(sets, RULE)
    model = ModelEvaluation("a" * 64, "m", "holdout", 80, ())
    report = Report("finetune", "r", "t", "d", model, parent=model, gate=verdict)
    again = report_from_json(report_to_json(report))
    assert again == report and again.gate is not None
    assert any(c.ci_low is not None for c in again.gate.checks)
    assert any(c.insufficient for c in again.gate.checks)
    assert recheck_verdict(again.gate) == verdict  # the app's re-derivation agrees


def test_recheck_refuses_a_pass_the_interval_does_not_support() -> None:
    verdict = judge(
        [_set("holdout", 300, 0.1, 0.8, 14), _set("reference", 300, 0.2, 0.2, 15)], RULE
    )
    assert verdict.status == "failed"
    forged = dataclasses.replace(
        verdict,
        passed=True,
        status="passed",
        checks=tuple(dataclasses.replace(c, passed=True) for c in verdict.checks),
    )
    assert recheck_verdict(forged).status == "failed"
