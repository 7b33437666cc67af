"""A candidate whose gate did not pass cannot be promoted, and the GUI says why (offscreen).

The fine-tune report view shows every gate check of both sets (hold-out and reference) with the
difference, its interval, the margin and the verdict; its Promote button is disabled for a
failed or insufficient candidate with the reason next to it. The Models window shows each
version's gate status and disables Promote the same way. Hand-made reports, no training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_zoo.architectures.tasks import DEFAULT_TASKS
from model_zoo.cards import ModelCard, Provenance, card_to_json
from sall_desktop.services import models
from sall_desktop.store import StoreThread
from sall_desktop.store.models_repository import TrainingRunRow
from tests.gui.conftest import WAIT_MS, WAIT_S
from training.protocol.gate_rules import combine_checks
from training.protocol.report import (
    GateCheck,
    GateVerdict,
    HeadReport,
    ModelEvaluation,
    Report,
    report_to_json,
)


def _head(task: str, qwk: float) -> HeadReport:
    return HeadReport(
        task=task, classes=("0", "1"), n=120, accuracy=0.8, qwk=qwk, macro_f1=0.7, auc=0.9,
        nll=0.5, ece=0.05, ece_mass=0.06, temperature=1.0, nll_calibrated=0.5,
        ece_calibrated=0.04, ece_mass_calibrated=0.05, per_class_recall=(0.8, 0.7),
        confusion=((50, 10), (14, 46)),
    )  # fmt: skip


def _evaluation(split: str, qwk: float) -> ModelEvaluation:
    return ModelEvaluation("m" * 64, "m", split, 120, (_head("dr", qwk), _head("amd", qwk)))


def _check(domain: str, task: str, low: float, **kw: Any) -> GateCheck:
    where = "hold-out" if domain == "holdout" else "reference"
    ok = low >= -0.10 and not kw.get("insufficient", False)
    message = f"{where} · {task.upper()} QWK ...: {'pass' if ok else 'fail'}"
    return GateCheck(
        "qwk", task, 0.80, 0.78, 0.10, ok, message, domain,  # type: ignore[arg-type]
        kw.pop("n", 120), -0.02, low, low + 0.1, **kw,
    )  # fmt: skip


FAILED = combine_checks(
    (_check("holdout", "dr", -0.05), _check("holdout", "amd", -0.04),
     _check("reference", "dr", -0.21), _check("reference", "amd", -0.03)),
    confidence=0.95, resamples=1000,
)  # fmt: skip
INSUFFICIENT = combine_checks(
    (_check("holdout", "dr", 0.0, n=14, insufficient=True, needed=60),
     _check("reference", "dr", -0.03)),
    confidence=0.95, resamples=1000,
)  # fmt: skip
PASSED = combine_checks(
    (_check("holdout", "dr", -0.05), _check("reference", "dr", -0.03)),
    confidence=0.95, resamples=1000,
)  # fmt: skip


def _report(gate: GateVerdict, run_id: str = "ft-1") -> Report:
    return Report(
        kind="finetune", run_id=run_id, created_at="2025-01-01T00:00:00Z",
        manifest_digest="d" * 64, model=_evaluation("holdout", 0.78),
        parent=_evaluation("holdout", 0.80), gate=gate,
        reference=_evaluation("reference", 0.60), reference_parent=_evaluation("reference", 0.81),
    )  # fmt: skip


@pytest.fixture
def view(qtbot: Any) -> Any:
    from sall_desktop.gui.report_view import ReportView

    widget = ReportView()
    qtbot.addWidget(widget)
    widget.approver.setText("Dr B")
    widget.show()
    return widget


def _cells(table: Any, row: int) -> list[str]:
    return [table.item(row, c).text() for c in range(table.columnCount())]


def test_report_view_refuses_a_failed_candidate_and_shows_the_evidence(view: Any) -> None:
    view.show_report(_report(FAILED), FAILED, status="failed")
    assert not view.promote_button.isEnabled()
    assert view.promote_button.toolTip() == "Gate failed — cannot be promoted"
    assert view.promote_note.text() == "Gate failed — cannot be promoted"
    assert "Gate failed — cannot be promoted" in view.verdict_label.text()
    assert view.discard_button.isEnabled()
    assert view.checks.rowCount() == 4
    header = view.checks.horizontalHeaderItem(4).text()
    assert header == "candidate − parent (95 % CI)"
    sets = [view.checks.item(r, 0).text() for r in range(4)]
    assert sets == ["hold-out", "hold-out", "reference set", "reference set"]
    assert _cells(view.checks, 2) == [
        "reference set", "DR QWK", "120", "0.800 → 0.780",
        "−0.020 (95 % CI −0.210 to −0.110)", "−0.100", "✘ fail",
    ]  # fmt: skip
    assert _cells(view.checks, 0)[-1] == "✔ pass"
    # Per set and head: the hold-out's and the reference set's figures.
    assert view.metrics.rowCount() == 4
    assert [view.metrics.item(r, 0).text() for r in range(4)] == [
        "hold-out", "hold-out", "reference set", "reference set",
    ]  # fmt: skip
    assert _cells(view.metrics, 2)[4:6] == ["0.810", "0.600"]  # reference QWK: parent, new
    # Even a signal from a stale click is ignored.
    emitted: list[str] = []
    view.promote_requested.connect(emitted.append)
    view._on_promote()
    assert emitted == []


def test_report_view_says_which_evidence_is_missing(view: Any) -> None:
    view.show_report(_report(INSUFFICIENT), INSUFFICIENT, status="insufficient")
    assert not view.promote_button.isEnabled()
    reason = (
        "Not enough evidence — cannot be promoted: the hold-out needs at least 60 graded images "
        "(it has 14)"
    )
    assert view.promote_button.toolTip() == reason
    assert "the hold-out needs at least 60 graded images" in view.verdict_label.text()
    assert view.checks.item(0, 6).text().startswith("not enough evidence")


def test_report_view_allows_a_passed_candidate_with_a_named_approver(view: Any) -> None:
    view.show_report(_report(PASSED), PASSED, status="passed")
    assert view.promote_button.isEnabled() and view.promote_button.toolTip() == ""
    view.approver.setText("")
    assert not view.promote_button.isEnabled()
    assert view.promote_note.text() == "Enter your name to promote"


def test_report_view_reads_a_report_from_before_the_interval_gate(view: Any) -> None:
    old_check = GateCheck("qwk_drop", "dr", 0.81, 0.805, 0.01, True, "dr: QWK 0.8100 -> 0.8050")
    old = GateVerdict(passed=True, checks=(old_check,), status="passed")
    report = dataclasses.replace(_report(old), reference=None, reference_parent=None)
    view.show_report(report, old, status="passed")
    assert _cells(view.checks, 0) == [
        "hold-out", "DR QWK", "—", "0.810 → 0.805", "−0.005", "−0.010", "✔ pass",
    ]  # fmt: skip
    assert "predates" in view.checks_note.text() and view.metrics.rowCount() == 2
    assert view.promote_button.isEnabled()


# ----------------------------------------------------------------------------- Models window


def _fake_model(folder: Path, seed: int, *, parent: str | None, gate: GateVerdict | None) -> Path:
    """A card + "weights" folder whose hash check passes (torch-free), with the card's gate
    metrics as ``sall-train finetune`` writes them."""
    folder.mkdir(parents=True)
    weights = hashlib.sha512(str(seed).encode()).digest() * 64
    (folder / "weights.safetensors").write_bytes(weights)
    metrics: dict[str, Any] = {}
    if gate is not None:
        checks = [c.message for c in gate.checks]
        metrics["gate"] = {"passed": gate.passed, "status": gate.status, "checks": checks}
    card = ModelCard(
        id=hashlib.sha256(weights).hexdigest(), name=f"model {seed}", version=str(seed),
        architecture="sall_student", architecture_kwargs={"backbone": "resnet18"},
        tasks=DEFAULT_TASKS, grading_scales={}, input_size=64, mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25), interpolation="bilinear", preprocessing={},
        temperatures={t.name: 1.0 for t in DEFAULT_TASKS},
        provenance=Provenance(parent_id=parent, metrics=metrics), licence="test",
        intended_use="research",
    )  # fmt: skip
    (folder / "card.json").write_text(card_to_json(card), encoding="utf-8")
    return folder


Versions = tuple[StoreThread, dict[str, str]]


@pytest.fixture
def versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Versions]:
    """An active parent and three fine-tuned candidates (failed, insufficient, passed), each
    with its run's stored report; and a never-gated import."""
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    thread = StoreThread(tmp_path / "db.sqlite")

    def setup(store: Any) -> dict[str, str]:
        base = models.register_model(
            store, _fake_model(tmp_path / "base", 1, parent=None, gate=None), source="import",
            actor="Dr A",
        )  # fmt: skip
        models.promote(store, base.id, approver="Dr A")  # the first model: nothing to gate against
        ids = {"base": base.id}
        for seed, (name, gate) in enumerate(
            (("failed", FAILED), ("insufficient", INSUFFICIENT), ("passed", PASSED)), start=2
        ):
            run_id = f"ft-{name}"
            folder = _fake_model(tmp_path / name, seed, parent=base.id, gate=gate)
            store.add_training_run(TrainingRunRow(run_id, "{}", "d" * 64, "pending", str(folder)))
            store.update_training_run(
                run_id, status="finished", report_json=report_to_json(_report(gate, run_id))
            )
            version = models.register_model(
                store, folder, source="training", actor="t", gate_passed=gate.promotable,
                run_id=run_id,
            )  # fmt: skip
            ids[name] = version.id
        imported = _fake_model(tmp_path / "import", 9, parent=None, gate=None)
        ids["import"] = models.register_model(store, imported, source="import", actor="x").id
        return ids

    ids = thread.submit(setup).result(timeout=WAIT_S)
    yield thread, ids
    thread.close()


def test_models_window_shows_gate_status_and_refuses_unpassed_candidates(
    qtbot: Any, versions: Versions
) -> None:
    from sall_desktop.gui.model_manager import COLUMNS, ModelManager

    thread, ids = versions
    manager = ModelManager(thread, user="Dr B")
    qtbot.addWidget(manager)
    manager.show()
    qtbot.waitUntil(lambda: len(manager.versions) == 5, timeout=WAIT_MS)
    gate_col = COLUMNS.index("gate")
    row_of = {v.id: r for r, v in enumerate(manager.versions)}

    def gate_text(name: str) -> str:
        return manager.table.item(row_of[ids[name]], gate_col).text()

    assert gate_text("failed") == "failed"
    assert gate_text("insufficient") == "not enough evidence"
    assert gate_text("passed") == "passed"
    assert gate_text("import").startswith("—")
    tooltip = manager.table.item(row_of[ids["failed"]], gate_col).toolTip()
    assert "reference · DR QWK" in tooltip

    expected = {
        "failed": "Gate failed — cannot be promoted",
        "insufficient": "Not enough evidence — cannot be promoted: the hold-out needs at least "
        "60 graded images (it has 14)",
        "import": "Not gated — cannot be promoted",
    }
    for name, reason in expected.items():
        manager.select(ids[name])
        assert not manager.promote_button.isEnabled(), name
        assert manager.promote_button.toolTip().startswith(reason), name
        assert manager.promote_note.text().startswith(reason), name
        manager._ask_promote()  # no dialog, nothing happens
    manager.select(ids["passed"])
    assert manager.promote_button.isEnabled() and manager.promote_button.toolTip() == ""

    # The service refuses too, whatever the GUI does.
    manager.promote(ids["failed"], "Dr B")
    qtbot.waitUntil(lambda: "Gate failed" in manager.status_label.text(), timeout=WAIT_MS)
    active = thread.submit(lambda s: models.active_model(s, verify=False).id).result()  # type: ignore[union-attr]
    assert active == ids["base"]
    with qtbot.waitSignal(manager.active_model_changed, timeout=WAIT_MS) as blocker:
        manager.promote(ids["passed"], "Dr B")
    assert blocker.args == [ids["passed"]]
    events = thread.submit(lambda s: models.model_history(s)).result()
    assert json.dumps([e.reason for e in events if e.action == "promote"]) == json.dumps(
        [models.FIRST_MODEL_REASON, ""]
    )
