"""Quitting the app while a fine-tune runs is safe (offscreen, CPU, 64 px resnet18).

A real fine-tune is started through Model → Fine-tune… (the window's own QProcess running
``python -m training finetune``); once the child reports training progress the user quits
(``MainWindow.close()`` then ``Workstation.shutdown()``, as ``run_gui`` does). The quit must
return in bounded time, leave no child process, leave the active model alone, and record the run
as cancelled: the window's shutdown writes ``STOP``, waits for the child's ``run_cancelled`` (or
kills it), and records the outcome while the store is still open.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from sall_desktop.domain.grades import Grading
from sall_desktop.services import holdout, models
from sall_desktop.services import training_jobs as jobs
from sall_desktop.store import StoreThread
from training.protocol.events import Progress, RunCancelled, StopAcknowledged

pytestmark = pytest.mark.slow

WAIT_MS = 30_000
RUNNING_MS = 60_000
QUIT_LIMIT_S = 30.0
LONG_FINETUNE = ("runtime.device=cpu", "runtime.num_workers=0", "runtime.progress_interval_s=0",
                 "optim.batch_size=4", "finetune.max_epochs=50", "optim.patience=50",
                 "finetune.replay_ratio=0", "eval.plots=false")  # fmt: skip
"""Fifty epochs without early stopping: the run is still training when the user quits."""


def _tiny_model(folder: Path) -> Path:
    """A 64 px resnet18 student (random weights: the run is never meant to finish)."""
    import torch

    from model_zoo.architectures.student import card_template
    from model_zoo.checkpoints import save_checkpoint
    from model_zoo.registry import get_model

    torch.manual_seed(0)
    card = card_template(
        name="tiny test", version="0", licence="test", intended_use="tests only", input_size=64
    )
    model = get_model("sall_student", backbone="resnet18", tasks=card.tasks, pretrained=False)
    save_checkpoint(model, card, folder)
    return folder


def _workstation(tmp_path: Path) -> Any:
    from sall_desktop.app import create_workstation
    from sall_desktop.gui.settings import AppSettings

    settings = AppSettings(tmp_path / "home" / "settings.ini")
    settings.auto_advance = False
    settings.grader = "Dr Test"
    settings.blind_first = False
    settings.auto_grade = False  # no batch grading competing with the trainer for the CPU
    return create_workstation(tmp_path / "home" / "labels.sqlite", settings=settings, device="cpu")


def test_quit_while_finetuning_stops_the_child_and_records_a_cancel(
    qtbot: Any, qapp_themed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_zoo.datasets.benchmark import write_synthetic_dataset

    monkeypatch.setattr(models, "_bundled_demo_dir", lambda: None)
    folder = tmp_path / "study"
    samples = write_synthetic_dataset(folder, 24, seed=11, size=64, dicom_fraction=0)
    parent_dir = _tiny_model(tmp_path / "parent")
    db = tmp_path / "home" / "labels.sqlite"
    ws = _workstation(tmp_path)
    shut_down = False
    try:

        def activate(store: Any) -> models.ModelVersion:
            v = models.register_model(store, parent_dir, source="import", actor="Dr A")
            return models.promote(store, v.id, approver="Dr A", override_reason="test parent")

        parent = ws.store.submit(activate).result(timeout=WAIT_MS)
        window = ws.window
        windows = window.model_windows
        assert windows is not None
        window.show()
        window.start(str(folder))

        def scanned() -> None:
            assert window.folders.folder and not window.folders.scanning
            assert len(window.model.entries()) == len(samples)

        qtbot.waitUntil(scanned, timeout=WAIT_MS)

        # Corrections (through the grading service) and a locked hold-out: enough to fine-tune.
        entries = {Path(e.path).name: e for e in window.model.entries()}
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

        # Model → Fine-tune… → Fine-tune: the real command line in a real child process.
        windows.finetune_overrides = LONG_FINETUNE
        window.actions_by_id["finetune"].trigger()
        finetune = windows.finetune
        assert finetune is not None and finetune.isVisible()
        process = finetune.process
        finetune.start_button.click()

        def training() -> None:
            assert process.is_running() and process.pid() > 0
            assert any(isinstance(ev, Progress) for ev in process.events)

        qtbot.waitUntil(training, timeout=RUNNING_MS)
        assert finetune.frozen is not None
        run_id, run_dir = finetune.frozen.spec.run_id, finetune.frozen.spec.run_dir
        child = psutil.Process(process.pid())  # is_running() also checks the creation time
        tree = [child, *child.children(recursive=True)]
        assert child.is_running()

        def run_row(store: Any) -> Any:
            return store.get_training_run(run_id)

        qtbot.waitUntil(
            lambda: ws.store.submit(run_row).result(timeout=10).status == "running",
            timeout=WAIT_MS,
        )
        assert not (run_dir / jobs.STOP_NAME).exists()
        assert ws.services.grading.pending_count == 0  # so closing asks no question

        # The user quits: close the window (no question: nothing unsaved), then shut down.
        started = time.monotonic()
        assert window.close()
        closed_s = time.monotonic() - started
        assert not window.isVisible()
        assert not process.is_running(), "closing the window left the trainer running"
        events = list(process.events)
        shut_down = True
        ws.shutdown()
        quit_s = time.monotonic() - started
    finally:
        if not shut_down:
            ws.window._closing_confirmed = True
            ws.window.close()
            ws.shutdown()

    # (1) Bounded: the trainer acknowledges STOP within 1 s and stops at the next step.
    assert quit_s < QUIT_LIMIT_S, f"quitting took {quit_s:.1f} s (window close {closed_s:.1f} s)"
    # (2) No orphan: the child (and any descendant) is gone and reaped.
    assert not any(p.is_running() for p in tree), [p.pid for p in tree if p.is_running()]
    assert not psutil.pid_exists(child.pid)
    # The child stopped because of STOP (not a kill): it acknowledged and reported a cancel.
    assert (run_dir / jobs.STOP_NAME).is_file()
    assert any(isinstance(ev, StopAcknowledged) and ev.reason == "stop_file" for ev in events)
    assert isinstance(events[-1], RunCancelled), events[-1]
    assert jobs.read_outcome(run_dir).status == "cancelled"

    # (3) and (4): read the database afresh (the workstation's store is closed).
    store = StoreThread(db)
    try:
        row = store.submit(lambda s: s.get_training_run(run_id)).result(timeout=WAIT_MS)
        active = store.submit(models.active_model).result(timeout=WAIT_MS)
        versions = store.submit(models.list_models).result(timeout=WAIT_MS)
    finally:
        store.close()
    assert active is not None and active.id == parent.id
    assert [v.id for v in versions] == [parent.id]  # no candidate was registered
    assert row is not None
    assert row.status == "cancelled", row
    assert row.model_id is None and row.report_json is None
    assert row.started_at is not None and row.ended_at is not None
