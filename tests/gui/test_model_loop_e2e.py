"""The model loop end to end through the main window (offscreen, CPU, 64 px resnet18):
batch-grade a synthetic folder -> correct ~30 images -> Model → Fine-tune… (real QProcess) ->
report -> promote -> the folder is graded again under the new version id, and the old
predictions are still in the store (append-only). Also: with no active model and no bundled
demo model the model panel says "No model" (no crash)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sall_desktop.services import models
from tests.gui.conftest import WAIT_MS, WAIT_S

TRAIN_MS = 900_000  # a hang guard: a tiny fine-tune took over two minutes on a busy machine
TINY_FINETUNE = ("runtime.device=cpu", "runtime.num_workers=0", "runtime.progress_interval_s=0",
                 "optim.batch_size=8", "finetune.max_epochs=1", "finetune.replay_ratio=0",
                 "eval.plots=false", "finetune.max_qwk_drop=2", "finetune.min_images=1",
                 "finetune.min_referable=1")  # fmt: skip
"""As in test_finetune_e2e: one epoch; a parent that always says DR 0 has referable
sensitivity 0 and a QWK drop of 2 is allowed, so the candidate passes the gate on the hold-out
and the parent's reference set (a tiny folder is enough evidence only for this test; the app
itself passes no ``--set``)."""


def _close(ws: Any) -> None:
    ws.window._closing_confirmed = True
    ws.window.close()
    ws.shutdown()


def _model_ids(ws: Any, model_id: str) -> set[str]:
    """The images the store holds a prediction of ``model_id`` for."""
    rows = ws.store.submit(lambda s: s.predictions(model_id=model_id)).result(timeout=WAIT_S)
    return {p.image_sha256 for p in rows}


@pytest.mark.slow
def test_correct_finetune_promote_refreshes_folder_predictions(
    qtbot: Any, qapp_themed: Any, tmp_path: Path, model_loop: Any, corrections: Any
) -> None:
    ws, samples, parent, _ = model_loop(
        tmp_path, 46, auto_grade=True, dr_bias_class=0, with_reference=True
    )
    try:
        window = ws.window
        loop, windows = window.model_loop, window.model_windows
        assert loop is not None and windows is not None

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
        corrections(qtbot, ws, samples)

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
    model_loop_workstation: Any,
) -> None:
    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    ws = model_loop_workstation(tmp_path, auto_grade=True)
    try:
        ws.window.show()
        ws.window.start(str(image_folder(2)))
        panel = ws.window.model_panel
        qtbot.waitUntil(lambda: panel.model_name.text() == "No model", timeout=WAIT_MS)
        assert "No model" in panel.model_status.text() and "Models…" in panel.model_status.text()
        assert not panel.grade_button.isEnabled()
    finally:
        _close(ws)
