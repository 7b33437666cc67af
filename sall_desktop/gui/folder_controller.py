"""The folder controller: scans folders in the background, fills the image and patient models,
restores the last image, and applies the panel's filter and sort."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFileDialog

from sall_desktop.gui import collector
from sall_desktop.gui.bridges import CatalogueBridge, ThumbnailBridge
from sall_desktop.gui.folder_panel import FolderPanel
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.patient_model import PatientListModel
from sall_desktop.gui.settings import AppSettings
from sall_desktop.services.image_entry import ImageEntry, ImageFilter, SortKey


class FolderController(QObject):
    """Opens folders: scans in the background, fills the models, restores the last image."""

    folder_opened = Signal(str)
    error = Signal(str)

    def __init__(
        self,
        panel: FolderPanel,
        model: ImageListModel,
        patients: PatientListModel,
        navigator: Navigator,
        catalogue: CatalogueBridge,
        thumbnails: ThumbnailBridge,
        settings: AppSettings,
    ) -> None:
        super().__init__(panel)
        self.panel = panel
        self.model = model
        self.patients = patients
        self.navigator = navigator
        self.catalogue = catalogue
        self.thumbnails = thumbnails
        self.settings = settings
        self.folder = ""
        self.scanning = False
        self.may_switch: Callable[[], bool] = lambda: True
        """Asked before another folder replaces the open one (the window: pending grades)."""
        self._select_path = ""
        self._select_sha = ""
        self._refresh_patients = QTimer(self, singleShot=True, interval=1000)
        self._refresh_patients.timeout.connect(lambda: self.patients.refresh(self.model.entries()))
        catalogue.found.connect(self._on_found)
        catalogue.described.connect(self._on_described)
        catalogue.finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        catalogue.failed.connect(
            lambda _id, message: self.error.emit(message), Qt.ConnectionType.QueuedConnection
        )
        thumbnails.ready.connect(model.set_thumbnails)
        thumbnails.failed.connect(model.set_thumbnail_errors)
        panel.open_clicked.connect(self.choose_folder)
        panel.recent_chosen.connect(self.open_folder)
        panel.view_changed.connect(lambda f, s: self.model.set_view(f, s))
        model.entries_changed.connect(self._schedule_patients)
        panel.set_recent(settings.recent_folders)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.panel, "Open a folder of fundus images", self.folder
        )
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str, *, select_sha: str = "", select_path: str = "") -> None:
        """Show ``folder``; select the image with ``select_sha``/``select_path`` once it appears."""
        path = Path(folder)
        if not path.is_dir():
            self.error.emit(f"The folder {folder} does not exist or cannot be opened.")
            return
        if self.folder and not self.may_switch():
            return
        self.catalogue.stop()
        self.thumbnails.cancel_pending()
        self.navigator.go_to(None)
        collector.release()
        self.model.clear()
        self.patients.clear()
        self.folder = str(path)
        self._select_sha, self._select_path = select_sha, select_path
        self.panel.folder_label.setText(path.name or str(path))
        self.panel.folder_label.setToolTip(str(path))
        self.settings.add_recent_folder(self.folder)
        self.panel.set_recent(self.settings.recent_folders)
        self.scanning = True
        self.catalogue.start(self.folder)
        self.folder_opened.emit(self.folder)

    def close_folder(self) -> None:
        self.catalogue.stop()
        self.scanning = False
        collector.release()

    def _on_found(self, scan_id: int, found: list[object]) -> None:
        if scan_id != self.catalogue.scan_id:
            return
        self.model.add_found(found)  # type: ignore[arg-type]
        if self._select_path:
            entry = self.model.entry_for_path(self._select_path)
            if entry is not None:
                self._select(entry)

    def _on_described(self, scan_id: int, described: list[object]) -> None:
        if scan_id != self.catalogue.scan_id:
            return
        updated = self.model.add_described(described)  # type: ignore[arg-type]
        current = self.navigator.current
        for entry in updated:
            if self._select_sha and entry.sha256 == self._select_sha:
                self._select(entry)
            elif entry is current:
                self.navigator.current_changed.emit(entry)  # its record arrived: show it
        if self.navigator.current is None and not self._select_sha and not self._select_path:
            first = self._first_readable(settled=False)
            if first is not None:
                self.navigator.go_to(first)

    def _on_finished(self, scan_id: int) -> None:
        if scan_id != self.catalogue.scan_id:
            return
        self.scanning = False
        self.patients.refresh(self.model.entries())
        if self.model.image_filter != ImageFilter() or self.model.sort_key is not SortKey.PATH:
            self.model.set_view()  # rows found while scanning are now filtered and sorted
        collector.settle()
        if self.navigator.current is None:
            self._select_sha = self._select_path = ""
            first = self._first_readable(settled=True) or self.model.entry_at(0)
            if first is not None:
                self.navigator.go_to(first)

    def _first_readable(self, *, settled: bool) -> ImageEntry | None:
        """The first shown entry the grader can grade. While the scan runs (``settled`` False)
        an entry not yet described ends the search: an image before it may still be readable."""
        for position in range(self.model.visible_count()):
            entry = self.model.entry_at(position)
            if entry is None:
                return None
            if entry.gradable_image:
                return entry
            if entry.record is None and not entry.error and not settled:
                return None
        return None

    def _select(self, entry: ImageEntry) -> None:
        self._select_sha = self._select_path = ""
        self.navigator.go_to(entry)

    def _schedule_patients(self) -> None:
        if not self._refresh_patients.isActive():
            self._refresh_patients.start()

    def selected_patient_row(self) -> QModelIndex:
        return self.panel.patients.currentIndex()
