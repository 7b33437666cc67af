"""The folder panel (open, recent, filter, sort, patients) and the controller that scans folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from sall_desktop.domain.grades import AMD_GRADES, DR_GRADES, Laterality
from sall_desktop.gui import collector
from sall_desktop.gui.bridges import CatalogueBridge, ThumbnailBridge
from sall_desktop.gui.image_entry import ImageEntry, ImageFilter, SortKey, StatusFilter
from sall_desktop.gui.image_model import ImageListModel
from sall_desktop.gui.navigation import Navigator
from sall_desktop.gui.patient_model import (
    ALL_PATIENTS,
    NO_PATIENT,
    PATIENT_ID_ROLE,
    PatientListModel,
)
from sall_desktop.gui.patient_view import PatientDelegate
from sall_desktop.gui.settings import AppSettings
from sall_desktop.gui.theme import Theme

STATUS_LABELS = {
    StatusFilter.ALL: "All images",
    StatusFilter.UNGRADED: "Ungraded",
    StatusFilter.GRADED: "Graded",
    StatusFilter.UNGRADABLE: "Ungradable",
    StatusFilter.UNREADABLE: "Unreadable files",
}
SORT_LABELS = {
    SortKey.PATH: "File name",
    SortKey.PATIENT_EYE: "Patient, then eye",
    SortKey.STATUS: "Ungraded first",
    SortKey.DR: "DR grade (worst first)",
    SortKey.AMD: "AMD grade (worst first)",
}


def _section(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setObjectName("sectionTitle")
    return label


def _combo(items: list[tuple[str, object]]) -> QComboBox:
    combo = QComboBox()
    for text, data in items:
        combo.addItem(text, data)
    combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return combo


class FolderPanel(QWidget):
    """Left-hand panel: folder buttons, filter and sort, and the patients of the folder."""

    open_clicked = Signal()
    recent_chosen = Signal(str)
    view_changed = Signal(object, object)  # ImageFilter, SortKey

    def __init__(
        self, patients: PatientListModel, theme: Theme, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self.setMinimumWidth(240)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addWidget(_section("Folder"))
        self.folder_label = QLabel("No folder open")
        self.folder_label.setObjectName("imageTitle")
        self.folder_label.setWordWrap(True)
        layout.addWidget(self.folder_label)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open folder…")
        self.open_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.recent = QToolButton()
        self.recent.setText("Recent ▾")
        self.recent.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row.addWidget(self.open_button, 1)
        row.addWidget(self.recent)
        layout.addLayout(row)

        layout.addWidget(_section("Show"))
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(8)
        self.status = _combo([(text, key) for key, text in STATUS_LABELS.items()])
        self.dr = _combo([("Any", None)] + [(f"DR {g}", g) for g in DR_GRADES])
        self.amd = _combo([("Any", None)] + [(f"AMD {g}", g) for g in AMD_GRADES])
        self.eye = _combo(
            [("Both", None), ("OD · right", Laterality.RIGHT), ("OS · left", Laterality.LEFT)]
        )
        self.sort = _combo([(text, key) for key, text in SORT_LABELS.items()])
        form.addRow("Status", self.status)
        form.addRow("DR", self.dr)
        form.addRow("AMD", self.amd)
        form.addRow("Eye", self.eye)
        form.addRow("Sort", self.sort)
        layout.addLayout(form)

        layout.addWidget(_section("Patients"))
        self.patients = QListView()
        self.patients.setModel(patients)
        self.patients.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.patients.setUniformItemSizes(True)
        self.patients.setItemDelegate(PatientDelegate(theme, self.patients))
        layout.addWidget(self.patients, 1)

        self.open_button.clicked.connect(self.open_clicked)
        for combo in (self.status, self.dr, self.amd, self.eye, self.sort):
            combo.currentIndexChanged.connect(self._emit_view)
        self.patients.clicked.connect(lambda _: self._emit_view())

    def current_filter(self) -> ImageFilter:
        patient: str | None = None
        index = self.patients.currentIndex()
        if index.isValid():
            key = index.data(PATIENT_ID_ROLE)
            patient = None if key == ALL_PATIENTS else "" if key == NO_PATIENT else key
        return ImageFilter(
            status=StatusFilter(self.status.currentData()),
            dr_grade=self.dr.currentData(),
            amd_grade=self.amd.currentData(),
            laterality=self.eye.currentData(),
            patient_id=patient,
        )

    def current_sort(self) -> SortKey:
        return SortKey(self.sort.currentData())

    def set_recent(self, folders: list[str]) -> None:
        menu = self.recent.menu()
        if menu is None:
            from PySide6.QtWidgets import QMenu

            menu = QMenu(self.recent)
            self.recent.setMenu(menu)
        menu.clear()
        for folder in folders:
            action = menu.addAction(folder)
            action.triggered.connect(lambda _=False, f=folder: self.recent_chosen.emit(f))
        self.recent.setEnabled(bool(folders))

    def _emit_view(self) -> None:
        self.view_changed.emit(self.current_filter(), self.current_sort())


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
