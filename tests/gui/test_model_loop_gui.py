"""Model in the loop, through the real window (offscreen, tiny CPU model):
batch grading stores predictions with the model id and shows them; the attention overlay
appears for the current image and a stale one is dropped; blind-first hides the model's grade
until the grader commits, then reveals it, and a change of mind is audited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QAbstractButton, QLabel, QProgressBar, QWidget

from tests.gui.conftest import WAIT_MS, WAIT_S


@pytest.fixture()
def workstation(model_workstation: Callable[..., Any], tiny_model: Path) -> Callable[..., Any]:
    return lambda folder, **kwargs: model_workstation(folder, tiny_model, **kwargs)


def visible_texts(root: QWidget) -> list[str]:
    """Every text a grader can see now (labels, bars, buttons)."""
    texts = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible():
            continue
        if isinstance(widget, QLabel | QAbstractButton):
            texts.append(widget.text())
        elif isinstance(widget, QProgressBar):
            texts.append(widget.text())
    return texts


def probability_bars(root: QWidget) -> list[str]:
    """Texts of the visible per-class probability bars."""
    return [
        bar.text()
        for bar in root.findChildren(QProgressBar, "probability")
        if bar.isVisible() and "%" in bar.text()
    ]


def test_batch_grading_stores_and_shows_predictions(
    workstation: Callable[..., Any], image_folder: Callable[..., Path], qtbot: Any
) -> None:
    ws = workstation(image_folder(12), auto_grade=True)
    window, loop = ws.window, ws.window.model_loop
    assert "synthetic — not for clinical use" in visible_texts(window)
    qtbot.waitUntil(
        lambda: (
            not window.inference_bridge.batch_running
            and window.model_panel.batch_text.text().startswith("Done")
        ),
        timeout=WAIT_MS,
    )
    model_id = loop.info.id
    stored = ws.store.submit(lambda s: s.predictions(model_id=model_id)).result(timeout=WAIT_S)
    shas = {e.sha256 for e in window.model.entries()}
    assert {p.image_sha256 for p in stored} == shas
    assert len(stored) == len(shas)  # the current image's on-demand prediction is not repeated
    assert all(window.model.prediction(sha) is not None for sha in shas)
    texts = visible_texts(window)
    assert any(t.startswith("Model: DR") for t in texts)
    assert len(probability_bars(window)) == 9  # 5 DR + 4 AMD bars
    # A second run skips everything this model version already graded.
    loop.grade_folder()
    qtbot.waitUntil(lambda: not window.inference_bridge.batch_running, timeout=WAIT_MS)
    assert "0 graded" in window.model_panel.batch_text.text()
    window.triage.refresh_now()
    assert len(window.triage.ranked) == len(shas)
    # Disagreement needs the grader's grade: empty until one is given, then it is ranked
    # (scores are kept between rankings, so a new grading must be seen).
    from sall_desktop.services.triage import TriageOrder

    panel = window.triage.panel
    panel.order.setCurrentIndex(panel.order.findData(TriageOrder.DISAGREEMENT))
    assert window.triage.ranked == [] and window.triage.queue_size == 0
    entry = window.navigator.current
    window.grading.set_dr(4)
    window.grading.set_amd(0)
    qtbot.waitUntil(lambda: ws.services.grading.pending_count == 0, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: entry.grading is not None, timeout=WAIT_MS)
    window.triage.refresh_now()
    assert [r.item.sha256 for r in window.triage.ranked] == [entry.sha256]
    expected = abs(window.model.prediction(entry.sha256).heads["dr"].expected_grade - 4)
    assert window.triage.ranked[0].score == pytest.approx(expected)


def test_stored_predictions_are_read_for_the_open_folder_only(
    workstation: Callable[..., Any],
    image_folder: Callable[..., Path],
    qtbot: Any,
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    import hashlib

    from model_zoo.cards import read_card
    from sall_desktop.domain.predictions import Prediction
    from sall_desktop.store import open_store

    folder = image_folder(8)
    files = sorted(folder.iterdir())
    shas = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    model_id = read_card(tiny_model).id
    # A store that already holds this version's outputs for the first five images (the first
    # is the one shown first) and for images of other folders.
    (tmp_path / "home").mkdir(exist_ok=True)
    with open_store(tmp_path / "home" / "labels.sqlite") as store:
        store.add_predictions(
            [Prediction(sha, model_id, {"dr": (0.1, 0.1, 0.6, 0.1, 0.1)}) for sha in shas[:5]]
            + [Prediction(f"{n:064x}", model_id, {"dr": (1.0, 0, 0, 0, 0)}) for n in range(50)]
        )
    # Opened once the model is loaded (its records then arrive with a model to ask).
    ws = workstation(image_folder(2, name="earlier"))
    window = ws.window
    window.start(str(folder))
    qtbot.waitUntil(
        lambda: window.navigator.current is not None and window.navigator.current.sha256 == shas[0],
        timeout=WAIT_MS,
    )
    qtbot.waitUntil(
        lambda: all(window.model.prediction(sha) is not None for sha in shas[:5]), timeout=WAIT_MS
    )
    assert window.model.prediction(shas[0]).heads["dr"].grade == 2  # the stored output, shown
    assert window.model.predictions().keys() <= set(shas)  # no other folder's outputs
    ws.inference.run_on_worker(lambda: None).result(timeout=WAIT_S)  # requests made have run
    stored = ws.store.submit(lambda s: s.predictions(model_id=model_id)).result(timeout=WAIT_S)
    assert [p.image_sha256 for p in stored].count(shas[0]) == 1  # not graded again on demand
    window.navigator.step(+1)
    window.navigator.step(+1)
    window.navigator.step(+1)
    window.navigator.step(+1)
    window.navigator.step(+1)  # the sixth image: no stored output, so the model grades it
    assert window.navigator.current.sha256 == shas[5]
    qtbot.waitUntil(lambda: window.model.prediction(shas[5]) is not None, timeout=WAIT_MS)


def test_a_failed_read_of_stored_predictions_falls_back_to_the_model(
    workstation: Callable[..., Any], image_folder: Callable[..., Path], qtbot: Any
) -> None:
    import sqlite3
    from concurrent.futures import Future

    ws = workstation(image_folder(2, name="earlier"))
    window, loop = ws.window, ws.window.model_loop

    def unreadable(sha256s: Any) -> Future[Any]:
        failed: Future[Any] = Future()
        failed.set_exception(sqlite3.OperationalError("disk I/O error"))
        return failed

    ws.inference.stored_predictions = unreadable
    errors: list[str] = []
    loop.error.connect(errors.append)
    window.start(str(image_folder(4)))
    qtbot.waitUntil(lambda: bool(errors), timeout=WAIT_MS)
    assert "stored predictions could not be read" in errors[0]
    qtbot.waitUntil(
        lambda: (
            window.navigator.current is not None
            and window.model.prediction(window.navigator.current.sha256) is not None
        ),
        timeout=WAIT_MS,
    )


def test_batch_grading_reads_the_inputs_the_folder_scan_prepared(
    workstation: Callable[..., Any],
    image_folder: Callable[..., Path],
    qtbot: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    import model_zoo.prepare

    # Files the batch grader decodes itself (its decode threads); the scan's decode processes
    # are other processes, and the current image's on-demand prediction runs on the model's
    # own thread: neither is counted.
    graded_by_decoding: list[str] = []
    real_read = model_zoo.prepare.read_image

    def counting_read(path: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("sall-decode"):
            graded_by_decoding.append(str(path))
        return real_read(path, **kwargs)

    monkeypatch.setattr(model_zoo.prepare, "read_image", counting_read)
    # The folder is opened once the model is loaded: a scan prepares inputs only from the
    # moment it knows the model's preprocessing (before the model is loaded, that waits for the
    # store), so a file described earlier on a busy machine would be decoded by the grader.
    ws = workstation(image_folder(2, name="earlier"), auto_grade=False)
    window, loop = ws.window, ws.window.model_loop
    folder = image_folder(12)
    window.start(str(folder))
    qtbot.waitUntil(
        lambda: (
            window.folders.folder == str(folder)
            and not window.folders.scanning
            and len(window.model.entries()) == 12
            and all(e.record is not None for e in window.model.entries())
        ),
        timeout=WAIT_MS,
    )
    inputs = ws.inference.input_cache()  # the loaded model's preprocessing
    shas = {e.sha256 for e in window.model.entries()}
    assert inputs is not None and all(sha in inputs for sha in shas)  # the scan left them
    loop.grade_folder()
    qtbot.waitUntil(
        lambda: (
            not window.inference_bridge.batch_running
            and window.model_panel.batch_text.text().startswith("Done")
        ),
        timeout=WAIT_MS,
    )
    stored = ws.store.submit(lambda s: s.predictions(model_id=loop.info.id)).result(timeout=WAIT_S)
    assert {p.image_sha256 for p in stored} == shas
    assert graded_by_decoding == []


def test_overlay_for_current_image_and_stale_one_dropped(
    workstation: Callable[..., Any], image_folder: Callable[..., Path], qtbot: Any
) -> None:
    ws = workstation(image_folder(6))
    window, overlay = ws.window, ws.window.model_loop.overlay
    first = window.navigator.current
    overlay.toggle()  # A: asks for the first image's map...
    assert overlay.wanted
    window.navigator.step(+1)  # ...and the grader moves on before it arrives
    second = window.navigator.current
    assert second is not first
    qtbot.waitUntil(lambda: overlay.dropped >= 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: overlay.overlay_visible, timeout=WAIT_MS)
    assert overlay.shown_key is not None and overlay.shown_key[0] == second.sha256
    assert window.viewer_panel.left_view.sha256 == second.sha256 or (
        window.viewer_panel.right_view.sha256 == second.sha256
    )
    overlay.cycle_head()  # Shift+A: the AMD head
    qtbot.waitUntil(
        lambda: overlay.shown_key is not None and overlay.shown_key[1] == "amd", timeout=WAIT_MS
    )
    overlay.toggle()
    assert not overlay.overlay_visible


def test_blind_first_hides_model_until_commit_and_audits_change(
    workstation: Callable[..., Any], image_folder: Callable[..., Path], qtbot: Any
) -> None:
    ws = workstation(image_folder(4), blind=True)
    window, loop, grading = ws.window, ws.window.model_loop, ws.window.grading
    entry = window.navigator.current
    qtbot.waitUntil(lambda: window.model.prediction(entry.sha256) is not None, timeout=WAIT_MS)
    overlay = loop.overlay
    overlay.toggle()
    texts = visible_texts(window)
    assert not any(t.startswith("Model:") for t in texts)
    assert not probability_bars(window)
    assert any("blind-first" in t for t in texts)
    assert not overlay.overlay_visible and overlay.wanted == 0

    grading.set_dr(1)
    grading.set_amd(0)  # complete: committed
    qtbot.waitUntil(lambda: ws.services.grading.pending_count == 0, timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: any(t.startswith("Model:") for t in visible_texts(window)), timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: overlay.overlay_visible, timeout=WAIT_MS)

    grading.set_dr(3)  # a change of mind after the reveal
    qtbot.waitUntil(lambda: ws.services.grading.pending_count == 0, timeout=WAIT_MS)
    audit = ws.store.submit(lambda s: s.audit_log(image_sha256=entry.sha256)).result(timeout=WAIT_S)
    reasons = [a.reason for a in audit if a.field == "dr_grade"]
    assert reasons[0] == "grade" and reasons[-1] == "changed after model reveal"
    current = ws.store.submit(lambda s: s.current_grading(entry.sha256, "Dr Test")).result(
        timeout=WAIT_S
    )
    assert current.dr_grade == 3 and current.model_version == loop.info.id


def test_blind_first_is_shown_and_the_triage_queue_lists_no_ungraded_image_by_the_model(
    workstation: Callable[..., Any], image_folder: Callable[..., Path], qtbot: Any
) -> None:
    from sall_desktop.services.triage import TriageOrder

    ws = workstation(image_folder(4))
    window, loop = ws.window, ws.window.model_loop
    entry = window.navigator.current
    qtbot.waitUntil(lambda: window.model.prediction(entry.sha256) is not None, timeout=WAIT_MS)
    window.triage.refresh_now()
    assert entry.sha256 in {r.item.sha256 for r in window.triage.ranked}
    assert window.status.blind.isHidden()

    loop.set_blind(True)  # Ctrl+B: the queue is ranked again by itself
    assert not window.status.blind.isHidden()
    assert "Blind-first" in window.status.blind.text()
    # Nothing is graded yet, so the model orders nothing: the queue is in file order, unscored.
    paths = sorted(e.path for e in window.model.entries())
    qtbot.waitUntil(lambda: [r.item.path for r in window.triage.ranked] == paths, timeout=WAIT_MS)
    rows = [window.triage_panel.list.item(i).text() for i in range(4)]
    assert rows == [f"{n:>3}. {p.rsplit('/', 1)[-1]}" for n, p in enumerate(paths, 1)]
    assert window.triage_panel.summary.text().startswith("Blind-first: 4 ungraded image(s)")
    order = window.triage_panel.order
    order.setCurrentIndex(order.findData(TriageOrder.SAMPLE))
    window.triage.refresh_now()
    assert len(window.triage.ranked) == 4  # the random sample needs no model

    loop.set_blind(False)
    assert window.status.blind.isHidden()
