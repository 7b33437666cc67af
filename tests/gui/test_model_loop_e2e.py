"""The model loop end to end through the main window (offscreen, CPU, 64 px resnet18):
batch-grade a synthetic folder -> correct ~30 images -> Model → Fine-tune… (real QProcess) ->
report -> promote -> the folder is graded again under the new version id, and the old
predictions are still in the store (append-only). Also: with no active model and no bundled
demo model the model panel says "No model" (no crash)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from sall_desktop.domain.grades import Grading
from sall_desktop.services import holdout, models

WAIT_MS = 30_000
TRAIN_MS = 120_000
TINY_FINETUNE = ("runtime.device=cpu", "runtime.num_workers=0", "runtime.progress_interval_s=0",
                 "optim.batch_size=8", "finetune.max_epochs=1", "finetune.replay_ratio=0",
                 "eval.plots=false", "finetune.max_qwk_drop=2")  # fmt: skip
"""As in test_finetune_e2e: one epoch; a parent that always says DR 0 has referable
sensitivity 0 and a QWK drop of 2 is allowed, so the candidate passes the gate."""


def _tiny_model(folder: Path, dr_bias_class: int) -> Path:
    """A 64 px resnet18 student whose DR head always answers ``dr_bias_class``."""
    import torch

    from model_zoo.architectures.student import card_template
    from model_zoo.checkpoints import save_checkpoint
    from model_zoo.registry import get_model

    torch.manual_seed(0)
    card = card_template(
        name="tiny test", version="0", licence="test", intended_use="tests only", input_size=64
    )
    model = get_model("sall_student", backbone="resnet18", tasks=card.tasks, pretrained=False)
    bias = cast(Any, model).heads["dr"][1].bias
    with torch.no_grad():
        bias.zero_()
        bias[dr_bias_class] = 30.0
    save_checkpoint(model, card, folder)
    return folder


def _workstation(tmp_path: Path) -> Any:
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings

    settings = AppSettings(tmp_path / "home" / "settings.ini")
    settings.auto_advance = False
    settings.grader = "Dr Test"
    settings.blind_first = False
    settings.auto_grade = True
    return create_workstation(tmp_path / "home" / "labels.sqlite", settings=settings, device="cpu")


def _close(ws: Any) -> None:
    ws.window._closing_confirmed = True
    ws.window.close()
    ws.shutdown()


def _model_ids(ws: Any, model_id: str) -> set[str]:
    """The images the store holds a prediction of ``model_id`` for."""
    rows = ws.store.submit(lambda s: s.predictions(model_id=model_id)).result(timeout=10)
    return {p.image_sha256 for p in rows}


@pytest.mark.slow
def test_correct_finetune_promote_refreshes_folder_predictions(
    qtbot: Any, qapp_themed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_zoo.datasets.benchmark import write_synthetic_dataset

    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    folder = tmp_path / "study"
    samples = write_synthetic_dataset(folder, 46, seed=11, size=64, dicom_fraction=0)
    parent_dir = _tiny_model(tmp_path / "parent", dr_bias_class=0)
    ws = _workstation(tmp_path)
    try:

        def activate(store: Any) -> models.ModelVersion:
            v = models.register_model(store, parent_dir, source="import", actor="Dr A")
            return models.promote(store, v.id, approver="Dr A", override_reason="test parent")

        parent = ws.store.submit(activate).result(timeout=WAIT_MS)
        window = ws.window
        loop, windows = window.model_loop, window.model_windows
        assert loop is not None and windows is not None
        window.show()
        window.start(str(folder))

        # 1. Batch grading of the folder with the active (parent) model.
        def batch_done() -> None:
            assert window.folders.folder and not window.folders.scanning
            assert loop.info is not None and not window.inference_bridge.batch_running
            assert window.model_panel.batch_text.text().startswith("Done")

        qtbot.waitUntil(batch_done, timeout=WAIT_MS)
        assert loop.info is not None and loop.info.id == parent.id
        entries = {Path(e.path).name: e for e in window.model.entries()}
        shas = {e.sha256 for e in entries.values() if e.gradable_image}
        assert len(shas) == len(samples) and _model_ids(ws, parent.id) == shas

        # 2. The grader corrects the gradable images (through the grading service).
        for s in samples:
            entry = entries[s.file_name]
            if s.gradable:
                grading = Grading(
                    entry.sha256, "Dr Test", dr_grade=s.dr_grade, amd_grade=s.amd_grade
                )
                ws.services.grading.grade(grading, record=entry.record)
        qtbot.waitUntil(lambda: ws.services.grading.pending_count == 0, timeout=WAIT_MS)
        ws.store.submit(
            lambda s: holdout.sample_holdout(s, actor="Dr Test", fraction=0.3, seed=2)
        ).result(timeout=WAIT_MS)

        # 3. Model → Fine-tune… is the signed-in grader's; the run is a real child process.
        action = window.actions_by_id["finetune"]
        window.grading.set_grader(None)
        assert not action.isEnabled() and not window.actions_by_id["models"].isEnabled()
        window.grading.set_grader("Dr Test")
        assert action.isEnabled()
        windows.finetune_overrides = TINY_FINETUNE
        action.trigger()
        finetune = windows.finetune
        assert finetune is not None and finetune.isVisible()
        assert finetune.report_view.approver.text() == "Dr Test"
        with qtbot.waitSignal(finetune.outcome_ready, timeout=TRAIN_MS):
            finetune.start_button.click()
        assert finetune.frozen is not None and 25 <= finetune.frozen.corrections <= 35
        outcome = finetune.outcome
        assert outcome is not None and outcome.status == "finished", outcome
        assert outcome.gate_passed and finetune.report_view.isVisible()
        assert window.model_panel.model_status.text().startswith(f"id {parent.id[:12]}")

        # 4. Promote: the main window loads the new version and grades the folder with it.
        with qtbot.waitSignal(finetune.active_model_changed, timeout=WAIT_MS) as blocker:
            finetune.report_view.promote_button.click()
        new_id = blocker.args[0]
        assert new_id != parent.id

        def refreshed() -> None:
            assert loop.info is not None and loop.info.id == new_id
            assert not window.inference_bridge.batch_running
            assert _model_ids(ws, new_id) == shas

        qtbot.waitUntil(refreshed, timeout=WAIT_MS)
        assert _model_ids(ws, parent.id) == shas  # the parent's predictions are kept
        shown = [window.model.prediction(sha) for sha in shas]
        assert all(p is not None and p.model_id == new_id for p in shown)
        assert window.model_panel.model_status.text().startswith(f"id {new_id[:12]}")
        assert len(window.model_panel.bar_widgets["dr"]) == 5  # one set of bars, not two
        assert not finetune.process.is_running()  # no child process is left
    finally:
        _close(ws)


def test_no_active_model_and_no_demo_says_no_model(
    qtbot: Any,
    qapp_themed: Any,
    tmp_path: Path,
    image_folder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    ws = _workstation(tmp_path)
    try:
        ws.window.show()
        ws.window.start(str(image_folder(2)))
        panel = ws.window.model_panel
        qtbot.waitUntil(lambda: panel.model_name.text() == "No model", timeout=WAIT_MS)
        assert "No model" in panel.model_status.text() and "Models…" in panel.model_status.text()
        assert not panel.grade_button.isEnabled()
    finally:
        _close(ws)
