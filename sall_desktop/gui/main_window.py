"""The main window: lays out the panels and delegates every decision to their controllers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.gui.actions import apply_shortcuts, build_actions
from sall_desktop.gui.bridges import (
    CatalogueBridge,
    GradingBridge,
    ImageBridge,
    TaskBridge,
    ThumbnailBridge,
)
from sall_desktop.gui.collector import IdleCollector
from sall_desktop.gui.dialogs import CheatSheet, SettingsDialog, quit_box
from sall_desktop.gui.folder_controller import FolderController
from sall_desktop.gui.folder_panel import FolderPanel
from sall_desktop.gui.geometry import open_at
from sall_desktop.gui.grading_controller import GradingController
from sall_desktop.gui.grading_panel import GradingPanel
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.inference_bridge import InferenceBridge
from sall_desktop.gui.model_controller import ModelController, ModelWindows
from sall_desktop.gui.model_panel import ModelPanel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.patient_model import PatientListModel
from sall_desktop.gui.session import SessionController, WorkstationServices
from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.status import Banner, StatusController
from sall_desktop.gui.team_controller import TeamController
from sall_desktop.gui.theme import apply_theme, current_theme
from sall_desktop.gui.thumbnail_grid import ThumbnailGrid
from sall_desktop.gui.transfer_dialogs import ExportDialog, ImportDialog
from sall_desktop.gui.triage_controller import TriageController
from sall_desktop.gui.triage_panel import TriagePanel
from sall_desktop.gui.viewer_controller import ViewerController
from sall_desktop.gui.viewer_panel import ViewerPanel
from sall_desktop.gui.work_controller import WorkController
from sall_desktop.gui.work_panel import WorkPanel
from sall_desktop.services.image_entry import ImageEntry
from sall_desktop.services.inference import InferenceService
from sall_desktop.services.outbox import is_unreachable

if TYPE_CHECKING:
    from sall_desktop.gui.programme_dialog import ProgrammeDialog
    from sall_desktop.gui.quality_window import QualityWindow
    from sall_desktop.services.store_executor import StoreExecutor

DRAIN_WAIT_MS = 3000
"""On quit, how long to wait for writes in flight before asking about pending grades."""


class MainWindow(QMainWindow):
    """Folder panel | viewer over thumbnail grid | grading panel; banner on top, status below."""

    closed = Signal()
    quality_window: QualityWindow | None = None  # Programme → Grader quality report…, on first use
    programme_dialog: ProgrammeDialog | None = None  # Programme → Set up double grading…

    def __init__(
        self,
        services: WorkstationServices,
        settings: AppSettings,
        inference: InferenceService | None = None,
        *,
        store: StoreExecutor | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle("SALL Desktop — fundus grading")
        self.services, self.settings = services, settings
        self.tasks = TaskBridge(self)  # the grading controller's loads
        self.grading_bridge = GradingBridge(services.grading, self)
        self.thumbnail_bridge = ThumbnailBridge(services.thumbnails, self)
        self.image_bridge = ImageBridge(services.images, self)
        self.catalogue_bridge = CatalogueBridge(
            self, decoder=services.decode, inputs=services.model_inputs
        )
        theme = current_theme(QApplication.instance())  # type: ignore[arg-type]

        self.model = ImageListModel(self._request_thumbnail, parent=self)
        self.patients = PatientListModel(self)
        self.banner = Banner()
        self.folder_panel = FolderPanel(self.patients, theme)
        self.viewer_panel = ViewerPanel()
        self.grid = ThumbnailGrid(self.model, theme, settings.thumbnail_size)
        self.grading_panel = GradingPanel()
        self.navigator = Navigator(self.model, self.grid)
        self.viewer = ViewerController(
            self.viewer_panel, self.image_bridge, show_pair=settings.show_pair
        )
        self.folders = FolderController(
            self.folder_panel, self.model, self.patients, self.navigator,
            self.catalogue_bridge, self.thumbnail_bridge, settings,
        )  # fmt: skip
        self.grading = GradingController(
            services.grading, self.grading_bridge, self.tasks, self.model,
            self.navigator, self.grading_panel, settings,
        )  # fmt: skip
        self.status = StatusController(
            self.statusBar(), self.banner, self.model, services.grading, self.grading_bridge
        )
        self.model_panel = ModelPanel()
        self.triage_panel = TriagePanel()
        self.triage = TriageController(self.triage_panel, self.model, self.navigator)
        # The ordering a grader chose is kept across restarts.
        order = self.triage_panel.order
        order.setCurrentIndex(max(0, order.findData(settings.triage_order)))
        order.currentIndexChanged.connect(
            lambda _: setattr(settings, "triage_order", str(order.currentData()))
        )
        self.inference_bridge: InferenceBridge | None = None
        self.model_loop: ModelController | None = None
        self.model_windows: ModelWindows | None = None
        if inference is not None:
            self._build_model_loop(inference, store)
        else:
            self.model_panel.show_model_error("no model service")
        self.work_panel = WorkPanel()
        self.work = WorkController(
            self.work_panel, services.grading, self.grading_bridge, self.model,
            self.navigator, self.grading, self.status,
        )  # fmt: skip
        self.work.error.connect(lambda message: self.show_error("programme", message))
        self.team = self._build_team(services)
        if self.model_loop is not None:
            self.work.rule_changed.connect(self.model_loop.rule_changed)
        self._layout()
        self.actions_by_id = build_actions(self, settings, self._handlers())
        for disabled in ("undo", "redo", "programme_setup"):  # the last until a grader signs in
            self.actions_by_id[disabled].setEnabled(False)
        self.grading.undo_stack.canUndoChanged.connect(self.actions_by_id["undo"].setEnabled)
        self.grading.undo_stack.canRedoChanged.connect(self.actions_by_id["redo"].setEnabled)
        if self.model_windows is not None:
            self.model_windows.bind([self.actions_by_id["models"], self.actions_by_id["finetune"]])

        self.navigator.current_changed.connect(self._current_changed)
        self.model.records_added.connect(self._records_added)
        self.viewer.failed.connect(lambda message: self.show_error("image", message))
        self.folders.error.connect(lambda message: self.show_error("folder", message))
        self.grading.error.connect(lambda message: self.show_error("grading", message))
        self.folders.folder_opened.connect(self._folder_opened)
        self.grading.grader_changed.connect(self._grader_changed)
        self.folders.may_switch = self._may_switch_folder
        self.session = SessionController(
            services, settings, self.folders, self.grading, self.navigator, self.banner, self.status
        )
        self.session.error.connect(lambda message: self.show_error("task", message))
        self._closing_confirmed = False
        self.collector = IdleCollector(self)
        self.collector.start()

    def _build_model_loop(self, inference: InferenceService, store: StoreExecutor | None) -> None:
        self.inference_bridge = bridge = InferenceBridge(inference, self)
        self.model_loop = loop = ModelController(
            bridge, self.model_panel, self.viewer_panel, self.viewer, self.model,
            self.navigator, self.grading, self.settings,
        )  # fmt: skip
        loop.error.connect(lambda message: self.show_error("model", message))
        loop.predictions_changed.connect(self.triage.schedule)
        loop.blind_changed.connect(self.status.set_blind)
        self.status.set_blind(loop.blind)
        loop.batch_predictions_changed.connect(self.triage.schedule_for_batch)
        self.catalogue_bridge.finished.connect(lambda _: loop.folder_ready())
        if store is not None:  # Model → Models… / Fine-tune…; a new active version reloads
            self.model_windows = ModelWindows(store, self, self.grading, loop.reload_model)

    def _build_team(self, services: WorkstationServices) -> TeamController | None:
        """On a team store: follow the other workstations' saves (``gui/team_controller.py``)."""
        if not services.team_store:
            return None
        team = TeamController(services.grading, self.model, self.work, self.grading, self.navigator)
        team.notice.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        team.unreachable.connect(self.status.show_offline)
        self.status.set_team_store(services.team_store)
        team.news.connect(lambda _: self.status.server_answered())
        self.setWindowTitle(f"SALL Desktop — fundus grading — team store {services.team_store}")
        return team

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        self.centre_splitter = centre = QSplitter(Qt.Orientation.Vertical)
        centre.addWidget(self.viewer_panel)
        centre.addWidget(self.grid)
        centre.setStretchFactor(0, 3)
        centre.setStretchFactor(1, 1)
        centre.setSizes([640, 250])
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.folder_panel)
        left.addWidget(self.triage_panel)
        left.setSizes([520, 360])
        # The grade comes first and is never squeezed (its minimum is its whole content); the
        # model's output, attention and batch grading scroll in what is left (ADR 0009).
        model_scroll = QScrollArea()
        model_scroll.setWidget(self.model_panel)
        model_scroll.setWidgetResizable(True)
        model_scroll.setFrameShape(QFrame.Shape.NoFrame)
        model_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        model_scroll.setMinimumHeight(40)
        self.right_splitter = right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.grading_panel)
        right.addWidget(model_scroll)
        right.setChildrenCollapsible(False)
        right.setStretchFactor(0, 0)
        right.setStretchFactor(1, 1)
        right.setSizes([self.grading_panel.minimumSizeHint().height(), 400])
        left_column = QWidget()  # a screening programme's work selector over the folder
        column = QVBoxLayout(left_column)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.work_panel)
        column.addWidget(left, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left_column)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([250, 880, 290])
        root = QWidget()
        layout = QVBoxLayout(root)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)
        self.setCentralWidget(root)
        open_at(self, 1600, 1000, share=1.0)
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    def _handlers(self) -> dict[str, Callable[[], object]]:
        g, nav = self.grading, self.navigator
        handlers: dict[str, Callable[[], object]] = {
            f"dr_{i}": partial(g.digit, i) for i in range(5)
        }
        handlers.update({f"reason_{i}": partial(g.digit, i) for i in (5, 6)})
        handlers.update({f"amd_{i}": partial(g.set_amd, i) for i in range(4)})
        handlers.update(self.viewer.handlers())
        handlers.update(
            ungradable=g.begin_ungradable, dme=g.begin_dme, clear_dme=partial(g.set_dme, None),
            notes=self.grading_panel.notes.setFocus, commit=self._return, discard=self._escape,
            undo=g.undo_stack.undo, redo=g.undo_stack.redo, next_ungraded=self._next_ungraded,
            next=lambda: nav.step(+1), previous=lambda: nav.step(-1),
            open_folder=self.folders.choose_folder, export=self.open_export,
            settings=self.open_settings, retry=self.services.grading.retry,
            cheat_sheet=lambda: CheatSheet(self.settings, self).open(),
        )  # fmt: skip
        handlers["import"] = self.open_import
        handlers["grader_report"] = self.open_grader_report
        handlers["programme_setup"] = self.open_programme_setup
        for part in (self.model_loop, self.model_windows):
            if part is not None:
                handlers.update(part.handlers())
        return handlers

    def open_grader_report(self) -> None:
        """Programme → Grader quality report… (one window, raised when open again)."""
        if self.quality_window is None:
            # Imported here: the report draws with matplotlib, which start-up need not pay for.
            from sall_desktop.gui.quality_window import QualityWindow

            self.quality_window = QualityWindow(self.services.grading, self)
        else:
            self.quality_window.refresh()
        self.quality_window.show()
        self.quality_window.raise_()

    def open_programme_setup(self) -> ProgrammeDialog | None:
        """Programme → Set up double grading… (one dialog, read again when opened again)."""
        if not self.grading.grader:
            return None
        if self.programme_dialog is None:
            from sall_desktop.gui.programme_dialog import ProgrammeDialog

            self.programme_dialog = dialog = ProgrammeDialog(
                self.services.grading, self.grading.grader, self
            )
            dialog.changed.connect(self.work.reload)  # rules and roles decide the work queues
            self.grading.grader_changed.connect(dialog.set_user)
        else:  # it follows the signed-in grader already; the store may have changed
            self.programme_dialog.refresh()
        self.programme_dialog.show()
        self.programme_dialog.raise_()
        return self.programme_dialog

    def start(self, folder: str | None) -> None:
        """Open ``folder``, else the last folder at the last image, else the demo folder."""
        self.work.start()  # the programme is read first: it decides what the model may show
        self.session.start(folder)
        if self.model_loop is not None:
            self.model_loop.start()
        if self.team is not None:
            self.team.start()

    # ------------------------------------------------------------------ reactions
    def show_error(self, kind: str, message: str) -> None:
        """Background errors always reach the user; a failing save keeps its own banner; on a
        team store, every read that fails because the server is away says so once."""
        if self.services.team_store and is_unreachable(message):
            self.status.show_offline(message)
            return
        if self.banner.kind != "save":
            self.banner.show_message(kind, "error", message)
        self.statusBar().showMessage(message, 10000)

    def _request_thumbnail(self, entry: ImageEntry) -> None:
        record = entry.record
        if record is not None:
            self.thumbnail_bridge.request(record.sha256, entry.path, record.width, record.height)

    def _current_changed(self, entry: ImageEntry | None) -> None:
        partner = self.model.partner_of(entry) if entry is not None else None
        upcoming = self.navigator.upcoming(2)
        if self.viewer.show_pair:  # the next images are shown with their other eye too
            upcoming += [p for p in map(self.model.partner_of, upcoming) if p is not None]
        self.viewer.show(entry, partner, upcoming)

    def _records_added(self, _sha256s: list[str]) -> None:
        # The scan describes files in parallel: the other eye may arrive after the current
        # image was shown alone. Show the pair once it is there.
        entry = self.navigator.current
        if entry is None or not self.viewer.show_pair or self.viewer.partner is not None:
            return
        partner = self.model.partner_of(entry)
        if partner is not None:
            self.viewer.show(entry, partner)

    def _folder_opened(self, folder: str) -> None:
        self.status.set_folder(Path(folder).name)
        team = f" — team store {self.services.team_store}" if self.services.team_store else ""
        self.setWindowTitle(f"{Path(folder).name} — SALL Desktop{team}")
        self.grading.reload_gradings()
        self.work.reload()

    def _grader_changed(self, name: str | None) -> None:
        # The programme is changed as the signed-in grader (services/programme_admin.py).
        self.actions_by_id["programme_setup"].setEnabled(bool(name))
        if name:
            self.grid.setFocus()  # after sign-in the keyboard grades; it types into no field

    def _return(self) -> None:
        if self.focusWidget() is self.grading_panel.grader_name:
            self.grading_panel.submit_sign_in()  # Enter in the name field signs in
        else:
            self.grading.commit()

    def _escape(self) -> None:
        if self.focusWidget() is self.grading_panel.notes:
            self.grid.setFocus()  # Esc leaves the note (kept in the draft), not the draft
        else:
            self.grading.discard()

    def _next_ungraded(self) -> None:
        if not self.navigator.next_ungraded():
            self.statusBar().showMessage("Every image in view is graded.", 5000)

    # ------------------------------------------------------------------ dialogs
    def open_export(self) -> ExportDialog:
        dialog = ExportDialog(self.services.grading, self.grading.grader, self)
        dialog.open()
        return dialog

    def open_import(self) -> ImportDialog | None:
        if self.grading.read_only:
            self.show_error("import", "The database is read-only here: nothing can be imported.")
            return None
        images = [e.record for e in self.model.entries() if e.record is not None]
        dialog = ImportDialog(self.services.grading, self.grading.grader, images, self)
        dialog.finished.connect(lambda _: self.grading.reload_gradings())
        dialog.open()
        return dialog

    def open_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings, self)
        dialog.accepted.connect(lambda: self._apply_settings(dialog))
        dialog.open()
        return dialog

    def _apply_settings(self, dialog: SettingsDialog) -> None:
        dialog.apply()
        app = QApplication.instance()
        theme = apply_theme(app, self.settings.theme)  # type: ignore[arg-type]
        self.grid.set_theme(theme)
        if self.grid.delegate.thumb_size != self.settings.thumbnail_size:
            self.services.thumbnails.max_side = self.settings.thumbnail_size
            self.thumbnail_bridge.cancel_pending()
            self.model.forget_thumbnail_requests()
            self.grid.set_thumb_size(self.settings.thumbnail_size)
        self.viewer.set_show_pair(self.settings.show_pair)
        apply_shortcuts(self.actions_by_id, self.settings)

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closing_confirmed and not self.confirm_close():
            event.ignore()
            return
        self._closing_confirmed = True
        self.session.flush()  # the last image is recorded before the store closes
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.folders.close_folder()
        if self.team is not None:  # leases are released before the store closes
            self.team.stop()
        if self.model_windows is not None:  # a fine-tune in flight is stopped, not orphaned
            self.model_windows.shutdown()
        event.accept()
        self.closed.emit()

    def stop_timers(self) -> None:
        """Stop deferred work (before the services close)."""
        self.session.stop()
        self.collector.stop()
        for timer in self.findChildren(QTimer):
            timer.stop()

    def _may_switch_folder(self) -> bool:
        """Opening another folder keeps unsaved grades queued; say so when saving is failing."""
        service = self.services.grading
        if not service.failing:
            return True
        answer = QMessageBox.question(
            self,
            "Grades not saved yet",
            f"{service.pending_count} grade(s) are not saved yet ({service.last_error}).\n\n"
            "They stay queued and are retried while you work in the other folder. "
            "Open the other folder?",
        )
        return answer == QMessageBox.StandardButton.Yes

    def confirm_close(self) -> bool:
        """Save the draft, let writes in flight finish, and ask if grades are still pending (R4)."""
        self.grading.flush_draft()
        service = self.services.grading
        clock = QElapsedTimer()
        clock.start()
        while service.pending_count and not service.failing and clock.elapsed() < DRAIN_WAIT_MS:
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if not service.pending_count:
            return True
        if service.outbox_count >= service.pending_count:
            return True  # every one is in the outbox file: sent at the next start
        box = quit_box(self, service.pending_count, service.last_error)
        self.quit_question = box
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Retry:
            service.retry()
            return False
        return bool(answer == QMessageBox.StandardButton.Discard)
