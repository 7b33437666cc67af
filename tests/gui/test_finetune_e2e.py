"""One-click fine-tune end to end through the real QProcess (CPU, 64 px resnet18, 1 epoch).

Correct ~30 images -> fine-tune -> report -> promote -> the active model changes; rollback
restores it and old predictions keep their model ids. Cancel (STOP) and a failing gate leave
the active model unchanged, and a failed candidate cannot be promoted at all. The tiny sets
decide the gate only because these tests lower its minimum evidence (``--set``, which the app
itself never passes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sall_desktop.domain.grades import Grading, ImageRecord, Laterality
from sall_desktop.domain.predictions import Prediction
from sall_desktop.services import holdout, models
from sall_desktop.store import StoreThread
from tests.gui.conftest import WAIT_MS

pytestmark = pytest.mark.slow

# The waits below only guard against a hang: on a busy 2-core machine one tiny run took over
# four minutes.
BASE = ("runtime.device=cpu", "runtime.num_workers=0", "runtime.progress_interval_s=0",
        "optim.batch_size=8", "finetune.max_epochs=1", "finetune.replay_ratio=0",
        "eval.plots=false", "finetune.min_images=1", "finetune.min_referable=1")  # fmt: skip


def _tiny_model(folder: Path, dr_bias_class: int) -> Path:
    import torch

    from model_zoo.architectures.student import card_template
    from model_zoo.checkpoints import save_checkpoint
    from model_zoo.registry import get_model

    torch.manual_seed(0)
    card = card_template(
        name="tiny test", version="0", licence="test", intended_use="tests only", input_size=64
    )
    model = get_model("sall_student", backbone="resnet18", tasks=card.tasks, pretrained=False)
    with torch.no_grad():  # a parent that always says one DR grade: the gate's outcome is known
        model.heads["dr"][1].bias.zero_()
        model.heads["dr"][1].bias[dr_bias_class] = 30.0
    save_checkpoint(model, card, folder)
    return folder


@pytest.fixture
def workspace(tmp_path: Path, _data_home: Path) -> Iterator[StoreThread]:
    from model_zoo.datasets.benchmark import write_synthetic_dataset

    monkey = pytest.MonkeyPatch()
    monkey.setattr(models, "_bundled_demo_dir", lambda: None)
    samples = write_synthetic_dataset(tmp_path / "data", 46, seed=11, size=64, dicom_fraction=0)
    thread = StoreThread(tmp_path / "db.sqlite")

    def setup(store):  # type: ignore[no-untyped-def]
        for s in samples:
            store.upsert_image(
                ImageRecord(
                    sha256=s.sha256,
                    path=str(tmp_path / "data" / s.file_name),
                    patient_id=s.patient_id,
                    laterality=Laterality(s.laterality),
                )
            )
            if s.gradable:
                store.add_grading(
                    Grading(
                        image_sha256=s.sha256,
                        grader="Dr A",
                        dr_grade=s.dr_grade,
                        amd_grade=s.amd_grade,
                    )  # fmt: skip
                )
        holdout.sample_holdout(store, actor="Dr A", fraction=0.3, seed=2)

    thread.submit(setup).result()
    yield thread
    thread.close()
    monkey.undo()


def _activate(thread: StoreThread, folder: Path) -> models.ModelVersion:
    def run(store):  # type: ignore[no-untyped-def]
        v = models.register_model(store, folder, source="import", actor="Dr A")
        return models.promote(store, v.id, approver="Dr A")  # the first model: no gate needed

    return thread.submit(run).result()


def _active_id(thread: StoreThread) -> str:
    return thread.submit(lambda s: models.active_model(s).id).result()  # type: ignore[union-attr]


def _window(qtbot, thread: StoreThread, overrides: tuple[str, ...]):  # type: ignore[no-untyped-def]
    from sall_desktop.gui.finetune_window import FinetuneWindow

    window = FinetuneWindow(thread, approver="Dr B", overrides=overrides, grace_ms=20_000)
    qtbot.addWidget(window)
    window.show()
    return window


def test_finetune_report_promote_and_rollback(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, workspace, reference_set
) -> None:
    parent_dir = _tiny_model(tmp_path / "parent", dr_bias_class=0)
    reference_set(parent_dir, tmp_path)
    parent = _activate(workspace, parent_dir)
    assert (parent.folder / "sets" / "reference.csv").is_file()  # copied with the model
    sha = workspace.submit(lambda s: s.list_images()[0].sha256).result()
    workspace.submit(
        lambda s: s.add_prediction(Prediction(sha, parent.id, {"dr": (1, 0, 0, 0, 0)}))
    )
    # Parent always says DR 0: its referable sensitivity is 0 and a QWK drop of 2 is allowed,
    # so the candidate passes the gate on both sets whatever one epoch does.
    window = _window(qtbot, workspace, (*BASE, "finetune.max_qwk_drop=2"))
    with qtbot.waitSignal(window.outcome_ready, timeout=900_000):
        window.start()
    assert window.frozen is not None and "excluded" in window.summary_label.text()
    assert window.frozen.corrections >= 25
    outcome = window.outcome
    assert outcome is not None and outcome.status == "finished", outcome
    assert window.report_view.isVisible() and outcome.gate_passed
    assert window.panel.loss_points and window.panel.device_label.text() == "CPU — slower"
    assert window.report_view.metrics.rowCount() == 4  # two heads on each set
    checks = window.report_view.checks
    shown = {checks.item(r, 0).text() for r in range(checks.rowCount())}
    assert shown == {"hold-out", "reference set"}
    assert all(checks.item(r, 6).text() == "✔ pass" for r in range(checks.rowCount()))
    assert window.report_view.promote_button.isEnabled()
    window.resize(900, 640)  # a laptop screen: the report scrolls, Promote stays reachable
    qtbot.waitUntil(lambda: window.body_scroll.verticalScrollBar().maximum() > 0, timeout=WAIT_MS)
    window.body_scroll.ensureWidgetVisible(window.report_view.promote_button)
    shown = window.report_view.promote_button.visibleRegion()
    assert not shown.isEmpty()
    with qtbot.waitSignal(window.active_model_changed, timeout=WAIT_MS) as blocker:
        window.report_view.promote_button.click()
    new_id = blocker.args[0]
    assert new_id != parent.id and _active_id(workspace) == new_id
    chain = workspace.submit(lambda s: models.lineage(s, new_id)).result()
    assert [v.id for v in chain] == [new_id, parent.id] and chain[0].approver == "Dr B"
    workspace.submit(lambda s: models.rollback(s, parent.id, approver="Dr C")).result()
    assert _active_id(workspace) == parent.id
    preds = workspace.submit(lambda s: s.predictions()).result()
    assert [p.model_id for p in preds] == [parent.id]
    run = workspace.submit(lambda s: s.get_training_run(window.frozen.spec.run_id)).result()
    assert run.status == "finished" and run.model_id == new_id


def test_cancel_leaves_the_active_model(qtbot, tmp_path: Path, workspace) -> None:  # type: ignore[no-untyped-def]
    from training.protocol.events import RunStarted

    parent = _activate(workspace, _tiny_model(tmp_path / "parent", dr_bias_class=0))
    window = _window(qtbot, workspace, (*BASE, "finetune.max_epochs=50"))
    window.process.event_received.connect(
        lambda ev: window.panel.cancel_button.click() if isinstance(ev, RunStarted) else None
    )
    with qtbot.waitSignal(window.outcome_ready, timeout=600_000):
        window.start()
    assert window.outcome is not None and window.outcome.status == "cancelled", window.outcome
    assert not window.process.is_running()
    assert _active_id(workspace) == parent.id
    assert not window.report_view.isVisible()


def test_failing_gate_cannot_be_promoted(qtbot, tmp_path: Path, workspace) -> None:  # type: ignore[no-untyped-def]
    # The parent calls every image PDR (referable sensitivity 1); corrections all say DR 0 and
    # a high learning rate pulls the candidate there: its sensitivity drops, the gate fails.
    parent = _activate(workspace, _tiny_model(tmp_path / "parent", dr_bias_class=4))

    def relabel(store):  # type: ignore[no-untyped-def]
        held = holdout.load_holdout(store)
        for g in store.current_gradings():
            if g.image_sha256 not in held.images and g.gradable:
                store.add_grading(
                    Grading(image_sha256=g.image_sha256, grader="Dr A", dr_grade=0, amd_grade=0)
                )

    workspace.submit(relabel).result()
    window = _window(
        qtbot,
        workspace,
        (*BASE, "finetune.lr=0.05", "finetune.max_epochs=2", "finetune.max_qwk_drop=0"),
    )
    with qtbot.waitSignal(window.outcome_ready, timeout=900_000):
        window.start()
    outcome = window.outcome
    assert outcome is not None and outcome.status == "finished", outcome
    assert not outcome.gate_passed and window.report_view.isVisible()
    window.report_view.approver.setText("Dr B")
    assert outcome.gate_status == "failed", outcome.verdict
    assert not window.report_view.promote_button.isEnabled()
    assert window.report_view.promote_button.toolTip() == "Gate failed — cannot be promoted"
    window.promote("Dr B")  # refused even when called directly
    assert _active_id(workspace) == parent.id
    candidate = window.candidate
    assert candidate is not None and candidate.gate_status == "failed"
    with pytest.raises(models.ModelError, match="Gate failed — cannot be promoted"):
        workspace.submit(lambda s: models.promote(s, candidate.id, approver="Dr B")).result()
