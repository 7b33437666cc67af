"""The folder panel (a view): open, recent, filter, sort and the patient list."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
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
from sall_desktop.gui.patient_model import (
    ALL_PATIENTS,
    NO_PATIENT,
    PATIENT_ID_ROLE,
    PatientListModel,
)
from sall_desktop.gui.patient_view import PatientDelegate
from sall_desktop.gui.theme import Theme
from sall_desktop.services.image_entry import ImageFilter, SortKey, StatusFilter

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
