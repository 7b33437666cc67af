"""The gate's evidence in words: rows per check for both sets, statuses, why Promote is refused;
reports from before the interval gate stay readable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sall_desktop.services import gate_evidence
from sall_desktop.store import open_store
from sall_desktop.store.models_repository import TrainingRunRow
from training.protocol.gate_rules import combine_checks
from training.protocol.report import GateCheck, GateVerdict

HOLDOUT_QWK = GateCheck(
    "qwk", "dr", 0.80, 0.70, 0.10, False,
    "hold-out · DR QWK 0.80 → 0.70, difference −0.10 (95 % CI −0.18 to −0.03), margin −0.10: fail",
    "holdout", 120, -0.10, -0.18, -0.03,
)  # fmt: skip
HOLDOUT_SENS = GateCheck(
    "referable_sensitivity", "dr", 0.9, 0.9, 0.10, False,
    "hold-out · referable DR sensitivity — 4 referable images (ICDR ≥ 2), at least 15 needed "
    "to decide: insufficient",
    "holdout", 4, 0.0, None, None, True, 15,
)  # fmt: skip
REFERENCE_QWK = GateCheck(
    "qwk", "amd", 0.60, 0.62, 0.10, True, "reference · AMD QWK ...: pass",
    "reference", 200, 0.02, -0.03, 0.07,
)  # fmt: skip
NO_REFERENCE = GateCheck(
    "reference_set", "all", None, None, 0.0, False,
    "reference · no reference set recorded with the parent model, so forgetting cannot be "
    "ruled out: insufficient",
    "reference", insufficient=True, needed=60,
)  # fmt: skip


def _verdict(*checks: GateCheck) -> GateVerdict:
    return combine_checks(checks, confidence=0.95, resamples=1000)


def test_rows_show_set_metric_values_interval_margin_and_verdict_for_both_sets() -> None:
    rows = gate_evidence.check_rows(_verdict(REFERENCE_QWK, HOLDOUT_QWK, HOLDOUT_SENS))
    assert [(r.set, r.metric) for r in rows] == [
        ("hold-out", "DR QWK"),
        ("hold-out", "referable DR sensitivity"),
        ("reference set", "AMD QWK"),
    ]
    failed, thin, passed = rows
    assert failed.values == "0.800 → 0.700" and failed.images == "120"
    assert failed.difference == "−0.100 (95 % CI −0.180 to −0.030)"
    assert failed.margin == "−0.100" and failed.verdict == "fail"
    assert thin.verdict == (
        "not enough evidence: the hold-out needs at least 15 referable DR images (it has 4)"
    )
    assert thin.difference == "+0.000" and thin.insufficient
    assert passed.difference == "+0.020 (95 % CI −0.030 to +0.070)" and passed.verdict == "pass"


def test_a_missing_reference_set_is_said_plainly() -> None:
    (row,) = gate_evidence.check_rows(_verdict(NO_REFERENCE))
    assert row.set == "reference set" and row.metric == "—" and row.images == "—"
    assert row.margin == "—" and row.values == "—"
    assert "carries no reference set" in row.verdict


def test_a_report_before_the_interval_gate_reads() -> None:
    old = GateVerdict(
        passed=False,
        checks=(GateCheck("qwk_drop", "dr", 0.81, 0.78, 0.01, False, "dr: QWK 0.8100 -> 0.7800"),),
        status="failed",
    )
    (row,) = gate_evidence.check_rows(old)
    assert (row.set, row.metric, row.images) == ("hold-out", "DR QWK", "—")
    assert row.difference == "−0.030" and row.margin == "−0.010" and row.verdict == "fail"


def test_refusals() -> None:
    assert gate_evidence.refusal("passed") == ""
    assert gate_evidence.refusal("failed") == "Gate failed — cannot be promoted"
    thin = gate_evidence.refusal("insufficient", _verdict(HOLDOUT_SENS))
    assert thin == (
        "Not enough evidence — cannot be promoted: the hold-out needs at least 15 referable DR "
        "images (it has 4)"
    )
    qwk = GateCheck(
        "qwk", "dr", 0.5, 0.5, 0.1, False, "x", "holdout", 14, insufficient=True, needed=60
    )
    assert gate_evidence.missing_evidence(qwk) == (
        "the hold-out needs at least 60 graded images (it has 14)"
    )
    assert gate_evidence.promotion_refusal(None, model_active=False) == ""
    assert gate_evidence.promotion_refusal(None, model_active=True).startswith("Not gated")
    assert gate_evidence.promotion_refusal("failed", model_active=False).startswith("Gate failed")


def test_stored_verdict_is_rederived_from_its_intervals(tmp_path: Path) -> None:
    from training.protocol.report import HeadReport, ModelEvaluation, Report, report_to_json

    head = HeadReport("dr", ("0",), 1, 1.0, 1.0, 1.0, None, None, None, None, 1.0, None, None,
                      None, (1.0,), ((1,),))  # fmt: skip
    model = ModelEvaluation("m", "m", "holdout", 1, (head,))
    # Stored flags say passed; the interval (-0.18 < -0.10) says failed.
    forged = dataclasses.replace(HOLDOUT_QWK, passed=True)
    gate = GateVerdict(passed=True, checks=(forged,), status="passed", resamples=1000)
    report = Report("finetune", "ft-1", "now", "d" * 64, model, model, gate)
    store = open_store(tmp_path / "db.sqlite")
    try:
        assert gate_evidence.stored_verdict(store, "ft-1") is None
        store.add_training_run(TrainingRunRow("ft-1", "{}", "d" * 64, "pending", str(tmp_path)))
        store.update_training_run("ft-1", status="finished", report_json=report_to_json(report))
        verdict = gate_evidence.stored_verdict(store, "ft-1")
        assert verdict is not None and verdict.status == "failed"
        assert gate_evidence.stored_verdict(store, "") is None
    finally:
        store.close()
