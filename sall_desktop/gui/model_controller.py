"""The model in the loop: what the active model says about each image, when the grader sees it,
batch grading of the open folder, and the audit of a change of mind after the model's reveal.

- The active model's stored predictions are read for the open folder's images as their records
  arrive; an image without one is predicted on demand (and stored) when it becomes current;
  batch grading fills in the rest.
- Blind-first mode (setting): the model's grade and overlay stay hidden for an image until the
  grader's grade for it is saved; then they are revealed. A later change of that grade is saved
  with the audit reason ``changed after model reveal`` and the model version it was made with.
  Where a screening programme withholds an image's output (second grading is blind,
  ``services.work_queue``) it stays hidden, saved or not.
- When the active version changes (model manager, fine-tune promotion) the new one is loaded on
  the inference worker and the open folder is graded again under its id; earlier predictions
  keep the ids they were made with (append-only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QWidget

from sall_desktop.domain.grades import Grading
from sall_desktop.gui import collector
from sall_desktop.gui.bridges import Failure
from sall_desktop.gui.grading_controller import GradingController
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.inference_bridge import InferenceBridge
from sall_desktop.gui.model_panel import ModelPanel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.overlay_controller import OverlayController
from sall_desktop.gui.relay import Relay
from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.viewer_controller import ViewerController
from sall_desktop.gui.viewer_panel import ViewerPanel
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.inference import (
    BatchProgress,
    BatchResult,
    InferenceResult,
    ModelInfo,
    PredictionSummary,
    StoredPredictions,
)

if TYPE_CHECKING:  # the windows import matplotlib: only when first opened (P7)
    from sall_desktop.gui.finetune_window import FinetuneWindow
    from sall_desktop.gui.model_manager import ModelManager
    from sall_desktop.services.store_executor import StoreExecutor

STORED_ASK_MS = 100
"""Records arriving within this long are asked about in one read of the stored predictions."""


class ModelController(QObject):
    """Drives the model panel, the overlay and batch grading from the inference bridge."""

    error = Signal(str)
    predictions_changed = Signal()
    blind_changed = Signal(bool)  # blind-first turned on or off
    batch_predictions_changed = Signal()  # a delivery of batch grading (several a second)

    def __init__(
        self,
        bridge: InferenceBridge,
        panel: ModelPanel,
        viewer_panel: ViewerPanel,
        viewer: ViewerController,
        model: ImageListModel,
        navigator: Navigator,
        grading: GradingController,
        settings: AppSettings,
    ) -> None:
        super().__init__(panel)
        self.bridge, self.panel, self.model = bridge, panel, model
        self.navigator, self.grading, self.settings = navigator, grading, settings
        self.info: ModelInfo | None = None
        self.entry: ImageEntry | None = None
        self._pending: dict[str, int] = {}  # sha256 -> id of the on-demand prediction request
        # Images whose stored predictions are not read yet (an on-demand request for one would
        # grade it again), and those of them not asked about yet.
        self._awaiting: set[str] = set()
        self._unasked: set[str] = set()
        self._ask = QTimer(self, singleShot=True, interval=STORED_ASK_MS)
        self._ask.timeout.connect(self._ask_stored)
        self.rule = model.blind_rule  # one blind-first rule for every view (services.blind_first)
        model.set_blind(settings.blind_first)
        self.overlay = OverlayController(
            viewer_panel, panel, bridge, self.revealed,
            opacity=settings.overlay_opacity, colormap=settings.overlay_colormap,
            why_hidden=lambda entry: self.rule.hidden_reason(entry.sha256),
        )  # fmt: skip
        grading.annotate = self.annotate
        bridge.loaded.connect(self._on_loaded)
        bridge.load_failed.connect(self._on_load_failed)
        bridge.stored.connect(self._on_stored)
        bridge.result_ready.connect(self._on_result)
        bridge.failed.connect(self._on_failed)
        bridge.batch_progress.connect(self._on_progress)
        bridge.batch_predictions.connect(self._on_batch_predictions)
        bridge.batch_finished.connect(self._on_batch_finished)
        bridge.batch_failed.connect(self._on_batch_failed)
        navigator.current_changed.connect(self.set_entry)
        model.records_added.connect(self._on_records)
        grading.grading_written.connect(self._on_grading_written)
        grading.grader_changed.connect(self._grader_changed)
        viewer.image_shown.connect(self.overlay.reattach)
        self.overlay.error.connect(self.error)
        panel.grade_folder_clicked.connect(self.grade_folder)
        panel.cancel_clicked.connect(self.cancel_grading)
        panel.opacity_changed.connect(lambda v: setattr(settings, "overlay_opacity", v))
        panel.colormap_changed.connect(lambda v: setattr(settings, "overlay_colormap", v))
        self._grade_when_loaded = False
        self._grade_after_batch = False
        self._relay = Relay(self)

    def handlers(self) -> dict[str, Callable[[], object]]:
        """The Model menu's commands this controller runs, by command id."""
        return {
            "toggle_overlay": self.overlay.toggle,
            "cycle_overlay_head": self.overlay.cycle_head,
            "grade_folder": self.grade_folder,
            "cancel_grading": self.cancel_grading,
            "toggle_blind": lambda: self.set_blind(not self.blind),
        }

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Load the active model (off the GUI thread)."""
        self.bridge.load()

    def _on_loaded(self, info: ModelInfo) -> None:
        self.info = info
        self.panel.show_model(info)
        self.model.set_predictions({})  # another version's, if any
        self._awaiting = {e.sha256 for e in self.model.entries() if e.record is not None}
        self._unasked = set(self._awaiting)
        self._ask_stored()  # even for no image: the reply starts a grading asked for meanwhile

    def _on_records(self, sha256s: list[str]) -> None:
        self._awaiting.update(sha256s)
        self._unasked.update(sha256s)
        if self.info is not None and not self._ask.isActive():
            self._ask.start()

    def _ask_stored(self) -> None:
        self._ask.stop()
        if self.info is not None:
            asked, self._unasked = self._unasked, set()
            self.bridge.load_stored(asked)

    def reload_model(self, model_id: str = "") -> None:
        """The active version changed (``model_id``): load it off the GUI thread, show its badge,
        and grade the open folder with it once its stored predictions are in."""
        self.cancel_grading()
        self._pending.clear()  # answers of the old version are dropped
        self.panel.model_status.setText(f"Loading model {model_id[:12]}…")

        self._relay.watch(
            self.bridge.service.reload(),
            lambda info: self._on_reloaded(info, ""),
            lambda error: self._on_reloaded(None, str(error)),
        )

    def _on_reloaded(self, info: ModelInfo | None, message: str) -> None:
        if info is None:
            previous = f" (still using {self.info.id[:12]})" if self.info is not None else ""
            self.error.emit(f"The new model could not be loaded{previous}: {message}")
            if self.info is None:
                self.panel.show_model_error(message)
            return
        self.overlay.clear()  # maps of the old version must not be shown for the new
        self.overlay.set_entry(None)
        self._grade_when_loaded = True
        self._on_loaded(info)
        self.set_entry(self.navigator.current)

    def _on_load_failed(self, message: str) -> None:
        self._awaiting.clear()  # the model grades the images on demand instead
        if self.info is None:
            self.panel.show_model_error(message)
            self.error.emit(f"The model could not be loaded: {message}")
        else:
            self.error.emit(f"The model's stored predictions could not be read: {message}")
            self._show()

    def _on_stored(self, stored: StoredPredictions) -> None:
        if self.info is None or stored.model_id != self.info.id:
            return  # read for a version that is no longer active
        self._awaiting.difference_update(stored.asked)
        self.model.add_predictions(stored.summaries.values())
        collector.settle()  # kept while this model version is active: out of full collections
        self.predictions_changed.emit()
        self._show()
        if self._grade_when_loaded:
            self._grade_when_loaded = False
            self.grade_folder()

    # ------------------------------------------------------------------ blind-first
    def revealed(self, entry: ImageEntry) -> bool:
        """May the grader see the model's output for ``entry`` now?"""
        return self.rule.shows(entry.sha256, graded=entry.grading is not None)

    @property
    def blind(self) -> bool:
        """Blind-first is on."""
        return self.rule.on

    def set_blind(self, on: bool) -> None:
        self.settings.blind_first = on
        self.model.set_blind(on)
        self._show()
        self.blind_changed.emit(on)
        # The triage queue ranks what the grader may see: rank it again under the new rule.
        self.predictions_changed.emit()

    def rule_changed(self) -> None:
        """What the rule shows changed (e.g. a screening programme withholds other images): the
        panel, the overlay and the triage queue show it again."""
        self._show()
        self.predictions_changed.emit()

    def _grader_changed(self, _name: str | None) -> None:
        self.rule.forget()  # another grader has seen nothing yet
        self.rule_changed()

    def annotate(self, grading: Grading, previous: Grading | None) -> tuple[Grading, str]:
        """Record which model the grader had seen, and a change of mind after the reveal."""
        sha = grading.image_sha256
        seen = self.info is not None and self.model.prediction(sha) is not None
        entry = self.entry if self.entry is not None and self.entry.sha256 == sha else None
        was_revealed = entry is not None and self.revealed(entry)
        if seen and was_revealed and self.info is not None:
            grading = replace(grading, model_version=self.info.id)
        return grading, self.rule.audit_reason(
            changed=previous is not None and seen, revealed=was_revealed
        )

    def _on_grading_written(self, sha256: str) -> None:
        entries = self.model.entries_with_sha(sha256)
        if any(e.grading is not None for e in entries):
            self.rule.graded(sha256)
        if self.entry is not None and self.entry.sha256 == sha256:
            self._show()
        self.predictions_changed.emit()

    # ------------------------------------------------------------------ current image
    def set_entry(self, entry: ImageEntry | None) -> None:
        self.entry = entry
        self.overlay.set_entry(entry)
        self._show()

    def _show(self) -> None:
        entry = self.entry
        if entry is None or not entry.gradable_image:
            self.panel.show_prediction(None, hidden=False, note="")
            return
        hidden = not self.revealed(entry)
        summary = self.model.prediction(entry.sha256)
        note = ""
        if summary is None:
            if self.info is None:
                note = "Waiting for the model…"
            elif entry.sha256 in self._awaiting:
                note = "Reading the model's stored output…"
            else:
                note = "The model is grading this image…"
                if entry.sha256 not in self._pending:
                    self._pending[entry.sha256] = self.bridge.request(
                        entry.sha256, entry.path, save=True
                    )
        why = self.rule.hidden_reason(entry.sha256)
        self.panel.show_prediction(summary, hidden=hidden, note=note, why=why)
        self.overlay.refresh()

    def _on_result(self, result: InferenceResult) -> None:
        if self._pending.get(result.sha256) != result.request_id:
            return
        del self._pending[result.sha256]
        self.model.add_predictions([result.summary])
        self.predictions_changed.emit()
        if self.entry is not None and self.entry.sha256 == result.sha256:
            self._show()

    def _on_failed(self, failure: Failure) -> None:
        request = failure.context
        sha = getattr(request, "sha256", "")
        if self._pending.get(sha) != failure.request_id:
            return
        del self._pending[sha]
        if self.entry is not None and self.entry.sha256 == sha:
            self.panel.show_prediction(
                None, hidden=False, note=f"No model output: {failure.message}"
            )
        self.error.emit(f"The model could not grade this image: {failure.message}")

    # ------------------------------------------------------------------ batch grading
    def folder_ready(self) -> None:
        """The folder scan finished: grade it in the background if the setting says so."""
        if self.settings.auto_grade:
            if self.info is None:
                self._grade_when_loaded = True
            else:
                self.grade_folder()

    def grade_folder(self) -> None:
        entries = [e for e in self.model.entries() if e.gradable_image]
        paths = [e.path for e in entries]
        known = {e.path: e.sha256 for e in entries}
        if self.bridge.batch_running:
            self._grade_after_batch = True  # e.g. a new model: grade again when this run ends
            return
        if not paths:
            return
        if self.bridge.grade_folder(paths, known):
            self.panel.show_batch(0, len(paths), "Starting…", running=True)

    def cancel_grading(self) -> None:
        if self.bridge.batch_running:
            self.bridge.cancel_batch()
            self.panel.show_batch(
                self.panel.batch_bar.value(), self.panel.batch_bar.maximum(),
                "Cancelling after the current batch…", running=True,
            )  # fmt: skip

    def _on_progress(self, p: BatchProgress) -> None:
        text = f"{p.images_per_s:.1f} images/s"
        if p.skipped:
            text += f" · {p.skipped} already graded"
        if p.failed:
            text += f" · {p.failed} unreadable"
        self.panel.show_batch(p.done, p.total, text, running=True)

    def _on_batch_predictions(self, rows: list[PredictionSummary]) -> None:
        self.model.add_predictions(rows)
        self.batch_predictions_changed.emit()
        if self.entry is not None and any(r.sha256 == self.entry.sha256 for r in rows):
            self._show()

    def _on_batch_finished(self, result: BatchResult) -> None:
        state = "Cancelled" if result.cancelled else "Done"
        rate = result.graded / result.elapsed_s if result.elapsed_s > 0 else 0.0
        text = f"{state}: {result.graded} graded ({rate:.1f}/s), {result.skipped} already graded"
        if result.failures:
            text += f", {len(result.failures)} unreadable"
        total = result.graded + result.skipped + len(result.failures)
        self.panel.show_batch(total, total, text, running=False)
        self._regrade_if_asked()
        if result.failures:
            names = "; ".join(f"{p.rsplit('/', 1)[-1]}: {why}" for p, why in result.failures[:3])
            more = f" (and {len(result.failures) - 3} more)" if len(result.failures) > 3 else ""
            self.error.emit(
                f"{len(result.failures)} image(s) could not be graded by the model: {names}{more}"
            )

    def _on_batch_failed(self, message: str) -> None:
        self.panel.show_batch(0, 0, f"Batch grading failed: {message}", running=False)
        self.error.emit(f"Batch grading failed: {message}")
        self._regrade_if_asked()

    def _regrade_if_asked(self) -> None:
        if self._grade_after_batch and self.info is not None:
            self._grade_after_batch = False
            self.grade_folder()


class ModelWindows(QObject):
    """The Model menu's windows: the model manager and the fine-tune window.

    Both act as the signed-in grader (their actions are disabled until one signs in); when either
    changes the active version, ``on_changed(model_id)`` runs (the inference service reloads).

    Args:
        store: the store thread (the windows' work runs there).
        parent: the main window (the windows are its children: they go when it goes).
        grading: whose ``grader`` approves promotions and rollbacks.
        on_changed: called on the GUI thread with the new active version id.
    """

    def __init__(
        self,
        store: StoreExecutor,
        parent: QWidget,
        grading: GradingController,
        on_changed: Callable[[str], None],
    ) -> None:
        super().__init__(parent)
        self.store, self.window, self.grading, self.on_changed = store, parent, grading, on_changed
        self.manager: ModelManager | None = None
        self.finetune: FinetuneWindow | None = None
        # Tests only: ``--set`` overrides. The app passes none (the bare command's config).
        self.finetune_overrides: tuple[str, ...] | None = None
        self.actions: list[QAction] = []
        grading.grader_changed.connect(self._grader_changed)

    def handlers(self) -> dict[str, Callable[[], object]]:
        """The menu commands that open the windows, by command id."""
        return {"models": self.open_manager, "finetune": self.open_finetune}

    def bind(self, actions: list[QAction]) -> None:
        """The menu actions to enable only while a grader is signed in."""
        self.actions = actions
        self._grader_changed(self.grading.grader)

    def _grader_changed(self, name: str | None) -> None:
        for action in self.actions:
            action.setEnabled(bool(name))
        if self.finetune is not None and name:
            self.finetune.approver = name
            self.finetune.report_view.approver.setText(name)
        if self.manager is not None and name:
            self.manager.user = name

    def open_manager(self) -> ModelManager | None:
        """Show the model manager (versions, lineage, promote, roll back, import)."""
        from sall_desktop.gui.model_manager import ModelManager

        if not self.grading.grader:
            return None
        if self.manager is None:
            self.manager = ModelManager(self.store, user=self.grading.grader, parent=self.window)
            self.manager.active_model_changed.connect(self.on_changed)
        self.manager.user = self.grading.grader
        self.manager.refresh()
        self.manager.show()
        self.manager.raise_()
        return self.manager

    def open_finetune(self) -> FinetuneWindow | None:
        """Show the fine-tune window (one per session: a run in it keeps going when hidden)."""
        from sall_desktop.gui.finetune_window import FinetuneWindow

        grader = self.grading.grader
        if not grader:
            return None
        if self.finetune is None:
            overrides = self.finetune_overrides or ()
            self.finetune = FinetuneWindow(
                self.store, approver=grader, overrides=overrides, parent=self.window
            )
            self.finetune.setWindowFlag(Qt.WindowType.Window)  # its own window, owned by ours
            self.finetune.active_model_changed.connect(self.on_changed)
        self._grader_changed(grader)
        self.finetune.show()
        self.finetune.raise_()
        return self.finetune

    def shutdown(self) -> None:
        """Stop a running fine-tune (STOP, then kill; no child process is left) and close."""
        if self.finetune is not None:
            self.finetune.shutdown()
            self.finetune.hide()
        if self.manager is not None:
            self.manager.hide()
