"""report.json schema round trip and the promotion gate arithmetic."""

from __future__ import annotations

import dataclasses
import json

import pytest

from training.protocol.gate_rules import combine_checks, decide_gate, is_interval_verdict
from training.protocol.report import (
    EpochRecord,
    GateCheck,
    HeadReport,
    ModelEvaluation,
    ReferableReport,
    Report,
    ReportError,
    report_from_json,
    report_to_json,
)


def _head(task: str, qwk: float | None, sens: float | None = None) -> HeadReport:
    referable = ReferableReport(n=10, positives=4, sensitivity=sens, specificity=0.5, auc=None)
    return HeadReport(
        task=task,
        classes=("a", "b", "c"),
        n=10,
        accuracy=0.5,
        qwk=qwk,
        macro_f1=0.4,
        auc=None,
        nll=1.0,
        ece=0.1,
        ece_mass=0.12,
        temperature=1.5,
        nll_calibrated=0.9,
        ece_calibrated=0.05,
        ece_mass_calibrated=0.06,
        per_class_recall=(1.0, None, 0.0),
        confusion=((1, 0, 0), (0, 0, 0), (1, 0, 0)),
        reliability=((0.5, 1.0, 2), (None, None, 0)),
        referable=referable if task == "dr" else None,
    )


def _eval(dr_qwk: float | None, amd_qwk: float | None, sens: float | None) -> ModelEvaluation:
    return ModelEvaluation(
        model_id="a" * 64,
        model_name="m",
        split="holdout",
        n_images=20,
        heads=(_head("dr", dr_qwk, sens), _head("amd", amd_qwk)),
    )


def test_report_round_trips_through_json() -> None:
    report = Report(
        kind="finetune",
        run_id="r",
        created_at="2026-01-01T00:00:00+00:00",
        manifest_digest="d",
        model=_eval(0.8, 0.7, 0.9),
        parent=_eval(0.79, 0.71, 0.9),
        gate=decide_gate(_eval(0.79, 0.71, 0.9), _eval(0.8, 0.7, 0.9)),
        plots={"learning_curves": "plots/learning_curves.png"},
        history=(EpochRecord("student", 0, 1.0, None, 1e-5),),
        notes=("n",),
    )
    text = report_to_json(report)
    assert report_from_json(text) == report
    assert json.loads(text)["model"]["heads"][0]["referable"]["sensitivity"] == 0.9


def test_non_finite_metrics_become_null() -> None:
    head = dataclasses.replace(_head("amd", 0.5), auc=float("nan"))
    model = dataclasses.replace(_eval(0.5, 0.5, 0.5), heads=(head,))
    report = Report(kind="evaluate", run_id="r", created_at="t", manifest_digest="d", model=model)
    assert json.loads(report_to_json(report))["model"]["heads"][0]["auc"] is None


def test_report_from_json_rejects_bad_input() -> None:
    with pytest.raises(ReportError):
        report_from_json("{")
    with pytest.raises(ReportError, match="newer"):
        report_from_json('{"schema": 99}')
    good = json.loads(
        report_to_json(
            Report(
                kind="evaluate",
                run_id="r",
                created_at="t",
                manifest_digest="d",
                model=_eval(1, 1, 1),
            )
        )
    )
    good["model"]["heads"][0]["n"] = "ten"
    with pytest.raises(ReportError, match="heads"):
        report_from_json(json.dumps(good))
    del good["model"]
    with pytest.raises(ReportError, match="missing field 'model'"):
        report_from_json(json.dumps(good))


@pytest.mark.parametrize(
    ("parent", "candidate", "passed"),
    [
        ((0.80, 0.70, 0.9), (0.80, 0.70, 0.9), True),  # identical model passes
        ((0.80, 0.70, 0.9), (0.7901, 0.70, 0.9), True),  # drop 0.0099 <= delta
        ((0.80, 0.70, 0.9), (0.7899, 0.70, 0.9), False),  # drop 0.0101 > delta
        ((0.80, 0.70, 0.9), (0.80, 0.65, 0.9), False),  # AMD drops
        ((0.80, 0.70, 0.9), (0.95, 0.90, 0.89), False),  # sensitivity drops even slightly
        ((0.80, 0.70, 0.9), (0.80, 0.70, 1.0), True),
        ((0.80, 0.70, 0.9), (None, 0.70, 0.9), False),  # candidate not measurable
        ((None, 0.70, None), (0.1, 0.70, 0.0), True),  # parent not measurable: not compared
    ],
)
def test_gate_verdict(
    parent: tuple[float | None, ...], candidate: tuple[float | None, ...], passed: bool
) -> None:
    verdict = decide_gate(_eval(*parent), _eval(*candidate), max_qwk_drop=0.01)
    assert verdict.passed is passed
    assert {c.name for c in verdict.checks} == {"qwk_drop", "referable_sensitivity"}
    assert all(c.message for c in verdict.checks)


def test_gate_refuses_different_splits() -> None:
    other = dataclasses.replace(_eval(1, 1, 1), split="test")
    with pytest.raises(ReportError):
        decide_gate(_eval(1, 1, 1), other)


def test_a_report_written_before_the_interval_gate_still_loads() -> None:
    report = Report(
        kind="finetune",
        run_id="r",
        created_at="t",
        manifest_digest="d",
        model=_eval(0.8, 0.7, 0.9),
        parent=_eval(0.79, 0.71, 0.9),
        gate=decide_gate(_eval(0.79, 0.71, 0.9), _eval(0.8, 0.7, 0.9)),
    )
    data = json.loads(report_to_json(report))
    for key in ("status", "confidence", "resamples"):
        del data["gate"][key]
    for check in data["gate"]["checks"]:
        for key in ("domain", "n", "difference", "ci_low", "ci_high", "insufficient", "needed"):
            del check[key]
    old = report_from_json(json.dumps(data))
    assert old == report and old.gate is not None and old.gate.passed
    assert not is_interval_verdict(old.gate)  # the app recomputes it with decide_gate


def _check(passed: bool, insufficient: bool = False) -> GateCheck:
    return GateCheck("qwk", "dr", 0.5, 0.5, 0.1, passed, "m", insufficient=insufficient)


@pytest.mark.parametrize(
    ("checks", "status"),
    [
        ((_check(True), _check(True)), "passed"),
        ((_check(True), _check(False, insufficient=True)), "insufficient"),
        ((_check(False), _check(False, insufficient=True)), "failed"),  # failure beats thin data
        ((), "insufficient"),
    ],
)
def test_combine_checks_status_rule(checks: tuple[GateCheck, ...], status: str) -> None:
    verdict = combine_checks(checks, confidence=0.95, resamples=1000)
    assert verdict.status == status and verdict.passed is (status == "passed")
    assert verdict.promotable is (status == "passed") and is_interval_verdict(verdict)


def test_a_sall_report_names_its_teachers_and_older_reports_still_load() -> None:
    report = Report(
        kind="sall",
        run_id="r",
        created_at="t",
        manifest_digest="d",
        model=_eval(0.8, 0.7, 0.9),
        teachers={"dr": "teacher-dr/ckpt/e0001", "amd": "teacher-amd/ckpt/e0000"},
        teacher_ids={"dr": "a" * 64, "amd": "b" * 64},
    )
    data = json.loads(report_to_json(report))
    assert data["teachers"]["amd"] == "teacher-amd/ckpt/e0000"
    assert report_from_json(json.dumps(data)) == report
    # A report written before the field: no teachers, nothing else changes.
    del data["teachers"], data["teacher_ids"]
    old = report_from_json(json.dumps(data))
    assert old.teachers == {} and old.teacher_ids == {}
    assert old == dataclasses.replace(report, teachers={}, teacher_ids={})
