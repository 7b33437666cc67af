"""Live progress of a fine-tuning run: device, stage, epoch, ETA, loss and metric curves, Cancel.

Fed with :mod:`training.protocol.events` values (from :class:`~sall_desktop.gui.training_process.
TrainingProcess`, or replayed from a recorded ``events.jsonl``). The curves are drawn with
matplotlib's Agg canvas on a short-lived worker thread, at most every :data:`REDRAW_MS`, and only
the finished picture reaches the GUI thread: one draw costs far more CPU than the GUI may stall
(R24; see docs/benchmarks.md, "Figures formerly in docstrings"). ETA uses the events' own time
stamps, so a replay shows the run's real ETA.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from training.protocol.events import (
    EpochEnd,
    Event,
    Progress,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
    StageStarted,
    StopAcknowledged,
)

REDRAW_MS = 1000
"""At most one redraw a second: the curves need not be smoother than the events that feed them."""

Series = list[tuple[int, str, tuple[float, ...], tuple[float, ...], dict[str, Any]]]
"""(axes index, line key, xs, ys, line style) for each curve to draw."""


class CurveRenderer:
    """The loss and metric axes on an Agg canvas; used by one thread at a time."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(6, 2.6), dpi=72)
        self.figure.subplots_adjust(left=0.08, right=0.98, bottom=0.18, top=0.88, wspace=0.25)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = (self.figure.add_subplot(1, 2, 1), self.figure.add_subplot(1, 2, 2))
        self._lines: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        self._lines = {}
        for ax, title in zip(self.axes, ("loss", "validation metrics"), strict=True):
            ax.clear()
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)

    def render(self, series: Series, width: int, height: int) -> QImage:
        """Draw the curves at ``width`` x ``height`` pixels and return the picture."""
        # Lines are updated in place (no axes rebuild): a full clear + replot costs several
        # times more.
        for index, key, xs, ys, style in series:
            line = self._lines.get(key)
            if line is None:
                (line,) = self.axes[index].plot([], [], label=key.split(":", 1)[1], **style)
                self._lines[key] = line
                self.axes[index].legend(fontsize=7, loc="upper right")
            line.set_data(xs, ys)
        for ax in self.axes:
            ax.relim()
            ax.autoscale_view()
        dpi = self.figure.dpi
        self.figure.set_size_inches(max(width, 100) / dpi, max(height, 80) / dpi)
        self.canvas.draw()
        buffer = self.canvas.buffer_rgba()
        h, w = buffer.shape[:2]
        # copy(): the QImage must own its pixels once the Agg buffer is reused.
        return QImage(bytes(buffer), w, h, QImage.Format.Format_RGBA8888).copy()


def _when(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


def device_text(device: str) -> str:
    """ "CPU — slower" for CPU runs, else the trainer's GPU description."""
    return "CPU — slower" if device.lower().startswith("cpu") else device


def eta_text(seconds: float | None) -> str:
    """``"1 min 05 s"`` style remaining time, ``"—"`` when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class TrainingPanel(QWidget):
    """Progress of one run. Call :meth:`handle_event` for every event; Cancel emits a signal.

    Attributes (read by tests and the window): ``loss_points`` (global step, loss),
    ``train_curve``/``val_curve`` (epoch, loss), ``metric_curves`` ({"dr qwk": [(epoch, v)]}).
    """

    cancel_requested = Signal()
    _rendered = Signal(object)  # QImage from the render thread, queued to the GUI thread

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device_label = QLabel("—")
        self.stage_label = QLabel("—")
        self.epoch_label = QLabel("—")
        self.eta_label = QLabel("—")
        self.loss_label = QLabel("—")
        self.status_label = QLabel("Starting…")
        self.status_label.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._on_cancel)
        form = QFormLayout()
        form.addRow("Device:", self.device_label)
        form.addRow("Stage:", self.stage_label)
        form.addRow("Epoch:", self.epoch_label)
        form.addRow("Time left:", self.eta_label)
        form.addRow("Loss:", self.loss_label)
        self.renderer = CurveRenderer()
        self.figure = self.renderer.figure
        self.canvas = QLabel()
        self.canvas.setMinimumHeight(180)
        # Curves wider than tall: a tall pair would push the run's verdict below the fold.
        self.canvas.setMaximumHeight(300)
        self.canvas.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._render_thread: threading.Thread | None = None
        self._dirty = False
        self._rendered.connect(self._show)
        buttons = QHBoxLayout()
        buttons.addWidget(self.bar, 1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self._draw)
        self.reset()

    def reset(self) -> None:
        """Forget the previous run."""
        self.loss_points: list[tuple[float, float]] = []
        self.train_curve: list[tuple[int, float]] = []
        self.val_curve: list[tuple[int, float]] = []
        self.metric_curves: dict[str, list[tuple[int, float]]] = {}
        self.max_epochs = 1
        self.final: Event | None = None
        self.stop_rendering()
        self.renderer.reset()
        self._stage_start = 0.0
        self._steps_done = 0
        self._stopping = False
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.status_label.setText("Starting…")
        self.eta_label.setText("—")

    # ------------------------------------------------------------------ events

    def handle_event(self, ev: object) -> None:
        """Update the panel for one event (anything that is not an event is ignored)."""
        if isinstance(ev, RunStarted):
            self.device_label.setText(device_text(ev.device))
            self.max_epochs = self._epochs_of(ev)
            self.status_label.setText("Training…")
        elif isinstance(ev, StageStarted):
            self.stage_label.setText(
                f"{ev.stage} ({ev.index + 1}/{ev.total}) — {ev.train_images} training, "
                f"{ev.val_images} validation images"
            )
            self._stage_start = _when(ev.time)
        elif isinstance(ev, Progress):
            self._on_progress(ev)
        elif isinstance(ev, EpochEnd):
            self._on_epoch(ev)
        elif isinstance(ev, StopAcknowledged):
            self._stopping = True
            self.status_label.setText("Stopping at the next step (saving a checkpoint)…")
        elif isinstance(ev, RunFinished):
            self._end(ev, "Finished" + self._gate_text(ev.gate_passed, ev.gate_status))
            self.bar.setValue(1000)
            self.eta_label.setText("done")
        elif isinstance(ev, RunCancelled):
            self._end(ev, "Cancelled — the active model is unchanged.")
        elif isinstance(ev, RunFailed):
            self._end(
                ev, f"Failed ({ev.error_type}): {ev.message} — the active model is unchanged."
            )

    def _gate_text(self, passed: bool | None, status: str = "") -> str:
        if passed is None:
            return "."
        if passed:
            return " — the gate passed."
        if status == "insufficient":
            return " — not enough evidence to decide: it cannot be promoted."
        return " — the gate FAILED: it cannot be promoted."

    def _end(self, ev: Event, text: str) -> None:
        self.final = ev
        self.status_label.setText(text)
        self.cancel_button.setEnabled(False)
        self._schedule()

    @staticmethod
    def _epochs_of(ev: RunStarted) -> int:
        for section, key in (("finetune", "max_epochs"), ("optim", "max_epochs")):
            block = ev.config.get(section)
            if ev.command != "finetune" and section == "finetune":
                continue
            if isinstance(block, dict):
                value = block.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
        return 1

    def _on_progress(self, ev: Progress) -> None:
        steps = max(ev.steps_per_epoch, 1)
        done = ev.epoch * steps + ev.step
        total = max(self.max_epochs * steps, done)
        self.loss_points.append((done / steps, ev.loss))
        self.epoch_label.setText(f"{ev.epoch + 1} of {self.max_epochs} (step {ev.step}/{steps})")
        self.loss_label.setText(f"{ev.loss:.4f}")
        self.bar.setValue(int(1000 * done / total))
        elapsed = _when(ev.time) - self._stage_start
        if self._stage_start and done and elapsed > 0:
            self.eta_label.setText(eta_text(elapsed * (total - done) / done))
        self._schedule()

    def _on_epoch(self, ev: EpochEnd) -> None:
        if ev.train_loss is not None:
            self.train_curve.append((ev.epoch + 1, ev.train_loss))
        if ev.val_loss is not None:
            self.val_curve.append((ev.epoch + 1, ev.val_loss))
        for head, metrics in ev.metrics.items():
            for name in ("qwk", "accuracy"):
                value = metrics.get(name)
                if value is not None:
                    self.metric_curves.setdefault(f"{head} {name}", []).append(
                        (ev.epoch + 1, value)
                    )
        self._schedule()

    # ------------------------------------------------------------------ drawing

    def _schedule(self) -> None:
        if not self._redraw.isActive():
            self._redraw.start()

    def _series(self) -> Series:
        thin: dict[str, Any] = {"lw": 1}
        epochs: dict[str, Any] = {"lw": 1.5, "marker": "o"}
        curves: list[tuple[int, str, list[tuple[float, float]], dict[str, Any]]] = [
            (0, "loss:step", self.loss_points, thin),
            (0, "loss:train", [(float(x), y) for x, y in self.train_curve], epochs),
            (0, "loss:validation", [(float(x), y) for x, y in self.val_curve], epochs),
        ]
        for name, curve in sorted(self.metric_curves.items()):
            points = [(float(x), y) for x, y in curve]
            curves.append((1, f"metric:{name}", points, {"lw": 1, "marker": "o"}))
        series: Series = []
        for index, key, points, style in curves:
            if points:
                xs, ys = zip(*points, strict=True)
                series.append((index, key, xs, ys, style))
        return series

    def _draw(self) -> None:
        if self._render_thread is not None and self._render_thread.is_alive():
            self._dirty = True  # drawn again when the picture in flight arrives
            return
        series, width, height = self._series(), self.canvas.width(), self.canvas.height()
        self._render_thread = threading.Thread(
            target=lambda: self._rendered.emit(self.renderer.render(series, width, height)),
            name="training-curves",
            daemon=True,
        )
        self._render_thread.start()

    def _show(self, image: QImage) -> None:
        self.canvas.setPixmap(QPixmap.fromImage(image))
        if self._dirty:
            self._dirty = False
            self._draw()

    def stop_rendering(self) -> None:
        """Wait for a picture in flight (before reset, close, and at the end of a test)."""
        if self._render_thread is not None:
            self._render_thread.join(timeout=10)
            self._render_thread = None
        self._dirty = False

    def flush(self) -> None:
        """Draw now, on this thread (tests, screenshots)."""
        self._redraw.stop()
        self.stop_rendering()
        self._show(self.renderer.render(self._series(), self.canvas.width(), self.canvas.height()))

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        self.stop_rendering()
        super().closeEvent(event)

    def _on_cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.status_label.setText("Cancelling…")
        self.cancel_requested.emit()


__all__ = ["TrainingPanel", "device_text", "eta_text"]
