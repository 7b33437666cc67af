"""Recorded training event streams replayed into the progress panel (no real training)."""

from __future__ import annotations

from pathlib import Path

from sall_desktop.gui.training_panel import TrainingPanel, device_text, eta_text
from sall_desktop.gui.training_process import TrainingProcess
from training.protocol.events import EpochEnd, Progress, RunFailed, RunFinished

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "protocol" / "golden"


def _replay(qtbot, name: str, chunk: int = 97) -> tuple[TrainingProcess, TrainingPanel, list[str]]:  # type: ignore[no-untyped-def]
    proc = TrainingProcess()
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    bad: list[str] = []
    proc.event_received.connect(panel.handle_event)
    proc.malformed.connect(bad.append)
    data = (GOLDEN / name).read_bytes()
    # Arbitrary chunk boundaries, as readyReadStandardOutput delivers them.
    for start in range(0, len(data), chunk):
        proc.feed(data[start : start + chunk])
    panel.flush()
    return proc, panel, bad


def test_finetune_stream_fills_the_panel(qtbot) -> None:  # type: ignore[no-untyped-def]
    proc, panel, bad = _replay(qtbot, "finetune_gate_failed.jsonl")
    assert not bad
    progress = [e for e in proc.events if isinstance(e, Progress)]
    epochs = [e for e in proc.events if isinstance(e, EpochEnd)]
    assert len(panel.loss_points) == len(progress) > 0
    assert [p[1] for p in panel.loss_points] == [e.loss for e in progress]
    assert [c[0] for c in panel.train_curve] == [e.epoch + 1 for e in epochs]
    assert panel.device_label.text() == "CPU — slower"
    assert panel.stage_label.text().startswith("finetune (1/1)")
    final = proc.events[-1]
    assert isinstance(final, RunFinished) and final.gate_passed is False
    assert panel.final == final and "FAILED" in panel.status_label.text()
    assert not panel.cancel_button.isEnabled() and panel.bar.value() == 1000
    assert len(panel.figure.axes[0].lines) >= 2  # step loss + epoch curve drawn


def test_sall_stream_shows_metrics_and_eta(qtbot) -> None:  # type: ignore[no-untyped-def]
    proc, panel, bad = _replay(qtbot, "sall_tiny.jsonl", chunk=13)
    assert not bad
    assert any(k.endswith("qwk") for k in panel.metric_curves)
    assert panel.eta_label.text() == "done"
    assert eta_text(65) == "1 min 05 s" and eta_text(None) == "—"
    assert device_text("cuda:0 (NVIDIA H100)") == "cuda:0 (NVIDIA H100)"


def test_unknown_and_malformed_lines_never_crash(qtbot) -> None:  # type: ignore[no-untyped-def]
    proc, panel, bad = _replay(qtbot, "future_version_truncated.jsonl", chunk=5)
    # The recording ends in a line cut mid-write: it waits in the buffer, then the next
    # chunk completes it as garbage; both that and the bad object are reported, not raised.
    proc.feed(b'not json at all\n\n{"event": 3}\n')
    assert len(bad) == 2
    assert [type(e).__name__ for e in proc.events] == ["RunStarted"]  # unknown event skipped
    assert panel.device_label.text() == "CPU — slower" and panel.final is None
    proc.feed((GOLDEN / "finetune_leakage.jsonl").read_bytes().splitlines(keepends=True)[-1])
    assert isinstance(proc.events[-1], RunFailed)
    assert "LeakageError" in panel.status_label.text()
